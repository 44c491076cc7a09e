/**
 * QuickJS plumbing, run inside the sandbox worker (src/sandbox/worker.ts). Plain synchronous code; every entry
 * point catches everything. No runtime imports from packages: the worker may be started from a bundled data:
 * URL, so QuickJS itself is handed in by the worker.
 */
import type { QuickJSContext, QuickJSHandle, QuickJSRuntime, QuickJSWASMModule } from "quickjs-emscripten"
import { PRELUDE } from "./prelude.js"
import type { CodeKind, EngineLimits, WireError } from "./protocol.js"

/** A hardened QuickJS runtime+context holding one compiled user function. */
export interface Compiled {
  readonly runtime: QuickJSRuntime
  readonly context: QuickJSContext
  /** Prelude `reset()`; deletes globals added by user code. */
  reset: QuickJSHandle
  /** JSON-in/JSON-out invoker of the user function; undefined until compiled. */
  invoke: QuickJSHandle | undefined
  /** `performance.now()` after which the interrupt handler stops execution. */
  deadline: number
  interrupted: boolean
}

export type Outcome<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: WireError }
const ok = <A>(value: A): Outcome<A> => ({ ok: true, value })
const fail = (tag: WireError["tag"], message: string): Outcome<never> => ({ ok: false, error: { tag, message } })

export const MESSAGES = {
  processor: {
    timeout: "Processor execution timed out",
    memory: "Processor memory limit exceeded",
    shape: "Processor must return { value, result? } object",
    tooLarge: "Processor result too large"
  },
  resolver: {
    timeout: "Resolver execution timed out",
    memory: "Resolver memory limit exceeded",
    shape: "Resolver must return { action: \"accept\" | \"merge\" | \"reject\" | \"local\" } object",
    tooLarge: "Resolver result too large"
  }
} as const

/** Thrown value as seen by the host: `{ name, message }` for errors, else its text. */
interface Thrown {
  readonly name: string | undefined
  readonly message: string
}

export const safeJson = (v: unknown): string => {
  try {
    return JSON.stringify(v) ?? String(v)
  } catch {
    return String(v)
  }
}

/** Reads and disposes an exception handle. */
const describeThrown = (context: QuickJSContext, handle: QuickJSHandle): Thrown => {
  try {
    const dumped: unknown = context.dump(handle)
    if (typeof dumped === "object" && dumped !== null) {
      const name = (dumped as { name?: unknown }).name
      const message = (dumped as { message?: unknown }).message
      return {
        name: typeof name === "string" ? name : undefined,
        message: typeof message === "string" ? message : safeJson(dumped)
      }
    }
    return { name: undefined, message: String(dumped) }
  } catch {
    // Dumping can itself fail when the heap is exhausted.
    return { name: "InternalError", message: "out of memory" }
  } finally {
    if (handle.alive) handle.dispose()
  }
}

const isOutOfMemory = (t: Thrown): boolean => t.name === "InternalError" && t.message === "out of memory"

export const hostMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/**
 * The build's WASM module declares a 16 MiB minimum linear memory, of which static data, the C stack and a
 * hardened context take about 5.5 MiB. An instance's memory maximum is sized so the QuickJS heap can hold
 * roughly `memoryLimitBytes` of user data, but never below that 16 MiB floor (≈ 10.5 MiB of heap).
 */
export const WASM_MIN_PAGES = 256
const WASM_PAGE = 65536
const INSTANCE_OVERHEAD_BYTES = 5.5 * 1024 * 1024
export const maxPagesFor = (memoryLimitBytes: number): number =>
  Math.max(WASM_MIN_PAGES, Math.ceil((memoryLimitBytes + INSTANCE_OVERHEAD_BYTES) / WASM_PAGE))

/**
 * Sandbox primitives. Each compiled function lives in its OWN WebAssembly instance (own linear memory with a
 * hard maximum): QuickJS's own malloc accounting is broken in this build (it only counts per-block overhead,
 * so `setMemoryLimit` never triggers), and a capped linear memory is what actually bounds a memory bomb. It also
 * means a WASM-level abort (which can follow an out-of-memory) only kills that one instance.
 *
 * The interrupt handler below is the SOFT time limit (clean error, context reusable when possible). QuickJS
 * polls it only every ~10 000 operations and never inside a native like `Array.prototype.sort`, so the HARD
 * limit is the host terminating this whole worker.
 */
