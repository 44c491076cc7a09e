/**
 * User-code sandbox (protocol.md §4.13, behavior.md §3.20): entry processors and conflict resolvers run in
 * QuickJS compiled to WebAssembly, inside a `worker_threads` Worker (src/sandbox/worker.ts). Nothing from the
 * host is exposed; values cross the boundary only as JSON text. Each compiled (kind, name, code) gets its own
 * WASM instance (own capped linear memory), runtime and interrupt handler; its context is hardened by `PRELUDE`
 * and its globals reset after every call, so cached contexts do not leak state between calls.
 *
 * Time limits: QuickJS's interrupt handler is the soft limit (clean error), but QuickJS polls it only every
 * ~10 000 operations and never inside a native like `Array.prototype.sort`. The hard limit: the host blocks
 * in `Atomics.wait` for each synchronous call with a deadline, and terminates the worker when it passes (the
 * call answers SandboxTimeout). A fresh worker is started lazily; its compiled functions are gone, so the
 * caches are cleared and `prepare` compiles again.
 *
 * Synchronous semantics: once `prepare(kind, name, code)` succeeded (and the worker was not replaced since),
 * `runProcessor`/`runResolver` for that code complete synchronously, which is what lets callers run them with
 * `Effect.runSyncExit` inside a read-run-write critical section. Compiles and syntax checks are asynchronous
 * (they do not block the event loop).
 */
import { Context, Data, Effect, Layer, Option } from "effect"
import { matchBuiltinProcessor, runBuiltinProcessor } from "../sandbox/builtins.js"
import { MESSAGES, safeJson } from "../sandbox/engine.js"
import { findForbiddenPattern } from "../sandbox/forbidden.js"
import type { CodeKind, WireError } from "../sandbox/protocol.js"
import { type Death, startWorker, type WorkerLink } from "../sandbox/worker-link.js"
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
// Worker plumbing

export type { CodeKind } from "../sandbox/protocol.js"

/** A function compiled in a worker: the worker keeps the QuickJS context under `handle`. */
interface Compiled {
  readonly link: WorkerLink
  readonly handle: number
}

/**
 * Hard wall-clock deadlines, on top of the soft limit the worker enforces with QuickJS's interrupt handler. An
 * invoke runs the function and then the globals reset, each under the soft limit; a compile also creates a WASM
 * instance and evaluates the prelude (10-80 ms). Past the deadline the worker is terminated. The margins are
 * generous on purpose: a false kill (worker thread starved of CPU on an overloaded machine; 500 ms was seen to
 * be too short with the tests run twice in parallel on 2 cores) throws away every compiled function.
 */
const INVOKE_MARGIN_MS = 1000
const COMPILE_MARGIN_MS = 2000
const invokeHardMs = (c: SandboxConfigShape): number => 2 * c.timeLimitMs + INVOKE_MARGIN_MS
const compileHardMs = (c: SandboxConfigShape): number => 2 * c.timeLimitMs + COMPILE_MARGIN_MS
const checkHardMs = (c: SandboxConfigShape): number => c.timeLimitMs + COMPILE_MARGIN_MS

const fromWire = (e: WireError): SandboxError => {
  switch (e.tag) {
    case "SandboxTimeout":
      return new SandboxTimeout({ message: e.message })
    case "SandboxMemory":
      return new SandboxMemory({ message: e.message })
    case "SandboxSyntax":
      return new SandboxSyntax({ message: e.message })
    case "SandboxForbidden":
      return new SandboxForbidden({ message: e.message })
    default:
      return new SandboxRuntime({ message: e.message })
  }
}

/** The error for a call whose worker is gone. */
const fromDeath = (death: Death | undefined, kind: CodeKind): SandboxError =>
  death === "timeout"
    ? new SandboxTimeout({ message: MESSAGES[kind].timeout })
    : death === "oom"
    ? new SandboxMemory({ message: MESSAGES[kind].memory })
    : new SandboxRuntime({ message: "Sandbox failure: worker stopped" })

