import { Effect, Exit } from "effect"
import { isVisible } from "../crdt/lww-map.js"
import type { Connection } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { Maps, type MapState } from "./Maps.js"
import { Sandbox, type SandboxError } from "./Sandbox.js"
import { Security } from "./Security.js"

interface ProcessorDef {
  readonly name: string
  readonly code: string
  readonly args?: unknown
}

type Outcome =
  | { readonly success: true; readonly result?: unknown; readonly newValue?: unknown }
  | { readonly success: false; readonly error: string }

const describeError = (e: SandboxError): string => {
  switch (e._tag) {
    case "SandboxTimeout":
      return "Processor execution timed out"
    case "SandboxMemory":
      return "Processor memory limit exceeded"
    default:
      return e.message
  }
}

/** Tries before giving up when the processor keeps needing an asynchronous compile (cache eviction races). */
const MAX_ATTEMPTS = 3

/**
 * Entry processors (protocol.md §3.10, §4.13; behavior.md §3.21). The read of the current value, the
 * sandboxed run and the write happen in one synchronous section, so an execution is serialized with
 * every other change to the key (client writes, TTL, other processors). The write goes through `Maps`'
 * single apply path: persisted, broadcast (the caller included), indexed and journaled.
 */
export class Processors extends Effect.Service<Processors>()("tessera/Processors", {
  effect: Effect.gen(function* () {
    const maps = yield* Maps
    const sandbox = yield* Sandbox
    const security = yield* Security
    const hlc = (yield* Hlc).clock
    const wall = (yield* Hlc).wallMillis

    const validate = (p: ProcessorDef): string | undefined => {
      if (p.name.length < 1 || p.name.length > 100) return "Invalid processor: name must be 1-100 characters"
      if (p.code.length < 1 || p.code.length > 10_000) return "Invalid processor: code must be 1-10000 characters"
      return undefined
    }

    /** Read → run → write for one key, atomically. `undefined` means "compile was evicted; try again". */
    const runOnce = (c: Connection, state: MapState, key: string, p: ProcessorDef): Outcome | undefined => {
      const stored = state.lww.get(key)
      const current = stored !== undefined && isVisible(stored.record, wall()) ? stored.record.value : undefined
      const exit = Effect.runSyncExit(sandbox.runProcessor({ name: p.name, code: p.code, value: current, key, args: p.args }))
      if (Exit.isFailure(exit)) {
        const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        if (failure === undefined) return undefined // needed to await (not compiled): prepare and retry
        return { success: false, error: describeError(failure) }
      }
      const { value, result } = exit.value
      if (value !== undefined) {
        maps.applyLww(state, key, { value: value as object, timestamp: hlc.now() }, { origin: "processor" })
      } else if (current !== undefined) {
        maps.applyLww(state, key, { value: null, timestamp: hlc.now() }, { origin: "processor" })
      }
      const filter = security.valueFilter(c.principal!, state.name)
      return {
        success: true,
        ...(result !== undefined ? { result } : {}),
        ...(value !== undefined ? { newValue: value === null ? null : filter(value) } : {})
      }
    }

    const processKey = (c: Connection, state: MapState, key: string, p: ProcessorDef): Effect.Effect<Outcome> =>
      Effect.gen(function* () {
        for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
          const prepared = yield* Effect.either(sandbox.prepare("processor", p.name, p.code))
          if (prepared._tag === "Left") return { success: false, error: describeError(prepared.left) } as const
          const outcome = runOnce(c, state, key, p)
          if (outcome !== undefined) {
            yield* Effect.forkDaemon(Effect.ignore(maps.flushPersistence()))
            return outcome
          }
        }
        return { success: false, error: "Processor could not be compiled, try again" } as const
      })

    /** Checks shared by single and batch requests; returns the map or a failure text for every key. */
    const admit = (c: Connection, mapName: string, p: ProcessorDef) =>
      Effect.gen(function* () {
        if (!security.checkPermission(c.principal!, mapName, "PUT")) return { error: `Access Denied for map ${mapName}` } as const
        // A processor computes over the whole stored value: field-level security would leak through `result`.
        if (security.readable(c.principal!, mapName)._tag !== "All") {
          return { error: `Access Denied for map ${mapName}: entry processors need read access to every field` } as const
        }
        const invalid = validate(p)
        if (invalid !== undefined) return { error: invalid } as const
        const checked = yield* Effect.either(sandbox.validateCode(p.code, 10_000, "processor"))
        if (checked._tag === "Left") return { error: checked.left.message } as const
        const state = yield* Effect.either(maps.get(mapName))
        if (state._tag === "Left") return { error: `Failed to load map ${mapName}` } as const
        if (state.right.type === "OR") return { error: "Entry processors require an LWW map" } as const
        return { state: state.right } as const
      })

    const process = (c: Connection, m: { requestId: string; mapName: string; key: string; processor: ProcessorDef }) =>
      Effect.gen(function* () {
        const admitted = yield* admit(c, m.mapName, m.processor)
        const outcome: Outcome = "error" in admitted ? { success: false, error: admitted.error } : yield* processKey(c, admitted.state, m.key, m.processor)
        c.send({ type: "ENTRY_PROCESS_RESPONSE", requestId: m.requestId, ...outcome })
      })

    const processBatch = (c: Connection, m: { requestId: string; mapName: string; keys: ReadonlyArray<string>; processor: ProcessorDef }) =>
      Effect.gen(function* () {
        const admitted = yield* admit(c, m.mapName, m.processor)
        const results: Record<string, Outcome> = {}
        for (const key of m.keys) {
          results[key] = "error" in admitted ? { success: false, error: admitted.error } : yield* processKey(c, admitted.state, key, m.processor)
        }
        c.send({ type: "ENTRY_PROCESS_BATCH_RESPONSE", requestId: m.requestId, results })
      })

    return { process, processBatch } as const
  })
}) {}
