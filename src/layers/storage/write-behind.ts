/**
 * The write-behind queue between the apply path and `Storage` (behavior.md §3.13, §3.10).
 *
 * - `submit` enqueues synchronously and never blocks; per-key order is the submit order.
 * - Coalescing: inside the pending part of the queue (not the batch being written), a later LwwPut of the
 *   same (map, key) takes the earlier one's slot, likewise OrPut per (map, key, tag) and Meta per key.
 *   Since stores are merge-aware, of two puts the newer HLC is kept (the same result as writing both).
 *   A delete of the row (LwwDelete, OrRemove, OR tombstone or prune of the tag) ends coalescing for it,
 *   so a put is never moved before a delete. Result: the store ends in exactly the state that writing
 *   every mutation in submit order would give (a property test checks this).
 * - One fiber writes batches of at most `maxBatchSize` mutations, one transaction each, one at a time.
 * - A failing write is retried with capped exponential backoff until it commits: data is never dropped.
 *   Meanwhile `status.healthy` is false, the queue keeps accepting, and callers waiting for PERSISTED are
 *   failed once their `persistTimeoutMs` has passed (checked at each failed attempt).
 * - The deferred returned by `submit` completes when the batch holding the last of its mutations commits;
 *   `submitThen` calls back instead, so a waiting write parks no fiber (the PERSISTED ack path).
 */
import { Clock, Context, Data, Deferred, Effect, Exit, FiberId, Layer, Runtime, Schedule } from "effect"
import type { Timestamp } from "../../crdt/types.js"
import { Storage, type StorageMutation } from "../Storage.js"
import { describeCause, StorageError } from "./errors.js"

/** A PERSISTED wait that failed; `message` is the storage failure (callers prefix "Persistence failed: "). */
export class PersistFailed extends Data.TaggedError("PersistFailed")<{ readonly message: string }> {}

export interface WriteBehindSettings {
  /** Wait this long after the first pending mutation before writing, so batches form. */
  readonly flushIntervalMs: number
  /** Mutations per transaction. */
  readonly maxBatchSize: number
  /** Above this many queued mutations the queue reports unhealthy (it still accepts: data is never dropped). */
  readonly maxQueueLength: number
  readonly retryBaseMs: number
  readonly retryMaxMs: number
  /** While storage fails, a waiting PERSISTED caller is failed once this long has passed since its submit. */
  readonly persistTimeoutMs: number
  /** Bound (real time) on the drain the layer's finalizer performs at shutdown. */
  readonly drainTimeoutMs: number
}

export class WriteBehindConfig extends Context.Tag("tessera/WriteBehindConfig")<WriteBehindConfig, WriteBehindSettings>() {
  static readonly defaults: WriteBehindSettings = {
    flushIntervalMs: 5,
    maxBatchSize: 1000, // SQLite commits synchronously: ~10 ms of event loop per 1000 rows
    maxQueueLength: 1_000_000,
    retryBaseMs: 50,
    retryMaxMs: 5000,
    persistTimeoutMs: 5000,
    drainTimeoutMs: 8000
  }
  static readonly layer = (overrides: Partial<WriteBehindSettings> = {}): Layer.Layer<WriteBehindConfig> =>
    Layer.succeed(WriteBehindConfig, { ...WriteBehindConfig.defaults, ...overrides })
  static readonly Default: Layer.Layer<WriteBehindConfig> = WriteBehindConfig.layer()
}

export interface WriteBehindStatus {
  readonly healthy: boolean
  /** Mutations not yet committed (pending + the batch being written). */
  readonly queueDepth: number
  /** Failed write attempts since start (a metrics counter). */
  readonly failures: number
  /** Failed attempts since the last commit. */
  readonly consecutiveFailures: number
  readonly committedBatches: number
  readonly lastError?: string
}

/** Told once: undefined when the mutations committed, the failure otherwise. */
export type PersistCallback = (failure: PersistFailed | undefined) => void

interface Waiter {
  /** Done when this many mutations (counted since start) have committed. */
  readonly seq: number
  readonly deadline: number
  readonly settle: PersistCallback
}

