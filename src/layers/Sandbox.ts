/**
 * User-code sandbox (protocol.md §4.13, behavior.md §3.20): entry processors and conflict resolvers run in
 * QuickJS compiled to WebAssembly. Nothing from the host is exposed; values cross the boundary only as JSON
 * text. Each compiled (kind, name, code) gets its own WASM instance (own capped linear memory), runtime and
 * interrupt handler; its context is hardened by `PRELUDE` and its globals reset after every call, so cached
 * contexts do not leak state between calls.
 *
 * Known limit: calls are synchronous on the caller's thread and the time limit is enforced by QuickJS's
 * interrupt handler, which QuickJS polls only every ~10 000 calls/branches. A loop around an expensive native
 * (e.g. `while (true) bigArray.sort()`) can therefore overrun the limit by seconds or more; a hard bound needs
 * execution in a worker thread that can be terminated.
 */
import { Context, Data, Effect, Layer, Option } from "effect"
import { readFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { newQuickJSWASMModule, newVariant, RELEASE_SYNC } from "quickjs-emscripten"
import type { QuickJSContext, QuickJSHandle, QuickJSRuntime, QuickJSWASMModule } from "quickjs-emscripten"
import { matchBuiltinProcessor, runBuiltinProcessor } from "../sandbox/builtins.js"
import { findForbiddenPattern } from "../sandbox/forbidden.js"
import { PRELUDE } from "../sandbox/prelude.js"
import type { ProcessorOutput, ResolverContext, ResolverResult } from "../sandbox/types.js"

export type { ProcessorOutput, ResolverContext, ResolverResult } from "../sandbox/types.js"

// ---------------------------------------------------------------------------------------------------------------
// Errors

export class SandboxTimeout extends Data.TaggedError("SandboxTimeout")<{ readonly message: string }> {}
export class SandboxMemory extends Data.TaggedError("SandboxMemory")<{ readonly message: string }> {}
export class SandboxSyntax extends Data.TaggedError("SandboxSyntax")<{ readonly message: string }> {}
export class SandboxRuntime extends Data.TaggedError("SandboxRuntime")<{ readonly message: string }> {}
export class SandboxForbidden extends Data.TaggedError("SandboxForbidden")<{ readonly message: string }> {}

export type SandboxError = SandboxTimeout | SandboxMemory | SandboxSyntax | SandboxRuntime | SandboxForbidden

// ---------------------------------------------------------------------------------------------------------------
// Configuration

export interface SandboxConfigShape {
  /** QuickJS heap limit per execution runtime (spec default 8 MiB). */
  readonly memoryLimitBytes: number
  /** Wall-clock limit per execution, compile included (spec default 100 ms). */
  readonly timeLimitMs: number
  /** QuickJS stack limit (spec: 256 KiB). */
  readonly maxStackBytes: number
  /** Hard cap on code length for any execution (callers apply the per-kind limits via `validateCode`). */
  readonly maxCodeLength: number
  /** Cap on the UTF-8 size of the JSON a call returns (spec: 1 MiB). */
  readonly maxResultBytes: number
  /** Compiled functions kept per kind (processors, resolvers); least recently used evicted. */
  readonly cacheSize: number
}

export class SandboxConfig extends Context.Tag("tessera/SandboxConfig")<SandboxConfig, SandboxConfigShape>() {
  static readonly defaults: SandboxConfigShape = {
    memoryLimitBytes: 8 * 1024 * 1024,
    timeLimitMs: 100,
    maxStackBytes: 256 * 1024,
    maxCodeLength: 50_000,
    maxResultBytes: 1024 * 1024,
    cacheSize: 100
  }
  static readonly layer = (overrides: Partial<SandboxConfigShape> = {}): Layer.Layer<SandboxConfig> =>
    Layer.succeed(SandboxConfig, { ...SandboxConfig.defaults, ...overrides })
  static readonly Default: Layer.Layer<SandboxConfig> = SandboxConfig.layer()
}

// ---------------------------------------------------------------------------------------------------------------
// QuickJS plumbing (plain synchronous code; every entry point catches everything)

export type CodeKind = "processor" | "resolver"

/** A hardened QuickJS runtime+context holding one compiled user function. */
interface Compiled {
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

type Outcome<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: SandboxError }
const ok = <A>(value: A): Outcome<A> => ({ ok: true, value })
const fail = (error: SandboxError): Outcome<never> => ({ ok: false, error })

const MESSAGES = {
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

const safeJson = (v: unknown): string => {
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

const hostMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/**
 * The build's WASM module declares a 16 MiB minimum linear memory, of which static data, the C stack and a
 * hardened context take about 5.5 MiB. An instance's memory maximum is sized so the QuickJS heap can hold
 * roughly `memoryLimitBytes` of user data, but never below that 16 MiB floor (≈ 10.5 MiB of heap).
 */
const WASM_MIN_PAGES = 256
const WASM_PAGE = 65536
const INSTANCE_OVERHEAD_BYTES = 5.5 * 1024 * 1024
const maxPagesFor = (memoryLimitBytes: number): number =>
  Math.max(WASM_MIN_PAGES, Math.ceil((memoryLimitBytes + INSTANCE_OVERHEAD_BYTES) / WASM_PAGE))

/** The few WebAssembly APIs used here (the project's `lib` has no WebAssembly typings). */
interface WasmApi {
  readonly compile: (bytes: Uint8Array) => Promise<object>
  readonly Memory: new (descriptor: { initial: number; maximum: number }) => object
}
const wasmApi = (globalThis as unknown as { readonly WebAssembly: WasmApi }).WebAssembly

/**
 * Sandbox primitives. Each compiled function lives in its OWN WebAssembly instance (own linear memory with a
 * hard maximum): QuickJS's own malloc accounting is broken in this build (it only counts per-block overhead,
 * so `setMemoryLimit` never triggers), and a capped linear memory is what actually bounds a memory bomb. It also
 * means a WASM-level abort (which can follow an out-of-memory) only kills that one instance.
 */
const makeEngine = (config: SandboxConfigShape, newInstance: () => Promise<QuickJSWASMModule>) => {
  const withDeadline = <A>(compiled: Compiled, f: () => A): A => {
    compiled.interrupted = false
    compiled.deadline = performance.now() + config.timeLimitMs
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

  const classify = (compiled: Compiled, thrown: Thrown, kind: CodeKind): SandboxError =>
    compiled.interrupted
      ? new SandboxTimeout({ message: MESSAGES[kind].timeout })
      : isOutOfMemory(thrown)
      ? new SandboxMemory({ message: MESSAGES[kind].memory })
      : new SandboxRuntime({ message: thrown.message })

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

  /** Creates a hardened context in `module` and compiles `code` in it; the result is ready to `invoke`. */
  const compileIn = (module: QuickJSWASMModule, kind: CodeKind, code: string): Outcome<Compiled> => {
    const runtime = module.newRuntime()
    let compiled: Compiled | undefined
    try {
      runtime.setMemoryLimit(config.memoryLimitBytes) // ineffective in this build (see above); harmless
      runtime.setMaxStackSize(config.maxStackBytes)
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
        const error = thrown.name === "SyntaxError" && !target.interrupted
          ? new SandboxSyntax({ message: thrown.message })
          : classify(target, thrown, kind)
        dispose(target)
        return fail(error)
      }
      target.invoke = result.value
      // Code that broke out of the function wrapper may have run and left globals behind at compile time.
      if (context.typeof(result.value) !== "function" || !resetGlobals(target)) {
        dispose(target)
        return fail(new SandboxSyntax({ message: "Code must be a function body" }))
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
      return fail(new SandboxRuntime({ message: `Sandbox failure: ${hostMessage(e)}` }))
    }
  }

  const compile = (kind: CodeKind, code: string): Effect.Effect<Compiled, SandboxError> =>
    Effect.flatMap(
      Effect.tryPromise({
        try: newInstance,
        catch: (e) => new SandboxRuntime({ message: `Sandbox failure: ${hostMessage(e)}` })
      }),
      (module) =>
        Effect.suspend(() => {
          const outcome = compileIn(module, kind, code)
          return outcome.ok ? Effect.succeed(outcome.value) : Effect.fail(outcome.error)
        })
    )

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
          outcome = fail(classify(compiled, describeThrown(context, result.error), kind))
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
      const hitLimit = !outcome.ok &&
        (outcome.error._tag === "SandboxTimeout" || outcome.error._tag === "SandboxMemory")
      return { outcome, reusable: !hitLimit && resetGlobals(compiled) }
    } catch (e) {
      // A host-side exception here means the instance aborted (e.g. a QuickJS assertion after out-of-memory).
      return { outcome: fail(new SandboxRuntime({ message: `Sandbox failure: ${hostMessage(e)}` })), reusable: false }
    }
  }

  /** Parses `code` as a function body in `module` without running anything. */
  const checkSyntax = (module: QuickJSWASMModule, kind: CodeKind, code: string): Outcome<void> => {
    const runtime = module.newRuntime()
    try {
      runtime.setMaxStackSize(config.maxStackBytes)
      const context = runtime.newContext()
      try {
        const source = kind === "processor"
          ? `(function anonymous(value,key,args\n) {\n${code}\n})`
          : `(function resolve(context) {\n${code}\n})`
        const result = context.evalCode(source, `${kind}.js`, { compileOnly: true })
        if (result.error) {
          const thrown = describeThrown(context, result.error)
          return fail(new SandboxSyntax({ message: isOutOfMemory(thrown) ? "Code too large to compile" : thrown.message }))
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

  return { compile, invoke, dispose, checkSyntax, newInstance }
}

type Engine = ReturnType<typeof makeEngine>

/** Least-recently-used map of compiled contexts; evicted contexts are disposed. */
class CompiledCache {
  private readonly entries = new Map<string, Compiled>()
  constructor(private readonly capacity: number, private readonly dispose: (c: Compiled) => void) {}

  get(key: string): Compiled | undefined {
    const hit = this.entries.get(key)
    if (hit !== undefined) {
      this.entries.delete(key)
      this.entries.set(key, hit)
    }
    return hit
  }

  set(key: string, compiled: Compiled): void {
    const previous = this.entries.get(key)
    if (previous !== undefined && previous !== compiled) this.evict(key) // a concurrent compile of the same key
    this.entries.set(key, compiled)
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string
      this.evict(oldest)
    }
  }

  evict(key: string): void {
    const c = this.entries.get(key)
    if (c === undefined) return
    this.entries.delete(key)
    this.dispose(c)
  }

  /** Disposes `compiled`, removing it from the cache if it is the entry for `key`. */
  discard(key: string, compiled: Compiled): void {
    if (this.entries.get(key) === compiled) this.evict(key)
    else this.dispose(compiled)
  }

  clear(): void {
    for (const c of this.entries.values()) this.dispose(c)
    this.entries.clear()
  }

  get size(): number {
    return this.entries.size
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Service

export interface ProcessorInput {
  readonly name: string
  readonly code: string
  /** Current value; `undefined` if absent. */
  readonly value: unknown
  readonly key: string
  readonly args: unknown
}

export interface ResolverInput {
  readonly name: string
  readonly code: string
  readonly context: ResolverContext | Readonly<Record<string, unknown>>
}

const utf8Length = (s: string): number => Buffer.byteLength(s, "utf8")

const toJson = (v: unknown): Outcome<string | undefined> => {
  try {
    return ok(v === undefined ? undefined : JSON.stringify(v))
  } catch (e) {
    return fail(new SandboxRuntime({ message: `Input is not JSON-serializable: ${e instanceof Error ? e.message : String(e)}` }))
  }
}

const VALID_ACTIONS = new Set(["accept", "merge", "reject", "local"])

const make = Effect.gen(function* () {
  const config = Option.getOrElse(yield* Effect.serviceOption(SandboxConfig), () => SandboxConfig.defaults)

  // Compile the WebAssembly module once; every instance below reuses it with its own capped memory.
  const wasmModule = yield* Effect.promise(async () => {
    const path = createRequire(import.meta.url).resolve("@jitl/quickjs-wasmfile-release-sync/wasm")
    return wasmApi.compile(await readFile(path))
  })
  const maxPages = maxPagesFor(config.memoryLimitBytes)
  const variant = newVariant(RELEASE_SYNC, {
    wasmModule: wasmModule as never,
    wasmMemory: (() => new wasmApi.Memory({ initial: WASM_MIN_PAGES, maximum: maxPages })) as never
  })
  const engine: Engine = makeEngine(config, () => newQuickJSWASMModule(variant))

  const processors = new CompiledCache(config.cacheSize, engine.dispose)
  const resolvers = new CompiledCache(config.cacheSize, engine.dispose)
  // Syntax checks parse only (nothing runs), so they share one instance, replaced if it ever fails.
  let validator: QuickJSWASMModule | undefined = yield* Effect.promise(engine.newInstance)

  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      processors.clear()
      resolvers.clear()
      validator = undefined
    })
  )

  /** Runs (compiling on a cache miss) and returns the function's JSON output. */
  const execute = (
    kind: CodeKind,
    name: string,
    code: string,
    args: ReadonlyArray<string | undefined>
  ): Effect.Effect<string | 0, SandboxError> => {
    const cache = kind === "processor" ? processors : resolvers
    const cacheKey = `${name}\u0000${code}`
    const runCompiled = (compiled: Compiled): Effect.Effect<string | 0, SandboxError> =>
      Effect.suspend(() => {
        const run = engine.invoke(compiled, args, kind)
        if (run.reusable) cache.set(cacheKey, compiled)
        else cache.discard(cacheKey, compiled)
        const outcome = run.outcome
        if (!outcome.ok) return Effect.fail(outcome.error)
        if (outcome.value !== 0 && utf8Length(outcome.value) > config.maxResultBytes) {
          return Effect.fail(
            new SandboxRuntime({ message: `${MESSAGES[kind].tooLarge} (limit ${config.maxResultBytes} bytes)` })
          )
        }
        return Effect.succeed(outcome.value)
      })
    return Effect.suspend(() => {
      const cached = cache.get(cacheKey)
      if (cached !== undefined) return runCompiled(cached)
      if (code.length > config.maxCodeLength) {
        return Effect.fail(new SandboxSyntax({ message: `Code exceeds ${config.maxCodeLength} characters` }))
      }
      const forbidden = findForbiddenPattern(code)
      if (forbidden !== undefined) return Effect.fail(new SandboxForbidden({ message: forbidden }))
      return Effect.flatMap(engine.compile(kind, code), runCompiled)
    })
  }

  /**
   * Compiles and caches a function without running it, so a later run is synchronous (a cache hit never
   * awaits). Callers that must run user code inside a synchronous critical section call this first.
   */
  const prepare = (kind: CodeKind, name: string, code: string): Effect.Effect<void, SandboxError> =>
    Effect.suspend(() => {
      if (kind === "processor" && matchBuiltinProcessor(name, code) !== undefined) return Effect.void
      const cache = kind === "processor" ? processors : resolvers
      const cacheKey = `${name}\u0000${code}`
      if (cache.get(cacheKey) !== undefined) return Effect.void
      if (code.length > config.maxCodeLength) {
        return Effect.fail(new SandboxSyntax({ message: `Code exceeds ${config.maxCodeLength} characters` }))
      }
      const forbidden = findForbiddenPattern(code)
      if (forbidden !== undefined) return Effect.fail(new SandboxForbidden({ message: forbidden }))
      return Effect.map(engine.compile(kind, code), (compiled) => {
        cache.set(cacheKey, compiled)
      })
    })

  /** Pushes a built-in's output through the same JSON boundary and size cap as sandboxed output. */
  const fromHostOutput = (out: ProcessorOutput): Outcome<ProcessorOutput> => {
    const json = toJson({ value: out.value, result: out.result })
    if (!json.ok) return json
    const text = json.value!
    if (utf8Length(text) > config.maxResultBytes) {
      return fail(new SandboxRuntime({ message: `${MESSAGES.processor.tooLarge} (limit ${config.maxResultBytes} bytes)` }))
    }
    const parsed = JSON.parse(text) as { value?: unknown; result?: unknown }
    return ok({ value: parsed.value, result: parsed.result })
  }

  const runProcessor = (input: ProcessorInput): Effect.Effect<ProcessorOutput, SandboxError> =>
    Effect.suspend(() => {
      const builtin = matchBuiltinProcessor(input.name, input.code)
      if (builtin !== undefined) {
        const out = runBuiltinProcessor(builtin, input.value, input.key, input.args)
        if (out !== undefined) {
          const normalized = fromHostOutput(out)
          return normalized.ok ? Effect.succeed(normalized.value) : Effect.fail(normalized.error)
        }
      }
      const value = toJson(input.value)
      const args = toJson(input.args)
      if (!value.ok) return Effect.fail(value.error)
      if (!args.ok) return Effect.fail(args.error)
      return Effect.flatMap(
        execute("processor", input.name, input.code, [value.value, String(input.key), args.value]),
        (text) => {
          if (text === 0) return Effect.fail(new SandboxRuntime({ message: MESSAGES.processor.shape }))
          const parsed = JSON.parse(text) as { value?: unknown; result?: unknown }
          return Effect.succeed<ProcessorOutput>({ value: parsed.value, result: parsed.result })
        }
      )
    })

  const runResolver = (input: ResolverInput): Effect.Effect<ResolverResult, SandboxError> =>
    Effect.suspend(() => {
      const context = toJson(input.context)
      if (!context.ok) return Effect.fail(context.error)
      return Effect.flatMap(execute("resolver", input.name, input.code, [context.value ?? "null"]), (text) => {
        const invalid = Effect.fail(new SandboxRuntime({ message: MESSAGES.resolver.shape }))
        if (text === 0) return invalid
        const out = JSON.parse(text) as { action?: unknown; value?: unknown; reason?: unknown }
        if (typeof out.action !== "string" || !VALID_ACTIONS.has(out.action)) return invalid
        switch (out.action) {
          case "accept":
            return Effect.succeed<ResolverResult>({ action: "accept", value: out.value })
          case "merge":
            // A merge must say what to store; `undefined` (absent after JSON) is not a value.
            return "value" in out ? Effect.succeed<ResolverResult>({ action: "merge", value: out.value }) : invalid
          case "reject":
            // Fail closed: a reject without a usable reason still rejects.
            return Effect.succeed<ResolverResult>({
              action: "reject",
              reason: typeof out.reason === "string"
                ? out.reason
                : out.reason === undefined || out.reason === null
                ? "Rejected by resolver"
                : safeJson(out.reason)
            })
          default:
            return Effect.succeed<ResolverResult>({ action: "local" })
        }
      })
    })

  const getValidator: Effect.Effect<QuickJSWASMModule> = Effect.suspend(() =>
    validator !== undefined
      ? Effect.succeed(validator)
      : Effect.map(Effect.promise(engine.newInstance), (m) => (validator = m))
  )

  const validateCode = (
    code: string,
    maxLen: number,
    kind: CodeKind = "processor"
  ): Effect.Effect<void, SandboxSyntax | SandboxForbidden> =>
    Effect.suspend((): Effect.Effect<void, SandboxSyntax | SandboxForbidden> => {
      if (code.length > maxLen) {
        return Effect.fail(new SandboxSyntax({ message: `Code exceeds ${maxLen} characters` }))
      }
      const forbidden = findForbiddenPattern(code)
      if (forbidden !== undefined) return Effect.fail(new SandboxForbidden({ message: forbidden }))
      return Effect.flatMap(getValidator, (module) => {
        let outcome: Outcome<void>
        try {
          outcome = engine.checkSyntax(module, kind, code)
        } catch (e) {
          validator = undefined
          return Effect.fail(new SandboxSyntax({ message: `Sandbox failure: ${hostMessage(e)}` }))
        }
        return outcome.ok ? Effect.void : Effect.fail(outcome.error as SandboxSyntax)
      })
    })

  return {
    runProcessor,
    runResolver,
    validateCode,
    prepare,
    /** Number of cached compiled functions (processors + resolvers); for tests and metrics. */
    cachedCount: (): number => processors.size + resolvers.size,
    config
  } as const
})

export class Sandbox extends Effect.Service<Sandbox>()("tessera/Sandbox", {
  scoped: make,
  dependencies: []
}) {}
