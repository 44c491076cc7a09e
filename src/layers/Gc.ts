/**
 * TTL expiry and distributed tombstone GC (protocol.md §4.12, behavior.md §3.16).
 *
 * Two background fibers, both forked into the layer's scope (so closing it interrupts them):
 *
 * - **TTL sweep** (every `ttlSweepIntervalMs`): expired records become tombstones through the normal
 *   apply path (`Maps.applyLww` / `applyOrTombstone` with origin `ttl`), so live queries, search, the
 *   journal, Merkle trees, storage and other clients all see them.
 * - **Consensus** (every `gcIntervalMs`): this node reports `min(own HLC, lastActiveHlc of every
 *   authenticated connection)` to the leader. The leader, once every current member has reported in
 *   the current epoch, commits `safe = globalMin − gcAgeMs` to all members; every node then prunes LWW
 *   and OR tombstones whose server storage time is `< safe` from memory, Merkle trees and storage, and
 *   sends `GC_PRUNE` to its authenticated clients.
 *
 * Inbound `GcReport` / `GcCommit` messages are handled by a third fiber. Every iteration of every loop
 * recovers from its failure (typed below) with a log line, so one bad round never stops GC.
 */
import { Data, Effect, Option, Schedule, Stream } from "effect"
import { partitionId } from "../crdt/hash.js"
import { compareTimestamps } from "../crdt/hlc.js"
import type { LWWRecord, Timestamp } from "../crdt/types.js"
import { Cluster, type Membership } from "./Cluster.js"
import { assignPartitions, ClusterDirectory } from "./cluster/partition-map.js"
import { Connections } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { type MapState, Maps } from "./Maps.js"
import { MetricsRegistry } from "./Metrics.js"
import { ServerConfig } from "./ServerConfig.js"
import { Storage, type StorageMutation } from "./Storage.js"
import { WriteBehind } from "./storage/write-behind.js"

/** This node is not the leader of the epoch a report was addressed to. */
export class GcNotLeader extends Data.TaggedError("GcNotLeader")<{ readonly leader: string | undefined; readonly epoch: number }> {}
/** The membership has no leader (or this node is not a member): nobody can commit. */
export class GcNoLeader extends Data.TaggedError("GcNoLeader")<{ readonly epoch: number }> {}
/** A report from an older (or unknown newer) epoch, or from a node that is not a member: discarded. */
export class GcStaleReport extends Data.TaggedError("GcStaleReport")<{ readonly from: string; readonly epoch: number; readonly currentEpoch: number }> {}
/** The leader's round is still waiting for reports (e.g. across a partition): nothing is pruned. */
export class GcRoundIncomplete extends Data.TaggedError("GcRoundIncomplete")<{ readonly epoch: number; readonly missing: ReadonlyArray<string> }> {}
/** A commit that a member refuses: not from its leader, stale epoch, or a safe point that is too new. */
export class GcCommitRejected extends Data.TaggedError("GcCommitRejected")<{
  readonly from: string
  readonly epoch: number
  readonly reason: "not-from-leader" | "stale-epoch" | "too-new"
}> {}
/** The prune itself threw (a bug or corrupted state); the next commit retries. */
export class GcPruneFailed extends Data.TaggedError("GcPruneFailed")<{ readonly message: string }> {}
/** The TTL sweep threw. */
export class GcSweepFailed extends Data.TaggedError("GcSweepFailed")<{ readonly message: string }> {}

export type GcError = GcNotLeader | GcNoLeader | GcStaleReport | GcRoundIncomplete | GcCommitRejected | GcPruneFailed | GcSweepFailed

/** Metrics and test view of the collector. */
export interface GcStatus {
  /** The last safe timestamp this node pruned with (the GC horizon). */
  readonly lastSafeTimestamp: Timestamp | undefined
  /** Commits this node issued as leader. */
  readonly commitsIssued: number
  /** Commits this node applied (pruned with), its own included. */
  readonly roundsCompleted: number
  readonly commitsRejected: number
  readonly roundsFailed: number
  readonly prunedLww: number
  readonly prunedOr: number
  readonly ttlExpired: number
}

