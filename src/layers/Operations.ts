import { Effect, Exit, FiberSet, Option, Runtime } from "effect"
import { parseTimestamp, timestampToString } from "../crdt/hlc.js"
import type { LWWRecord, ORMapRecord, Timestamp, WriteConcern } from "../crdt/types.js"
import { WRITE_CONCERN_ORDER } from "../crdt/types.js"
import { validateClientOp } from "../protocol/client-op.js"
import type { ClientOp, ClientOpKind } from "../protocol/schema.js"
import type { Principal } from "./Auth.js"
import type { Connection } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { type Deadline, makeDeadlines } from "./deadlines.js"
import type { PersistFailed } from "./storage/write-behind.js"
import { Cluster } from "./Cluster.js"
import { Connections } from "./Connections.js"
import { Hooks, type ServerHooks } from "./Hooks.js"
import { Maps, type MapState } from "./Maps.js"
import { MetricsRegistry } from "./Metrics.js"
import { Resolvers } from "./Resolvers.js"
import { Security } from "./Security.js"
import { ServerConfig } from "./ServerConfig.js"

/** One op's outcome as reported in `OP_ACK.results` (protocol.md §3.0 OpResult). */
export interface OpResult {
  readonly opId: string
  readonly success: boolean
  readonly achievedLevel: WriteConcern
  readonly error?: string
}

/** A refusal (also sent as OP_REJECTED / ERROR). */
export interface OpRefusal {
  readonly opId: string | undefined
  readonly code: number
  readonly reason: string
}

/** The outcome of a write message: refusals (sent at once) and the ack (possibly after persistence). */
export interface WriteOutcome {
  readonly refusals: ReadonlyArray<OpRefusal>
  /** Results of the ops with an id, in op order, once every op reached its level or failed. */
  readonly results: Effect.Effect<ReadonlyArray<OpResult>>
  /** `results` as a callback, called once (synchronously when they are ready): no fiber waits. */
  readonly whenResults: (deliver: (results: ReadonlyArray<OpResult>) => void) => void
  /** The results at once when nothing waits (no PERSISTED op pending); undefined otherwise. */
  readonly resultsNow: (() => ReadonlyArray<OpResult>) | undefined
}

type Slot = { opId: string | undefined; result: OpResult | undefined; persistTimeout?: number; requested?: WriteConcern }

export interface WriteSource {
  readonly principal: Principal
  readonly connection?: Connection
  readonly origin: "client" | "http"
}

/** An op that passed shape, permission and drift checks. */
interface Admitted {
  readonly _tag: "Admitted"
  readonly opId: string | undefined
  readonly op: ClientOp
  readonly kind: ClientOpKind
  readonly clientTs: Timestamp | undefined
  readonly requested: WriteConcern
  readonly timeout: number
}

/** An admitted op that a hook then dropped or refused. */
interface Failed {
  readonly _tag: "Failed"
  readonly opId: string | undefined
  readonly error: string
}

const isAdmitted = (e: Admitted | OpRefusal | Failed): e is Admitted => "_tag" in e && e._tag === "Admitted"

const levelOf = (u: unknown): WriteConcern | undefined =>
  typeof u === "string" && u in WRITE_CONCERN_ORDER ? (u as WriteConcern) : undefined

const timeoutOf = (u: unknown): number | undefined =>
  typeof u === "number" && Number.isFinite(u) && u >= 0 ? u : undefined

const NO_LOAD_FAILURES: ReadonlyMap<string, string> = new Map()

const namesOf = (ops: ReadonlyArray<unknown>): Set<string> => {
  const names = new Set<string>()
  for (const op of ops) {
    const name = (op as { mapName?: unknown } | null)?.mapName
    if (typeof name === "string") names.add(name)
  }
  return names
}

/** Counts applied ops per (type, map) run, so a uniform batch costs one metrics update instead of one per op. */
class OpsTally {
  private type = ""
  private map = ""
  private count = 0
  constructor(private readonly record: (type: string, map: string, count: number) => void) {}
  add(type: string, map: string): void {
    if (this.count > 0 && type === this.type && map === this.map) {
      this.count++
      return
    }
    this.flush()
    this.type = type
    this.map = map
    this.count = 1
  }
  flush(): void {
    if (this.count > 0) this.record(this.type, this.map, this.count)
    this.count = 0
  }
}