export const makeEngine = (limits: EngineLimits) => {
  const withDeadline = <A>(compiled: Compiled, f: () => A): A => {
    compiled.interrupted = false
    compiled.deadline = performance.now() + limits.timeLimitMs
    try {
      return f()
    } finally {
      compiled.deadline = Number.POSITIVE_INFINITY
    }
  }

  const dispose = (compiled: Compiled): void => {
    try {
      if (compiled.invoke?.alive) compiled.invoke.dispose()
      if (compiled.reset !== compiled.context.undefined && compiled.reset.alive) compiled.reset.dispose()
      compiled.context.dispose()
      compiled.runtime.dispose()
    } catch {
      // An aborted instance cannot be cleaned up; dropping every reference frees its memory.
    }
  }

  const classify = (compiled: Compiled, thrown: Thrown, kind: CodeKind): WireError =>
    compiled.interrupted
      ? { tag: "SandboxTimeout", message: MESSAGES[kind].timeout }
      : isOutOfMemory(thrown)
      ? { tag: "SandboxMemory", message: MESSAGES[kind].memory }
      : { tag: "SandboxRuntime", message: thrown.message }

  const resetGlobals = (compiled: Compiled): boolean =>
    withDeadline(compiled, () => {
      const { context } = compiled
      const result = context.callFunction(compiled.reset, context.undefined)
      if (result.error) {
        result.error.dispose()
        return false
      }
      const clean = context.typeof(result.value) === "boolean" && context.dump(result.value) === true
      result.value.dispose()
      return clean
    })

  /** Creates a hardened context in `module` (a fresh instance) and compiles `code` in it, ready to `invoke`. */
  const compile = (module: QuickJSWASMModule, kind: CodeKind, code: string): Outcome<Compiled> => {
    const runtime = module.newRuntime()
    let compiled: Compiled | undefined
    try {
      runtime.setMemoryLimit(limits.memoryLimitBytes) // ineffective in this build (see above); harmless
      runtime.setMaxStackSize(limits.maxStackBytes)
      const context = runtime.newContext()
      const target: Compiled = {
        runtime,
        context,
        reset: context.undefined,
        invoke: undefined,
        deadline: Number.POSITIVE_INFINITY,
        interrupted: false
      }
      compiled = target
      runtime.setInterruptHandler(() => {
        if (performance.now() <= target.deadline) return false
        target.interrupted = true
        return true
      })
      const prelude = context.evalCode(PRELUDE, "prelude.js")
      if (prelude.error) throw new Error(`sandbox prelude failed: ${describeThrown(context, prelude.error).message}`)
      const api = prelude.value
      let compiler: QuickJSHandle
      try {
        target.reset = context.getProp(api, "reset")
        compiler = context.getProp(api, kind === "processor" ? "compileProcessor" : "compileResolver")
      } finally {
        api.dispose()
      }
      const codeHandle = context.newString(code)
      const result = withDeadline(target, () => context.callFunction(compiler, context.undefined, codeHandle))
      codeHandle.dispose()
      compiler.dispose()
      if (result.error) {
        const thrown = describeThrown(context, result.error)
        const error: WireError = thrown.name === "SyntaxError" && !target.interrupted
          ? { tag: "SandboxSyntax", message: thrown.message }
          : classify(target, thrown, kind)
        dispose(target)
        return { ok: false, error }
      }
      target.invoke = result.value
      // Code that broke out of the function wrapper may have run and left globals behind at compile time.
      if (context.typeof(result.value) !== "function" || !resetGlobals(target)) {
        dispose(target)
        return fail("SandboxSyntax", "Code must be a function body")
      }
      return ok(target)
    } catch (e) {
      if (compiled !== undefined) dispose(compiled)
      else {
        try {
          runtime.dispose()
        } catch {
          // aborted instance: dropped with its references
        }
      }
      return fail("SandboxRuntime", `Sandbox failure: ${hostMessage(e)}`)
    }
  }

  /**
   * Calls the compiled function with JSON-text arguments under the time limit. Returns its JSON text, or 0 for
   * "bad shape"; `reusable` is false when the context must be discarded (limit hit, globals not resettable,
   * instance aborted).
   */
  const invoke = (
    compiled: Compiled,
    args: ReadonlyArray<string | undefined>,
    kind: CodeKind
  ): { readonly outcome: Outcome<string | 0>; readonly reusable: boolean } => {
    try {
      const { context } = compiled
      const handles = args.map((a) => (a === undefined ? context.undefined : context.newString(a)))
      let outcome: Outcome<string | 0>
      try {
        const result = withDeadline(compiled, () => context.callFunction(compiled.invoke!, context.undefined, ...handles))
        if (result.error) {
          outcome = { ok: false, error: classify(compiled, describeThrown(context, result.error), kind) }
        } else {
          const handle = result.value
          try {
            outcome = context.typeof(handle) === "string" ? ok(context.getString(handle)) : ok(0 as const)
          } finally {
            handle.dispose()
          }
        }
      } finally {
        for (const h of handles) if (h !== context.undefined) h.dispose()
      }
      const hitLimit = !outcome.ok && (outcome.error.tag === "SandboxTimeout" || outcome.error.tag === "SandboxMemory")
      return { outcome, reusable: !hitLimit && resetGlobals(compiled) }
    } catch (e) {
      // A host-side exception here means the instance aborted (e.g. a QuickJS assertion after out-of-memory).
      return { outcome: fail("SandboxRuntime", `Sandbox failure: ${hostMessage(e)}`), reusable: false }
    }
  }

  /** Parses `code` as a function body in `module` without running anything. */
  const checkSyntax = (module: QuickJSWASMModule, kind: CodeKind, code: string): Outcome<void> => {
    const runtime = module.newRuntime()
    try {
      runtime.setMaxStackSize(limits.maxStackBytes)
      const context = runtime.newContext()
      try {
        const source = kind === "processor"
          ? `(function anonymous(value,key,args\n) {\n${code}\n})`
          : `(function resolve(context) {\n${code}\n})`
        const result = context.evalCode(source, `${kind}.js`, { compileOnly: true })
        if (result.error) {
          const thrown = describeThrown(context, result.error)
          return fail("SandboxSyntax", isOutOfMemory(thrown) ? "Code too large to compile" : thrown.message)
        }
        result.value.dispose()
        return ok(undefined)
      } finally {
        context.dispose()
      }
    } finally {
      runtime.dispose()
    }
  }

  return { compile, invoke, dispose, checkSyntax }
}