/** Observable GC events, for tests and invariant checks (plain synchronous listeners). */
export type GcEvent =
  | { readonly _tag: "Committed"; readonly epoch: number; readonly safeTimestamp: Timestamp; readonly reports: ReadonlyMap<string, Timestamp> }
  | {
    readonly _tag: "Pruned"
    readonly epoch: number
    readonly from: string
    readonly safeTimestamp: Timestamp
    /** `[mapName, key]` of every LWW tombstone removed. */
    readonly lww: ReadonlyArray<readonly [string, string]>
    /** `[mapName, tag]` of every OR tombstone removed. */
    readonly or: ReadonlyArray<readonly [string, string]>
  }
  | { readonly _tag: "Rejected"; readonly error: GcCommitRejected }

/** Keys handled per synchronous slice before yielding to the event loop. */
export const GC_CHUNK = 10_000

/** Meta key of the persisted GC horizon. */
export const GC_HORIZON_META_KEY = "gc:safeTimestamp"

const minTimestamp = (a: Timestamp, b: Timestamp): Timestamp => (compareTimestamps(a, b) <= 0 ? a : b)

/**
 * Returns control to the event loop between chunks. `Effect.yieldNow` only re-queues the fiber as a
 * microtask, which lets other fibers run but not I/O or timers; `setImmediate` lets the loop turn.
 */
const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