/** Bounded set of original client timestamps already applied (timestamp mode `server`, protocol.md §4.1.5). */
class DuplicateWindow {
  private readonly seen = new Map<string, number>()
  constructor(private readonly windowMs: number, private readonly maxEntries: number) {}
  has(id: string, now: number): boolean {
    const at = this.seen.get(id)
    return at !== undefined && now - at <= this.windowMs
  }
  add(id: string, now: number): void {
    this.seen.set(id, now)
    if (this.seen.size > this.maxEntries) {
      const oldest = this.seen.keys().next().value
      if (oldest !== undefined) this.seen.delete(oldest)
    }
    // Expire from the front (insertion order = time order).
    for (const [k, t] of this.seen) {
      if (now - t <= this.windowMs) break
      this.seen.delete(k)
    }
  }
}

/**
 * The write pipeline of behavior.md §3.8–3.10 for CLIENT_OP, OP_BATCH, inbound-BATCH and HTTP ops:
 * validate (shape → permission → drift) → map type → (re-stamp) → apply through `Maps` → write concern.
 * Applies run synchronously in op order; only PERSISTED waits, off the connection's inbound fiber.
 */
export class Operations extends Effect.Service<Operations>()("tessera/Operations", {
  scoped: Effect.gen(function* () {
    const config = yield* ServerConfig
    const hlcService = yield* Hlc
    const hlc = hlcService.clock
    const wall = hlcService.wallMillis
    const maps = yield* Maps
    const security = yield* Security
    const resolvers = yield* Resolvers
    const connections = yield* Connections
    const metrics = yield* MetricsRegistry
    const replicatedRequiresCommit = (yield* Cluster).replicatedRequiresCommit === true
    const hooks = Option.getOrElse(yield* Effect.serviceOption(Hooks), () => ({}) as ServerHooks)
    const duplicates = new DuplicateWindow(config.duplicateWindowMs, 100_000)
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const clock = yield* Effect.clock

    /** Names of the maps the ops touch that are not loaded yet (undefined when all are: the common case). */
    const unloadedNames = (ops: ReadonlyArray<unknown>): Set<string> | undefined => {
      let names: Set<string> | undefined
      for (const op of ops) {
        const name = (op as { mapName?: unknown } | null)?.mapName
        if (typeof name === "string" && maps.peek(name) === undefined) (names ??= new Set()).add(name)
      }
      return names
    }

    /** Loads maps before the synchronous apply loop (reads and writes wait for loads); returns the failures. */
    const loadMaps = (names: ReadonlySet<string>) =>
      Effect.forEach(names, (name) => Effect.exit(maps.get(name)).pipe(Effect.map((exit) => [name, exit] as const)), {
        concurrency: "unbounded"
      }).pipe(
        Effect.map((exits) => {
          const failed = new Map<string, string>()
          for (const [name, exit] of exits) {
            if (Exit.isFailure(exit)) failed.set(name, `Failed to load map ${name}`)
          }
          return failed as ReadonlyMap<string, string>
        })
      )

    /** MERGE_REJECTED to the writer, or to the map's subscribers when the write has no connection (HTTP). */
    const mergeRejected = (source: WriteSource, state: MapState, key: string, attemptedValue: unknown, reason: string) => {
      const timestamp = hlc.now()
      const send = (c: Connection) =>
        c.send({ type: "MERGE_REJECTED", mapName: state.name, key, attemptedValue: attemptedValue === null ? null : security.filterValue(c.principal!, state.name, attemptedValue), reason, timestamp })
      if (source.connection !== undefined) return send(source.connection)
      for (const id of connections.mapSubscribers(state.name)?.keys() ?? []) {
        const c = connections.get(id)
        if (c?.principal !== undefined) send(c)
      }
    }

    /** Shape, permission and drift (behavior.md §3.8 step 2); FIRE_AND_FORGET is reached when they pass. */
    const validate = (source: WriteSource, raw: unknown, batchConcern: WriteConcern | undefined, batchTimeout: number | undefined, now: number): Admitted | OpRefusal => {
      const rawId = (raw as { id?: unknown } | null)?.id
      const opId = typeof rawId === "string" ? rawId : typeof rawId === "number" ? String(rawId) : undefined
      const validated = validateClientOp(raw)
      if (!validated.ok) return { opId, code: 400, reason: validated.reason }
      const { op, kind } = validated
      const isLwwRemoval = kind === "REMOVE" || (kind === "PUT" && (op.record?.value ?? null) === null)
      if (!security.checkPermission(source.principal, op.mapName, isLwwRemoval ? "REMOVE" : "PUT")) {
        return { opId, code: 403, reason: "Access Denied" }
      }
      const clientTs: Timestamp | undefined = kind === "OR_ADD" ? op.orRecord!.timestamp : kind === "OR_REMOVE" ? undefined : op.record?.timestamp
      if (clientTs !== undefined) {
        const ahead = clientTs.millis - now
        if (ahead > config.maxDriftMs) return { opId, code: 400, reason: `Timestamp drift: ${ahead} ms ahead of server time (max ${config.maxDriftMs} ms)` }
      }
      return {
        _tag: "Admitted",
        opId,
        op,
        kind,
        clientTs,
        requested: levelOf(op.writeConcern) ?? batchConcern ?? "MEMORY",
        timeout: timeoutOf(op.timeout) ?? batchTimeout ?? config.writeAckTimeoutMs
      }
    }

    /** `onBeforeOp` hooks (behavior.md §3.11): replace, drop or refuse each admitted op, in order. */
    const runBeforeHooks = (source: WriteSource, entries: Array<Admitted | OpRefusal | Failed>) =>
      Effect.forEach(entries, (entry, i) => {
        if (!isAdmitted(entry) || hooks.onBeforeOp === undefined) return Effect.void
        const context = { connectionId: source.connection?.id, principal: source.principal, authenticated: true, origin: source.origin } as const
        return hooks.onBeforeOp(entry.op, context).pipe(
          Effect.match({
            onFailure: (e) => {
              entries[i] = { _tag: "Failed", opId: entry.opId, error: e.message }
            },
            onSuccess: (replacement) => {
              if (replacement === undefined) {
                entries[i] = { _tag: "Failed", opId: entry.opId, error: "Dropped by interceptor" }
                return
              }
              if (replacement === entry.op) return
              const again = validateClientOp(replacement)
              entries[i] = again.ok
                ? { ...entry, op: again.op, kind: again.kind }
                : { _tag: "Failed", opId: entry.opId, error: again.reason }
            }
          }),
          Effect.catchAllDefect((defect) => Effect.sync(() => {
            entries[i] = { _tag: "Failed", opId: entry.opId, error: defect instanceof Error ? defect.message : String(defect) }
          }))
        )
      }, { discard: true })

    /**
     * Processes ops in order (behavior.md §3.8–3.10): validate all, run hooks, then apply them in one
     * synchronous run (so per-key storage order is apply order). `batchConcern` / `batchTimeout` are the
     * OP_BATCH defaults.
     */
    const processOps = (
      source: WriteSource,
      ops: ReadonlyArray<unknown>,
      batchConcern: WriteConcern | undefined,
      batchTimeout: number | undefined
    ): Effect.Effect<WriteOutcome> =>
      Effect.gen(function* () {
        if (config.tracing) yield* Effect.annotateCurrentSpan("tessera.ops", ops.length)
        const started = wall()
        const entries: Array<Admitted | OpRefusal | Failed> = ops.map((raw) => validate(source, raw, batchConcern, batchTimeout, started))
        if (hooks.onBeforeOp !== undefined) yield* runBeforeHooks(source, entries)
        // After the hooks: a hook may have replaced an op (and its map).
        const admittedOps = hooks.onBeforeOp === undefined ? ops : entries.flatMap((e) => (isAdmitted(e) ? [e.op] : []))
        const unloaded = unloadedNames(admittedOps)
        const loadFailures = unloaded === undefined ? NO_LOAD_FAILURES : yield* loadMaps(unloaded)
        if (resolvers.hasCustom()) yield* resolvers.prepare(namesOf(admittedOps))
        return applyEntries(source, entries, loadFailures, started)
      })

    /**
     * `processOps` without leaving the caller's synchronous run, when nothing in it has to wait: no
     * `onBeforeOp` hook, every named map loaded, no custom resolver to compile. Returns undefined when
     * the ops need `processOps`. The common write then costs no fiber hop at all (the session calls it
     * straight from the socket callback when its inbound queue is empty).
     */
    const processOpsNow = (
      source: WriteSource,
      ops: ReadonlyArray<unknown>,
      batchConcern: WriteConcern | undefined,
      batchTimeout: number | undefined
    ): WriteOutcome | undefined => {
      if (hooks.onBeforeOp !== undefined || resolvers.hasCustom() || unloadedNames(ops) !== undefined) return undefined
      const started = wall()
      const entries: Array<Admitted | OpRefusal | Failed> = ops.map((raw) => validate(source, raw, batchConcern, batchTimeout, started))
      return applyEntries(source, entries, NO_LOAD_FAILURES, started)
    }

    /** The synchronous apply run over validated entries (every named map loaded or in `loadFailures`). */
    const applyEntries = (
      source: WriteSource,
      entries: ReadonlyArray<Admitted | OpRefusal | Failed>,
      loadFailures: ReadonlyMap<string, string>,
      started: number
    ): WriteOutcome => {
      const refusals: OpRefusal[] = []
      const slots: Array<Slot> = []
      const writerId = source.connection?.id
      const lateRefusals: string[] = []
      let lastActive: Timestamp | undefined
      const opsTally = new OpsTally(metrics.opApplied)
      // One clock read for the whole synchronous run (HLC and TTL visibility).
      const now = wall()

      for (const entry of entries) {
        const opId = entry.opId
        const refuse = (code: number, reason: string) => {
          metrics.opResult("rejected")
          refusals.push({ opId, code, reason })
          slots.push({ opId, result: opId === undefined ? undefined : { opId, success: false, achievedLevel: "FIRE_AND_FORGET", error: reason } })
        }
        if (!isAdmitted(entry)) {
          if ("_tag" in entry) {
            // Refused by a hook after validation: a failure result, not an OP_REJECTED.
            metrics.opResult("failed")
            slots.push({ opId, result: opId === undefined ? undefined : { opId, success: false, achievedLevel: "FIRE_AND_FORGET", error: entry.error } })
          } else refuse(entry.code, entry.reason)
          continue
        }
        const { op, kind, clientTs, requested, timeout } = entry
        const isLwwRemoval = kind === "REMOVE" || (kind === "PUT" && (op.record?.value ?? null) === null)
        // FIRE_AND_FORGET is reached: an op acknowledged at that level has its later refusals only logged.
        const lateRefuse = (code: number, reason: string) => {
          if (requested !== "FIRE_AND_FORGET") return refuse(code, reason)
          slots.push({ opId, result: opId === undefined ? undefined : { opId, success: true, achievedLevel: "FIRE_AND_FORGET" } })
          lateRefusals.push(`${op.mapName}/${op.key}: ${reason}`)
        }
        const loadFailure = loadFailures.get(op.mapName)
        if (loadFailure !== undefined) {
          lateRefuse(500, loadFailure)
          continue
        }
        const state = maps.peek(op.mapName) as MapState
        const isOrOp = kind === "OR_ADD" || kind === "OR_REMOVE"
        if (state.type === "LWW" && isOrOp) {
          lateRefuse(409, "Map type mismatch: LWWMap but received OR op")
          continue
        }
        if (state.type === "OR" && !isOrOp) {
          lateRefuse(409, "Map type mismatch: ORMap but received LWW op")
          continue
        }

        let duplicate = false
        let rejectedByResolver: string | undefined
        if (clientTs !== undefined) {
          hlc.update(clientTs, now)
          if (config.timestampMode === "server") {
            const original = timestampToString(clientTs)
            if (duplicates.has(original, now)) duplicate = true
            else duplicates.add(original, now)
          }
        }
        if (!duplicate) {
          const restamp = config.timestampMode === "server" && clientTs !== undefined
          const ctx = { origin: source.origin, ...(writerId !== undefined ? { writerId } : {}), echoToWriter: restamp } as const
          switch (kind) {
            case "PUT":
            case "REMOVE": {
              const record: LWWRecord = op.record == null
                ? { value: null, timestamp: hlc.now() }
                : kind === "REMOVE" || restamp
                ? { ...op.record, ...(kind === "REMOVE" ? { value: null } : {}), ...(restamp ? { timestamp: hlc.now() } : {}) }
                : op.record
              lastActive = record.timestamp
              if (!resolvers.has(state.name)) {
                maps.applyLww(state, op.key, record, ctx, now)
                break
              }
              const resolution = resolvers.resolve(state, op.key, record, source.principal, writerId)
              if (resolution._tag === "Accept") maps.applyLww(state, op.key, record, ctx, now)
              else if (resolution._tag === "Merge") {
                const merged: LWWRecord = { value: resolution.value as LWWRecord["value"], timestamp: hlc.now(), ...(record.ttlMs !== undefined ? { ttlMs: record.ttlMs } : {}) }
                maps.applyLww(state, op.key, merged, { ...ctx, echoToWriter: true })
              } else if (resolution._tag === "Reject") {
                rejectedByResolver = resolution.reason
                mergeRejected(source, state, op.key, record.value, resolution.reason)
              }
              break
            }
            case "OR_ADD": {
              const record: ORMapRecord = restamp ? { ...op.orRecord!, timestamp: hlc.now() } : op.orRecord!
              maps.applyOrAdd(state, op.key, record, ctx)
              lastActive = record.timestamp
              break
            }
            case "OR_REMOVE": {
              maps.applyOrTombstone(state, op.key, op.orTag!, ctx)
              lastActive = parseTimestamp(op.orTag!) ?? lastActive
              break
            }
          }
        }
        opsTally.add(kind === "REMOVE" || isLwwRemoval ? "DELETE" : kind, op.mapName)
        // APPLIED; a single node has no backups, so REPLICATED is reached with it.
        if (rejectedByResolver !== undefined) {
          slots.push({ opId, result: opId === undefined ? undefined : { opId, success: false, achievedLevel: "MEMORY", error: `Rejected by conflict resolver: ${rejectedByResolver}` } })
        } else if (opId === undefined) {
          slots.push({ opId, result: undefined })
        } else if (requested === "FIRE_AND_FORGET") {
          slots.push({ opId, result: { opId, success: true, achievedLevel: "FIRE_AND_FORGET" } })
        } else if (requested !== "PERSISTED" && !(requested === "REPLICATED" && replicatedRequiresCommit)) {
          slots.push({ opId, result: { opId, success: true, achievedLevel: replicatedRequiresCommit ? "APPLIED" : "REPLICATED" } })
        } else if (!maps.durable) {
          slots.push({ opId, result: { opId, success: false, achievedLevel: "REPLICATED", error: "PERSISTED not available: no durable storage configured" } })
        } else {
          slots.push({ opId, result: undefined, persistTimeout: timeout, requested })
        }
      }
      opsTally.flush()
      if (lastActive !== undefined && source.connection !== undefined) source.connection.lastActiveHlc = lastActive
      if (lateRefusals.length > 0) runFork(Effect.logWarning("FIRE_AND_FORGET ops refused after acknowledgement", lateRefusals))
      if (hooks.onAfterOp !== undefined) {
        const onAfterOp = hooks.onAfterOp
        const context = { connectionId: source.connection?.id, principal: source.principal, authenticated: true, origin: source.origin } as const
        const applied = entries.filter(isAdmitted).map((e) => e.op)
        runFork(Effect.forEach(applied, (op) => Effect.ignore(onAfterOp(op, context)), { discard: true }))
      }

      const pending = slots.filter((s) => s.persistTimeout !== undefined)
      const collect = (): ReadonlyArray<OpResult> => {
        const out: OpResult[] = []
        for (const s of slots) {
          if (s.result === undefined) continue
          out.push(s.result)
          if (s.result.error?.startsWith("Timeout") === true) metrics.ackTimeout()
        }
        // One observation per acknowledgement (all ops of a batch are acknowledged together).
        if (out.length > 0) metrics.ackLatency(slots.find((s) => s.requested !== undefined)?.requested ?? out[0]!.achievedLevel, (wall() - started) / 1000)
        return out
      }
      // Same synchronous run as the applies: per-key storage order = apply order. Nobody waits when no op
      // asked for PERSISTED: write-behind retries and reports failures itself.
      if (pending.length === 0) {
        maps.flushPersistenceThen(undefined)
        return { refusals, results: Effect.sync(collect), whenResults: (deliver) => deliver(collect()), resultsNow: collect }
      }
      return awaitPersisted(refusals, pending, collect)
    }

    // Timer fibers live in the layer's scope: closing the server stops them (no timer keeps Node alive).
    const deadlines = makeDeadlines(clock, yield* FiberSet.makeRuntime<never>(), (error) =>
      runFork(Effect.logError("write-concern timeout callback threw", error)))

    /**
     * The PERSISTED wait of one write message, on callbacks rather than fibers (one commit callback and a
     * timeout per distinct op timeout, normally one per batch): under PERSISTED load a fiber per batch
     * was the biggest cost of the server.
     */
    const awaitPersisted = (refusals: ReadonlyArray<OpRefusal>, pending: ReadonlyArray<Slot>, collect: () => ReadonlyArray<OpResult>): WriteOutcome => {
      const below: WriteConcern = replicatedRequiresCommit ? "APPLIED" : "REPLICATED"
      const groups: Array<{ slots: Array<Slot>; done: boolean; timeout: Deadline | undefined }> = []
      const byTimeout = new Map<number, Array<Slot>>()
      for (const slot of pending) {
        const group = byTimeout.get(slot.persistTimeout!)
        if (group === undefined) {
          const slots = [slot]
          byTimeout.set(slot.persistTimeout!, slots)
          groups.push({ slots, done: false, timeout: undefined })
        } else group.push(slot)
      }
      let open = groups.length
      const waiting: Array<(results: ReadonlyArray<OpResult>) => void> = []
      const settle = (group: (typeof groups)[number], result: (slot: Slot) => OpResult): void => {
        if (group.done) return
        group.done = true
        group.timeout?.cancel()
        for (const slot of group.slots) slot.result = result(slot)
        if (--open === 0 && waiting.length > 0) {
          const results = collect()
          for (const deliver of waiting.splice(0)) deliver(results)
        }
      }
      // With a shared store, the commit both persists and publishes (REPLICATED = PERSISTED reached).
      const persisted = (slot: Slot): OpResult => ({ opId: slot.opId!, success: true, achievedLevel: "PERSISTED" })
      const onCommit = (failure: PersistFailed | undefined): void => {
        const outcome = failure === undefined
          ? persisted
          : (slot: Slot): OpResult => ({ opId: slot.opId!, success: false, achievedLevel: below, error: `Persistence failed: ${failure.message}` })
        for (const group of groups) settle(group, outcome)
      }
      const timedOut = (slot: Slot): OpResult =>
        ({ opId: slot.opId!, success: false, achievedLevel: below, error: `Timeout: achieved ${below}, requested ${slot.requested}` })
      if (!maps.flushPersistenceThen(onCommit)) onCommit(undefined) // nothing was staged: durable already
      for (const group of groups) {
        if (!group.done) group.timeout = deadlines.add(group.slots[0]!.persistTimeout!, () => settle(group, timedOut))
      }
      const whenResults = (deliver: (results: ReadonlyArray<OpResult>) => void): void => {
        if (open === 0) deliver(collect())
        else waiting.push(deliver)
      }
      return {
        refusals,
        results: Effect.async<ReadonlyArray<OpResult>>((resume) => whenResults((results) => resume(Effect.succeed(results)))),
        whenResults,
        resultsNow: undefined
      }
    }

    return { processOps, processOpsNow, levelOf, timeoutOf } as const
  })
}) {}

/** Top-level `achievedLevel` of an OP_ACK: the lowest level among successful results (protocol.md §3.2.2). */
export const lowestSuccessfulLevel = (results: ReadonlyArray<OpResult>): WriteConcern => {
  let lowest: WriteConcern | undefined
  for (const r of results) {
    if (!r.success) continue
    if (lowest === undefined || WRITE_CONCERN_ORDER[r.achievedLevel] < WRITE_CONCERN_ORDER[lowest]) lowest = r.achievedLevel
  }
  return lowest ?? "FIRE_AND_FORGET"
}