type Outcome<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: SandboxError }
const ok = <A>(value: A): Outcome<A> => ({ ok: true, value })
const fail = (error: SandboxError): Outcome<never> => ({ ok: false, error })

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
  const limits = {
    memoryLimitBytes: config.memoryLimitBytes,
    timeLimitMs: config.timeLimitMs,
    maxStackBytes: config.maxStackBytes
  }

  /** Tells the worker to free a context (no-op when that worker is gone). */
  const disposeCompiled = (c: Compiled): void => c.link.post({ op: "dispose", handle: c.handle })
  const processors = new CompiledCache(config.cacheSize, disposeCompiled)
  const resolvers = new CompiledCache(config.cacheSize, disposeCompiled)
  const cacheFor = (kind: CodeKind): CompiledCache => (kind === "processor" ? processors : resolvers)
  let nextHandle = 1

  let link: WorkerLink | undefined
  let starting: Promise<WorkerLink> | undefined
  let closed = false

  /** A dead worker took its compiled functions with it. */
  const onDeath = (dead: WorkerLink): void => {
    if (link !== dead) return
    link = undefined
    processors.clear()
    resolvers.clear()
  }

  const startFailure = (e: unknown) => new SandboxRuntime({ message: `Sandbox failure: ${e instanceof Error ? e.message : String(e)}` })

  /** The live worker; starts one (asynchronously) if there is none. */
  const currentLink: Effect.Effect<WorkerLink, SandboxRuntime> = Effect.suspend(() => {
    if (link !== undefined && link.isAlive) return Effect.succeed(link)
    if (closed) return Effect.fail(new SandboxRuntime({ message: "Sandbox failure: sandbox is shut down" }))
    return Effect.tryPromise({
      try: () =>
        (starting ??= startWorker(limits, onDeath).then(
          (started) => {
            starting = undefined
            if (closed) started.kill("closed")
            else link = started
            return started
          },
          (e: unknown) => {
            starting = undefined
            throw e
          }
        )),
      catch: startFailure
    })
  })

  // The worker starts on first use (a server whose clients never send code pays nothing for it).
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      closed = true
      processors.clear()
      resolvers.clear()
      link?.kill("closed")
    }))

  /** Compiles in flight, by kind and cache key: concurrent prepares of the same code share one compile. */
  const compiling = new Map<string, Promise<Outcome<Compiled>>>()

  /**
   * Compiles `code` in the worker (asynchronously: the event loop keeps running) and caches it. A compile
   * that overruns its hard deadline (code escaping the function wrapper runs at compile time) kills the worker.
   */
  const compile = (kind: CodeKind, cacheKey: string, code: string): Effect.Effect<Compiled, SandboxError> =>
    Effect.flatMap(currentLink, (worker) =>
      Effect.flatMap(
        Effect.promise(() => {
          const inflightKey = `${kind}\u0000${cacheKey}`
          const inflight = compiling.get(inflightKey)
          if (inflight !== undefined) return inflight
          const handle = nextHandle++
          const request = worker.callAsync((id) => ({ op: "compile", id, handle, kind, code }), compileHardMs(config))
          const done = request.then((response): Outcome<Compiled> => {
            compiling.delete(inflightKey)
            if (response === undefined) return fail(fromDeath(worker.death, kind))
            if (!response.ok) return fail(fromWire(response.error))
            const compiled: Compiled = { link: worker, handle }
            // Cached here, not in the fiber, so an interrupted prepare does not leak the worker's context.
            if (worker.isAlive) cacheFor(kind).set(cacheKey, compiled)
            return ok(compiled)
          })
          compiling.set(inflightKey, done)
          return done
        }),
        (outcome) => (outcome.ok ? Effect.succeed(outcome.value) : Effect.fail(outcome.error))
      ))

  /** Calls a compiled function synchronously (blocking at most its hard deadline); returns its JSON output. */
  const runCompiled = (
    kind: CodeKind,
    cacheKey: string,
    compiled: Compiled,
    args: ReadonlyArray<string | undefined>
  ): Effect.Effect<string | 0, SandboxError> =>
    Effect.suspend(() => {
      const response = compiled.link.callSync(
        (id) => ({ op: "invoke", id, handle: compiled.handle, kind, args }),
        invokeHardMs(config)
      )
      if (response === undefined) return Effect.fail(fromDeath(compiled.link.death, kind))
      if (response.dropped === true) cacheFor(kind).discard(cacheKey, compiled)
      if (!response.ok) return Effect.fail(fromWire(response.error))
      const text = response.value ?? 0
      if (text !== 0 && utf8Length(text) > config.maxResultBytes) {
        return Effect.fail(
          new SandboxRuntime({ message: `${MESSAGES[kind].tooLarge} (limit ${config.maxResultBytes} bytes)` })
        )
      }
      return Effect.succeed(text)
    })

  /** Length and forbidden-word checks applied before anything is compiled. */
  const precheck = (code: string, maxLength: number): SandboxSyntax | SandboxForbidden | undefined => {
    if (code.length > maxLength) return new SandboxSyntax({ message: `Code exceeds ${maxLength} characters` })
    const forbidden = findForbiddenPattern(code)
    return forbidden !== undefined ? new SandboxForbidden({ message: forbidden }) : undefined
  }

  /** Runs (compiling on a cache miss, which is asynchronous) and returns the function's JSON output. */
  const execute = (
    kind: CodeKind,
    name: string,
    code: string,
    args: ReadonlyArray<string | undefined>
  ): Effect.Effect<string | 0, SandboxError> =>
    Effect.suspend(() => {
      const cacheKey = `${name}\u0000${code}`
      const cached = cacheFor(kind).get(cacheKey)
      if (cached !== undefined) return runCompiled(kind, cacheKey, cached, args)
      const rejected = precheck(code, config.maxCodeLength)
      if (rejected !== undefined) return Effect.fail(rejected)
      return Effect.flatMap(compile(kind, cacheKey, code), (compiled) => runCompiled(kind, cacheKey, compiled, args))
    })

  /**
   * Compiles and caches a function without running it, so a later run is synchronous (a cache hit never
   * awaits). Callers that must run user code inside a synchronous critical section call this first. Compiles
   * again when the worker was replaced since.
   */
  const prepare = (kind: CodeKind, name: string, code: string): Effect.Effect<void, SandboxError> =>
    Effect.suspend(() => {
      if (kind === "processor" && matchBuiltinProcessor(name, code) !== undefined) return Effect.void
      const cacheKey = `${name}\u0000${code}`
      if (cacheFor(kind).get(cacheKey) !== undefined) return Effect.void
      const rejected = precheck(code, config.maxCodeLength)
      if (rejected !== undefined) return Effect.fail(rejected)
      return Effect.asVoid(compile(kind, cacheKey, code))
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

  const validateCode = (
    code: string,
    maxLen: number,
    kind: CodeKind = "processor"
  ): Effect.Effect<void, SandboxSyntax | SandboxForbidden> =>
    Effect.suspend((): Effect.Effect<void, SandboxSyntax | SandboxForbidden> => {
      const rejected = precheck(code, maxLen)
      if (rejected !== undefined) return Effect.fail(rejected)
      return currentLink.pipe(
        Effect.mapError((e) => new SandboxSyntax({ message: e.message })),
        Effect.flatMap((worker) =>
          Effect.promise(() => worker.callAsync((id) => ({ op: "check", id, kind, code }), checkHardMs(config)))
        ),
        Effect.flatMap((response) =>
          response === undefined
            ? Effect.fail(new SandboxSyntax({ message: "Code too complex to check" }))
            : response.ok
            ? Effect.void
            : Effect.fail(new SandboxSyntax({ message: response.error.message }))
        )
      )
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