const make = Effect.gen(function* () {
  const config = yield* ServerConfig
  const maps = yield* Maps
  const connections = yield* Connections
  const hlc = yield* Hlc
  const cluster = yield* Cluster
  const writeBehind = yield* WriteBehind
  const storage = yield* Storage
  const metrics = Option.getOrUndefined(yield* Effect.serviceOption(MetricsRegistry))
  const directory = Option.getOrUndefined(yield* Effect.serviceOption(ClusterDirectory))
  const self = cluster.nodeId
  const durable = storage.durable
  const { gcAgeMs } = config
  const serverNodeId = hlc.nodeId

  // ---- state (touched synchronously only) ----
  /** Leader side: newest-round reports per member, valid for `pendingEpoch` only. */
  let pendingEpoch = -1
  const reports = new Map<string, Timestamp>()
  let lastSafe: Timestamp | undefined
  let commitsIssued = 0
  let roundsCompleted = 0
  let commitsRejected = 0
  let roundsFailed = 0
  let prunedLww = 0
  let prunedOr = 0
  let ttlExpired = 0
  const listeners = new Set<(event: GcEvent) => void>()
  const emit = (event: GcEvent): void => {
    for (const l of listeners) l(event)
  }
  /** One prune at a time (the leader's own commit and inbound commits may coincide). */
  const pruneLock = yield* Effect.makeSemaphore(1)

  /** min(own HLC, lastActiveHlc of every authenticated connection) — protocol.md §4.12 step 1. */
  const localMinHlc = (): Timestamp => {
    let min = hlc.clock.now()
    for (const c of connections.all()) {
      if (c.principal !== undefined) min = minTimestamp(min, c.lastActiveHlc)
    }
    return min
  }

  /** Drops the round when the epoch moved on (a new leader starts from nothing: no partial consensus). */
  const alignEpoch = (epoch: number): void => {
    if (pendingEpoch !== epoch) {
      pendingEpoch = epoch
      reports.clear()
    }
  }

  /**
   * Records a report. Within a round the leader keeps the minimum of a member's reports: with in-order
   * delivery that is its newest report (a member's minimum only grows, unless a lagging client connects,
   * which lowers it), and under reordering or duplication it can only make the safe point older.
   */
  const recordReport = (from: string, minHlc: Timestamp): void => {
    const previous = reports.get(from)
    reports.set(from, previous === undefined ? minHlc : minTimestamp(previous, minHlc))
  }

  // ---- pruning ----

  const prune = (safe: Timestamp, epoch: number, from: string): Effect.Effect<void, GcPruneFailed> =>
    pruneLock.withPermits(1)(
      Effect.gen(function* () {
        if (lastSafe !== undefined && compareTimestamps(safe, lastSafe) <= 0) return // duplicate or older commit: nothing new to prune
        const observed = listeners.size > 0
        const prunedBefore = prunedLww + prunedOr
        const lwwOut: Array<readonly [string, string]> = []
        const orOut: Array<readonly [string, string]> = []
        for (const state of Array.from(maps.all())) {
          yield* pruneLwwMap(state, safe, observed ? lwwOut : undefined)
          yield* pruneOrMap(state, safe, observed ? orOut : undefined)
        }
        lastSafe = safe
        roundsCompleted++
        if (metrics !== undefined) {
          metrics.gcSafeTimestamp(safe.millis)
          metrics.gcPruned(prunedLww + prunedOr - prunedBefore)
        }
        if (durable) writeBehind.submitUnsafe([{ _tag: "Meta", key: GC_HORIZON_META_KEY, value: JSON.stringify(safe) }])
        const notice = { type: "GC_PRUNE", payload: { olderThan: safe } }
        for (const c of connections.all()) if (c.principal !== undefined) c.send(notice)
        if (observed) emit({ _tag: "Pruned", epoch, from, safeTimestamp: safe, lww: lwwOut, or: orOut })
      })
    )

  /** Throwing plain code inside a prune slice becomes a typed failure. */
  const guarded = <A>(f: () => A): Effect.Effect<A, GcPruneFailed> =>
    Effect.try({ try: f, catch: (e) => new GcPruneFailed({ message: e instanceof Error ? e.message : String(e) }) })

  /**
   * Walks `items` in slices of `chunk`, yielding to the event loop between slices. `select` picks the
   * items of a slice to prune; `prune` handles them in the same synchronous run as the selection.
   */
  const inSlices = <T, K>(items: Iterator<T>, chunk: number, select: (item: T) => K | undefined, prune: (slice: ReadonlyArray<K>) => void) =>
    Effect.gen(function* () {
      let done = false
      while (!done) {
        done = yield* guarded(() => {
          const slice: K[] = []
          for (let i = 0; i < chunk; i++) {
            const next = items.next()
            if (next.done === true) {
              prune(slice)
              return true
            }
            const picked = select(next.value)
            if (picked !== undefined) slice.push(picked)
          }
          prune(slice)
          return false
        })
        if (!done) yield* yieldToEventLoop
      }
    })

  /**
   * LWW: walks the map's tombstone keys (not the whole map); each slice deletes its old tombstones from the
   * map and the Merkle tree and submits their storage deletes in the same synchronous run (so a write to
   * the key after the delete is ordered after it in storage too).
   */
  const pruneLwwMap = (state: MapState, safe: Timestamp, out: Array<readonly [string, string]> | undefined) =>
    state.lww.tombstoneCount === 0 ? Effect.void : inSlices(
      state.lww.tombstoneKeys(),
      // Almost every tombstone key walked is pruned, and a delete re-hashes its Merkle path: small slices.
      GC_CHUNK / 10,
      (key) => {
        const stored = state.lww.get(key)
        return stored !== undefined && stored.record.value === null && compareTimestamps(stored.storedAt, safe) < 0 ? key : undefined
      },
      (keys) => {
        if (keys.length === 0) return
        for (const key of keys) state.lww.delete(key)
        prunedLww += keys.length
        if (durable) writeBehind.submitUnsafe(keys.map((key): StorageMutation => ({ _tag: "LwwDelete", mapName: state.name, key })))
        if (out !== undefined) for (const key of keys) out.push([state.name, key])
      }
    )

  /** OR: tombstones live outside the Merkle tree, so a prune is a set delete plus a storage delete. */
  const pruneOrMap = (state: MapState, safe: Timestamp, out: Array<readonly [string, string]> | undefined) =>
    state.or.tombstoneCount === 0 ? Effect.void : inSlices(
      state.or.tombstoneEntries(),
      GC_CHUNK / 2,
      ([tag, storedAt]) => (compareTimestamps(storedAt, safe) < 0 ? tag : undefined),
      (tags) => {
        if (tags.length === 0) return
        for (const tag of tags) state.or.deleteTombstone(tag)
        prunedOr += tags.length
        if (durable) writeBehind.submitUnsafe(tags.map((tag): StorageMutation => ({ _tag: "OrPruneTombstone", mapName: state.name, tag })))
        if (out !== undefined) for (const tag of tags) out.push([state.name, tag])
      }
    )

  // ---- consensus ----

  /**
   * Leader: commits when every current member has reported in this epoch. Returns the members still
   * missing (an open round is normal between reports, so it is not an error here).
   */
  const tryCommit = (view: Membership): Effect.Effect<ReadonlyArray<string>, GcPruneFailed> =>
    Effect.suspend((): Effect.Effect<ReadonlyArray<string>, GcPruneFailed> => {
      alignEpoch(view.epoch)
      const missing = view.members.filter((m) => !reports.has(m))
      if (missing.length > 0) return Effect.succeed(missing)
      let globalMin: Timestamp | undefined
      for (const m of view.members) globalMin = globalMin === undefined ? reports.get(m)! : minTimestamp(globalMin, reports.get(m)!)
      const snapshot = new Map(reports)
      reports.clear()
      // Clamped by the leader's wall clock so an HLC running ahead (accepted client drift) can never
      // produce a safe point that members would refuse as too new.
      const millis = Math.min(globalMin!.millis, hlc.wallMillis()) - gcAgeMs
      const safe: Timestamp = { millis, counter: 0, nodeId: globalMin!.nodeId }
      commitsIssued++
      if (listeners.size > 0) emit({ _tag: "Committed", epoch: view.epoch, safeTimestamp: safe, reports: snapshot })
      return cluster.broadcast({ _tag: "GcCommit", epoch: view.epoch, safeTimestamp: safe }).pipe(
        Effect.zipRight(prune(safe, view.epoch, self)),
        Effect.as(missing)
      )
    })

  /** One consensus tick: report to the leader (the leader records its own report and tries to commit). */
  const round: Effect.Effect<void, GcNoLeader | GcRoundIncomplete | GcPruneFailed> = Effect.gen(function* () {
    const view = yield* cluster.membership
    if (view.leader === undefined || !view.members.includes(self)) return yield* new GcNoLeader({ epoch: view.epoch })
    const minHlc = localMinHlc()
    if (view.leader === self) {
      alignEpoch(view.epoch)
      recordReport(self, minHlc)
      const missing = yield* tryCommit(view)
      // Reported once per tick while the round waits (e.g. for a member across a partition).
      if (missing.length > 0) return yield* new GcRoundIncomplete({ epoch: view.epoch, missing })
      return
    }
    yield* cluster.send(view.leader, { _tag: "GcReport", epoch: view.epoch, minHlc })
  })

  const onReport = (from: string, epoch: number, minHlc: Timestamp): Effect.Effect<void, GcNotLeader | GcStaleReport | GcPruneFailed> =>
    Effect.gen(function* () {
      const view = yield* cluster.membership
      if (view.leader !== self) return yield* new GcNotLeader({ leader: view.leader, epoch: view.epoch })
      if (epoch !== view.epoch || !view.members.includes(from)) {
        return yield* new GcStaleReport({ from, epoch, currentEpoch: view.epoch })
      }
      alignEpoch(view.epoch)
      recordReport(from, minHlc)
      yield* tryCommit(view)
    })

  /** protocol.md §4.12 step 4: only from the leader this node sees, for its epoch, and not too new. */
  const onCommit = (from: string, epoch: number, safe: Timestamp): Effect.Effect<void, GcCommitRejected | GcPruneFailed> =>
    Effect.gen(function* () {
      const view = yield* cluster.membership
      const reason = from !== view.leader
        ? "not-from-leader" as const
        : epoch !== view.epoch
        ? "stale-epoch" as const
        : safe.millis > hlc.wallMillis() - gcAgeMs
        ? "too-new" as const
        : undefined
      if (reason !== undefined) {
        commitsRejected++
        const error = new GcCommitRejected({ from, epoch, reason })
        if (listeners.size > 0) emit({ _tag: "Rejected", error })
        return yield* error
      }
      yield* prune(safe, epoch, from)
    })

  /** When members leave, the leader stops waiting for them; a new epoch drops the round. */
  const onMembership = (view: Membership): Effect.Effect<void, GcPruneFailed> =>
    Effect.suspend(() => {
      if (pendingEpoch !== view.epoch) {
        alignEpoch(view.epoch)
        return Effect.void
      }
      for (const member of Array.from(reports.keys())) {
        if (!view.members.includes(member)) reports.delete(member)
      }
      // A departure may complete a round that was waiting for the member that left.
      return view.leader === self && reports.size > 0 ? Effect.asVoid(tryCommit(view)) : Effect.void
    })

  // ---- TTL sweep ----

  /** Converts expired records to tombstones, `GC_CHUNK` per synchronous slice. */
  const sweep: Effect.Effect<void, GcSweepFailed> = Effect.gen(function* () {
    // In a cluster every node holds every map: only the owner of a key's partition converts it, so an
    // expiry produces one tombstone and one REMOVE event, not one per node.
    const owners = directory === undefined ? undefined : assignPartitions((yield* directory.current).members.map((m) => m.nodeId))
    const owns = (key: string) => owners === undefined || owners.length === 0 || owners[partitionId(key)] === self
    for (const state of Array.from(maps.all())) {
      const now = hlc.wallMillis()
      const lww = state.lww.expiredEntries(now)
      for (let start = 0; start < lww.length; start += GC_CHUNK) {
        yield* sweepSlice(() => {
          const end = Math.min(lww.length, start + GC_CHUNK)
          for (let i = start; i < end; i++) {
            const [key, stored] = lww[i]!
            if (!owns(key)) continue
            // A write may have replaced the record since the scan; the tombstone is for this version only.
            const current = state.lww.get(key)
            if (current === undefined || compareTimestamps(current.record.timestamp, stored.record.timestamp) !== 0) continue
            const tombstone: LWWRecord = {
              value: null,
              timestamp: { millis: stored.record.timestamp.millis + stored.record.ttlMs!, counter: 0, nodeId: serverNodeId }
            }
            if (maps.applyLww(state, key, tombstone, { origin: "ttl" }) !== undefined) ttlExpired++
          }
        })
        if (start + GC_CHUNK < lww.length) yield* yieldToEventLoop
      }
      const or = state.or.expiredRecords(now)
      for (let start = 0; start < or.length; start += GC_CHUNK) {
        yield* sweepSlice(() => {
          const end = Math.min(or.length, start + GC_CHUNK)
          for (let i = start; i < end; i++) {
            const stored = or[i]!
            if (!owns(stored.key) || state.or.isTombstoned(stored.record.tag)) continue
            if (maps.applyOrTombstone(state, stored.key, stored.record.tag, { origin: "ttl" }) !== undefined) ttlExpired++
          }
        })
        if (start + GC_CHUNK < or.length) yield* yieldToEventLoop
      }
    }
  })

  /** Runs one slice of applies and submits its persistence in the same synchronous run. */
  const sweepSlice = (f: () => void): Effect.Effect<void, GcSweepFailed> =>
    Effect.try({
      try: () => {
        try {
          f()
        } finally {
          // Submitted synchronously; the returned wait is not needed (durability is the write-behind's job).
          maps.flushPersistence()
        }
      },
      catch: (e) => new GcSweepFailed({ message: e instanceof Error ? e.message : String(e) })
    })

  // ---- fibers ----

  const logFailure = (label: string) => (effect: Effect.Effect<void, GcError>): Effect.Effect<void> =>
    effect.pipe(
      Effect.catchTags({
        // Expected while a round is open or the view is moving (messages in flight across a change of
        // leader): not worth a warning, and not a failed round.
        GcRoundIncomplete: (e) => Effect.logDebug(`${label}: waiting for ${e.missing.join(", ")} (epoch ${e.epoch})`),
        GcStaleReport: (e) => Effect.logDebug(`${label}: discarded report from ${e.from} (epoch ${e.epoch}, current ${e.currentEpoch})`),
        GcNotLeader: (e) => Effect.logDebug(`${label}: report for a leader this node is not (leader ${e.leader ?? "none"}, epoch ${e.epoch})`),
        GcCommitRejected: (e) => Effect.logInfo(`${label}: rejected commit from ${e.from} (epoch ${e.epoch}): ${e.reason}`)
      }),
      Effect.catchAllCause((cause) =>
        Effect.zipRight(Effect.sync(() => roundsFailed++), Effect.logWarning(`${label} failed`, cause))
      )
    )

  yield* round.pipe(
    logFailure("gc round"),
    Effect.schedule(Schedule.spaced(Math.max(1, config.gcIntervalMs))),
    Effect.annotateLogs({ fiber: "gc-consensus" }),
    Effect.forkScoped
  )

  yield* sweep.pipe(
    logFailure("ttl sweep"),
    Effect.schedule(Schedule.spaced(Math.max(1, config.ttlSweepIntervalMs))),
    Effect.annotateLogs({ fiber: "ttl-sweep" }),
    Effect.forkScoped
  )

  yield* cluster.inbound.pipe(
    Stream.runForEach(({ from, message }) => {
      switch (message._tag) {
        case "GcReport":
          return logFailure("gc report")(onReport(from, message.epoch, message.minHlc))
        case "GcCommit":
          return logFailure("gc commit")(onCommit(from, message.epoch, message.safeTimestamp))
        default:
          return Effect.void
      }
    }),
    Effect.annotateLogs({ fiber: "gc-inbound" }),
    Effect.forkScoped
  )

  yield* cluster.membershipChanges.pipe(
    Stream.runForEach((view) => logFailure("gc membership")(onMembership(view))),
    Effect.annotateLogs({ fiber: "gc-membership" }),
    Effect.forkScoped
  )

  const status: Effect.Effect<GcStatus> = Effect.sync(() => ({
    lastSafeTimestamp: lastSafe,
    commitsIssued,
    roundsCompleted,
    commitsRejected,
    roundsFailed,
    prunedLww,
    prunedOr,
    ttlExpired
  }))

  return {
    status,
    /** One consensus tick now (tests, admin); failures are returned, not logged. */
    runRoundNow: round,
    /** One TTL sweep now. */
    sweepNow: sweep,
    /** Prunes with `safe` locally, as if a valid commit had arrived (bench, admin). */
    pruneNow: (safe: Timestamp) => prune(safe, -1, self),
    /** The last committed safe timestamp, if any. */
    horizon: Effect.sync(() => Option.fromNullable(lastSafe)),
    /** Registers a synchronous event listener; returns its removal. */
    observe: (listener: (event: GcEvent) => void): (() => void) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    }
  } as const
})

/** The collector; requires Maps, Connections, Hlc, ServerConfig, Cluster, WriteBehind and Storage. */
export class Gc extends Effect.Service<Gc>()("tessera/Gc", { scoped: make }) {}