/** Coalescing identities; null when the mutation never coalesces. */
const coalesceKey = (m: StorageMutation): string | null => {
  switch (m._tag) {
    case "LwwPut":
      return `L\u0000${m.mapName}\u0000${m.key}`
    case "OrPut":
      return `O\u0000${m.mapName}\u0000${m.key}\u0000${m.record.tag}`
    case "Meta":
      return `M\u0000${m.key}`
    default:
      return null
  }
}

const newer = (a: Timestamp, b: Timestamp): boolean =>
  a.millis !== b.millis ? a.millis > b.millis : a.counter !== b.counter ? a.counter > b.counter : a.nodeId > b.nodeId

/** Whether `next` replaces `prev` (same coalesce key) in the pending queue. */
const supersedes = (next: StorageMutation, prev: StorageMutation): boolean => {
  if (next._tag === "LwwPut" && prev._tag === "LwwPut") return newer(next.record.timestamp, prev.record.timestamp)
  if (next._tag === "OrPut" && prev._tag === "OrPut") return newer(next.record.timestamp, prev.record.timestamp)
  return true // Meta: the last write wins
}

const make = Effect.gen(function*() {
  const storage = yield* Storage
  const config = yield* WriteBehindConfig
  const clock = yield* Effect.clock
  const runLog = Runtime.runFork(yield* Effect.runtime<never>())

  const done = Deferred.unsafeMake<void, PersistFailed>(FiberId.none)
  Deferred.unsafeDone(done, Exit.void)

  // Queue state: plain data, touched synchronously only (never across an await).
  let pending: Array<StorageMutation> = []
  /** Sequence number of `pending[0]` = mutations taken for writing so far. */
  let headSeq = 0
  let inflight = 0
  let committedSeq = 0
  /** coalesce key → sequence number of its slot in `pending`. */
  const slotOf = new Map<string, number>()
  /** "map\0tag" → coalesce keys of OrPuts with that tag, so a tombstone prune can end their coalescing. */
  const orPutsByTag = new Map<string, Array<string>>()
  let waiters: Array<Waiter> = []
  let waiterHead = 0
  let flushWaiters: Array<{ readonly seq: number; readonly deferred: Deferred.Deferred<void> }> = []

  let failures = 0
  let consecutiveFailures = 0
  let committedBatches = 0
  let lastError: string | undefined
  let failing = false

  const work = Effect.unsafeMakeLatch(false)
  const urgent = Effect.unsafeMakeLatch(false)

  const endSeq = (): number => headSeq + pending.length

  const endCoalescing = (key: string): void => {
    slotOf.delete(key)
  }

  const enqueueOne = (m: StorageMutation): void => {
    const key = coalesceKey(m)
    if (key !== null) {
      const seq = slotOf.get(key)
      if (seq !== undefined && seq >= headSeq) {
        // Stores are merge-aware: of two puts of one row only the newer can matter (ties: the first).
        if (supersedes(m, pending[seq - headSeq]!)) pending[seq - headSeq] = m
        return
      }
      slotOf.set(key, headSeq + pending.length)
      if (m._tag === "OrPut") {
        const tagKey = `${m.mapName}\u0000${m.record.tag}`
        const keys = orPutsByTag.get(tagKey)
        if (keys === undefined) orPutsByTag.set(tagKey, [key])
        else keys.push(key)
      }
    } else {
      switch (m._tag) {
        case "LwwDelete":
          endCoalescing(`L\u0000${m.mapName}\u0000${m.key}`)
          break
        case "OrRemove":
          endCoalescing(`O\u0000${m.mapName}\u0000${m.key}\u0000${m.tag}`)
          break
        case "OrTombstone":
        case "OrPruneTombstone": {
          // After a prune the tag may legitimately be re-added; an earlier put must not absorb it.
          const tagKey = `${m.mapName}\u0000${m.tag}`
          for (const k of orPutsByTag.get(tagKey) ?? []) endCoalescing(k)
          orPutsByTag.delete(tagKey)
          break
        }
        default:
          break
      }
    }
    pending.push(m)
  }

  const enqueue = (mutations: ReadonlyArray<StorageMutation>): number => {
    for (const m of mutations) enqueueOne(m)
    if (pending.length > 0) work.unsafeOpen()
    return endSeq()
  }

  /**
   * Enqueues and returns true when `settle` will be told about the commit (never synchronously); false when
   * there is nothing to wait for (no mutations, or storage that is not durable) and `settle` is not kept.
   */
  const submitThen = (mutations: ReadonlyArray<StorageMutation>, settle: PersistCallback): boolean => {
    if (mutations.length === 0) return false
    const seq = enqueue(mutations)
    if (!storage.durable) return false
    waiters.push({ seq, deadline: clock.unsafeCurrentTimeMillis() + config.persistTimeoutMs, settle })
    return true
  }

  const submitUnsafe = (mutations: ReadonlyArray<StorageMutation>): Deferred.Deferred<void, PersistFailed> => {
    const deferred = Deferred.unsafeMake<void, PersistFailed>(FiberId.none)
    const settle: PersistCallback = (failure) => Deferred.unsafeDone(deferred, failure === undefined ? Exit.void : Exit.fail(failure))
    return submitThen(mutations, settle) ? deferred : done
  }

  /** A waiter's callback runs inside the writer's bookkeeping: it must not be able to stop it. */
  const settleSafely = (waiter: Waiter, failure: PersistFailed | undefined): void => {
    try {
      waiter.settle(failure)
    } catch (error) {
      runLog(Effect.logError("write-behind: a commit callback threw", describeCause(error)))
    }
  }

  const compactWaiters = (): void => {
    if (waiterHead > 1024 && waiterHead * 2 > waiters.length) {
      waiters = waiters.slice(waiterHead)
      waiterHead = 0
    }
  }

  const commit = (count: number): void => {
    committedSeq += count
    inflight = 0
    committedBatches++
    consecutiveFailures = 0
    failing = false
    while (waiterHead < waiters.length && waiters[waiterHead]!.seq <= committedSeq) {
      settleSafely(waiters[waiterHead++]!, undefined)
    }
    compactWaiters()
    if (flushWaiters.length > 0) {
      const still: typeof flushWaiters = []
      for (const w of flushWaiters) {
        if (w.seq <= committedSeq) Deferred.unsafeDone(w.deferred, Exit.void)
        else still.push(w)
      }
      flushWaiters = still
      if (still.length === 0) urgent.unsafeClose()
    }
  }

  const onFailure = (error: StorageError): void => {
    failures++
    consecutiveFailures++
    failing = true
    lastError = error.message
    const now = clock.unsafeCurrentTimeMillis()
    let failed: PersistFailed | undefined
    while (waiterHead < waiters.length && waiters[waiterHead]!.deadline <= now) {
      settleSafely(waiters[waiterHead++]!, failed ??= new PersistFailed({ message: error.message }))
    }
    compactWaiters()
  }

  /** Drops the coalescing entries of taken mutations, so a queue that never empties does not leak them. */
  const forgetTaken = (batch: ReadonlyArray<StorageMutation>): void => {
    for (const m of batch) {
      const key = coalesceKey(m)
      if (key === null) continue
      const seq = slotOf.get(key)
      if (seq !== undefined && seq < headSeq) slotOf.delete(key)
      if (m._tag === "OrPut") {
        const tagKey = `${m.mapName}\u0000${m.record.tag}`
        const keys = orPutsByTag.get(tagKey)
        if (keys === undefined) continue
        const live = keys.filter((k) => (slotOf.get(k) ?? -1) >= headSeq)
        if (live.length === 0) orPutsByTag.delete(tagKey)
        else orPutsByTag.set(tagKey, live)
      }
    }
  }

  /** The next batch, taken out of the coalescing window. */
  const take = (): Array<StorageMutation> => {
    let batch: Array<StorageMutation>
    if (pending.length <= config.maxBatchSize) {
      batch = pending
      pending = []
    } else {
      batch = pending.slice(0, config.maxBatchSize)
      pending = pending.slice(config.maxBatchSize)
    }
    headSeq += batch.length
    inflight = batch.length
    if (pending.length === 0) {
      slotOf.clear()
      orPutsByTag.clear()
    } else {
      forgetTaken(batch)
    }
    return batch
  }

  const retrySchedule = Schedule.exponential(config.retryBaseMs).pipe(
    Schedule.union(Schedule.spaced(config.retryMaxMs)) // the smaller delay of the two: capped backoff
  )

  const writeBatch = (batch: ReadonlyArray<StorageMutation>) =>
    Effect.suspend(() => storage.write(batch)).pipe(
      // A bug in a layer must not kill the writer fiber silently: treat it as a failed attempt.
      Effect.catchAllDefect((defect) =>
        Effect.fail(new StorageError({ message: `Storage defect: ${describeCause(defect)}`, cause: defect }))
      ),
      Effect.tapError((error) =>
        Effect.zipRight(
          Effect.sync(() => onFailure(error)),
          Effect.logWarning(`storage write of ${batch.length} mutations failed; retrying`, error.message)
        )
      ),
      Effect.retry(retrySchedule),
      Effect.tap(() => Effect.sync(() => commit(batch.length)))
    )

  const writerLoop = Effect.gen(function*() {
    /** Mutations arrived while the last batch was committing: under load the commit itself batches them. */
    let queuedDuringWrite = false
    while (true) {
      yield* work.await
      // Coming out of idle, let a batch form (unless a backlog is waiting or someone asked for a flush);
      // right after a commit, write what queued up during it at once (group commit, no added latency).
      if (!queuedDuringWrite && pending.length < config.maxBatchSize) {
        yield* Effect.raceFirst(Effect.sleep(config.flushIntervalMs), urgent.await)
      }
      if (pending.length === 0) {
        work.unsafeClose()
        queuedDuringWrite = false
        continue
      }
      yield* writeBatch(take())
      queuedDuringWrite = pending.length > 0
      if (!queuedDuringWrite) work.unsafeClose()
    }
  })

  yield* writerLoop.pipe(
    Effect.catchAllCause((cause) => Effect.logError("write-behind writer stopped", cause)),
    Effect.annotateLogs({ fiber: "write-behind" }),
    Effect.forkScoped
  )

  const flush: Effect.Effect<void> = Effect.suspend(() => {
    const seq = endSeq()
    if (seq <= committedSeq) return Effect.void
    const deferred = Deferred.unsafeMake<void>(FiberId.none)
    flushWaiters.push({ seq, deferred })
    urgent.unsafeOpen()
    return Deferred.await(deferred)
  })

  /** Fails every caller still waiting (shutdown after the drain bound): nobody waits forever. */
  const failAllWaiters = (message: string): void => {
    const failed = new PersistFailed({ message })
    while (waiterHead < waiters.length) settleSafely(waiters[waiterHead++]!, failed)
    waiters = []
    waiterHead = 0
  }

  // Runs before the writer fiber is interrupted (finalizers run in reverse order of registration).
  yield* Effect.addFinalizer(() =>
    Effect.interruptible(flush).pipe( // finalizers run uninterruptibly: the timeout must be able to stop the wait
      Effect.timeout(config.drainTimeoutMs),
      Effect.withClock(Clock.make()), // a real-time bound, also under TestClock
      Effect.catchAll(() =>
        Effect.zipRight(
          Effect.logError(`write-behind: ${pending.length + inflight} mutations not persisted at shutdown`, lastError ?? ""),
          Effect.sync(() => failAllWaiters(`not persisted before shutdown${lastError !== undefined ? `: ${lastError}` : ""}`))
        )
      )
    )
  )

  const status: Effect.Effect<WriteBehindStatus> = Effect.sync(() => {
    const queueDepth = pending.length + inflight
    return {
      healthy: !failing && queueDepth <= config.maxQueueLength,
      queueDepth,
      failures,
      consecutiveFailures,
      committedBatches,
      ...(lastError !== undefined ? { lastError } : {})
    }
  })

  return {
    durable: storage.durable,
    /** Enqueue; the deferred completes once the mutations have committed (at once on non-durable storage). */
    submit: (mutations: ReadonlyArray<StorageMutation>): Effect.Effect<Deferred.Deferred<void, PersistFailed>> =>
      Effect.sync(() => submitUnsafe(mutations)),
    /** `submit` for synchronous callers (the apply path), so per-key order is the apply order. */
    submitUnsafe,
    /** `submitUnsafe` with a callback instead of a deferred: no fiber has to wait (the PERSISTED ack path). */
    submitThen,
    /** Enqueue without a completion handle (callers that never wait). */
    enqueueUnsafe: (mutations: ReadonlyArray<StorageMutation>): void => {
      enqueue(mutations)
    },
    status,
    /** Waits until everything submitted before the call has committed (writes without the batching delay). */
    flush
  } as const
})

export class WriteBehind extends Effect.Service<WriteBehind>()("tessera/WriteBehind", { scoped: make }) {}
