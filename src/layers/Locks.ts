import { Context, Deferred, Effect, Layer, Option, Schedule, Stream } from "effect"
import { ClusterLockAuthority } from "./cluster/locks.js"
import { type Connection, Connections } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { Security } from "./Security.js"
import { Storage } from "./Storage.js"
import { type PersistFailed, WriteBehind } from "./storage/write-behind.js"

export interface LockSettings {
  /** TTL used when a request has none (or 0), protocol.md §3.9. */
  readonly defaultTtlMs: number
  readonly minTtlMs: number
  readonly maxTtlMs: number
  /** A queued request not granted within this long is dropped without a reply (the client has given up). */
  readonly waitTimeoutMs: number
  /** Period of the sweep that reclaims expired leases and drops stale queue entries. */
  readonly sweepIntervalMs: number
  /** Fencing tokens reserved per persisted high-water mark (tokens skipped at most once per restart). */
  readonly fenceBlock: number
}

/** Lock tuning; optional — without this service the defaults apply. */
export class LocksConfig extends Context.Tag("tessera/LocksConfig")<LocksConfig, LockSettings>() {
  static readonly defaults: LockSettings = {
    defaultTtlMs: 10_000,
    minTtlMs: 1_000,
    maxTtlMs: 300_000,
    waitTimeoutMs: 30_000,
    sweepIntervalMs: 1_000,
    fenceBlock: 1_000
  }
  static readonly layer = (overrides: Partial<LockSettings> = {}): Layer.Layer<LocksConfig> =>
    Layer.succeed(LocksConfig, { ...LocksConfig.defaults, ...overrides })
}

/** Node-metadata key of the fencing high-water mark: every token ever issued is ≤ the stored value. */
export const LOCK_FENCE_META_KEY = "lock:fence"

/** TTL of a request: default when absent or 0, clamped to [min, max]. */
export const effectiveTtl = (ttl: number | undefined, settings: LockSettings): number =>
  ttl === undefined || ttl === 0 || !Number.isFinite(ttl)
    ? settings.defaultTtlMs
    : Math.min(settings.maxTtlMs, Math.max(settings.minTtlMs, ttl))

/** A lock handed to a connection: it must receive LOCK_GRANTED for `requestId`. */
export interface LockGrant {
  readonly connectionId: string
  readonly requestId: string
  readonly name: string
  readonly fencingToken: number
}

/** What an observer (tests, admin) sees of one lock. */
export interface LockSnapshot {
  readonly owner: { readonly connectionId: string; readonly fencingToken: number; readonly expiresAt: number } | undefined
  readonly queue: ReadonlyArray<{ readonly connectionId: string; readonly requestId: string; readonly ttlMs: number; readonly enqueuedAt: number }>
}

/**
 * The authority that decides who holds which lock. Single-node now (`makeLocalLockAuthority`); a later
 * cluster layer keeps the same shape with the table in PostgreSQL. Every method returns the grants its
 * decision produced — for the caller and for waiters — and they are safe to deliver (their tokens are
 * durable when storage is).
 */
export interface LockAuthority {
  readonly request: (connectionId: string, requestId: string, name: string, ttlMs: number) => Effect.Effect<ReadonlyArray<LockGrant>>
  readonly release: (
    connectionId: string,
    name: string,
    fencingToken: number
  ) => Effect.Effect<{ readonly success: boolean; readonly grants: ReadonlyArray<LockGrant> }>
  /** The connection is gone: release what it holds, drop what it waits for. */
  readonly releaseConnection: (connectionId: string) => Effect.Effect<ReadonlyArray<LockGrant>>
  /** Reclaim expired leases and drop stale queue entries. */
  readonly sweep: Effect.Effect<ReadonlyArray<LockGrant>>
  readonly inspect: (name: string) => LockSnapshot | undefined
}

interface Waiter {
  readonly connectionId: string
  readonly requestId: string
  readonly ttlMs: number
  readonly enqueuedAt: number
}

interface LockEntry {
  owner: { readonly connectionId: string; readonly fencingToken: number; expiresAt: number } | undefined
  queue: Array<Waiter>
}

/**
 * The lock table as plain synchronous code (one decision = one call, so it is atomic on the JS thread).
 * `nextToken` hands out fencing tokens; the table never reuses one.
 */
export class LockTable {
  private readonly locks = new Map<string, LockEntry>()
  /** connection id → lock name → how many roles it has there (owner + queue entries), for disconnect. */
  private readonly involvement = new Map<string, Map<string, number>>()

  constructor(private readonly waitTimeoutMs: number, private readonly nextToken: () => number) {}

  get size(): number {
    return this.locks.size
  }

  request(connectionId: string, requestId: string, name: string, ttlMs: number, now: number): Array<LockGrant> {
    const grants: Array<LockGrant> = []
    let entry = this.locks.get(name)
    if (entry === undefined) this.locks.set(name, entry = { owner: undefined, queue: [] })
    // An expired lease with waiters goes to the head of the queue, never to this newcomer.
    this.settle(entry, name, now, grants)
    const owner = entry.owner
    if (owner === undefined) {
      grants.push(this.grant(entry, name, connectionId, requestId, ttlMs, now))
    } else if (owner.connectionId === connectionId) {
      owner.expiresAt = Math.max(owner.expiresAt, now + ttlMs)
      grants.push({ connectionId, requestId, name, fencingToken: owner.fencingToken })
    } else {
      entry.queue.push({ connectionId, requestId, ttlMs, enqueuedAt: now })
      this.involve(connectionId, name, 1)
    }
    return grants
  }

  release(connectionId: string, name: string, fencingToken: number, now: number): { success: boolean; grants: Array<LockGrant> } {
    const grants: Array<LockGrant> = []
    const entry = this.locks.get(name)
    if (entry === undefined) return { success: false, grants }
    this.settle(entry, name, now, grants)
    const owner = entry.owner
    const success = owner !== undefined && owner.connectionId === connectionId && owner.fencingToken === fencingToken
    if (success) {
      this.dropOwner(entry, name)
      this.settle(entry, name, now, grants)
    }
    this.forgetIfIdle(entry, name)
    return { success, grants }
  }

  releaseConnection(connectionId: string, now: number): Array<LockGrant> {
    const grants: Array<LockGrant> = []
    const names = this.involvement.get(connectionId)
    if (names === undefined) return grants
    for (const name of [...names.keys()]) {
      const entry = this.locks.get(name)
      if (entry === undefined) continue
      const before = entry.queue.length
      entry.queue = entry.queue.filter((w) => w.connectionId !== connectionId)
      if (entry.queue.length !== before) this.involve(connectionId, name, entry.queue.length - before)
      if (entry.owner?.connectionId === connectionId) this.dropOwner(entry, name)
      this.settle(entry, name, now, grants)
      this.forgetIfIdle(entry, name)
    }
    this.involvement.delete(connectionId)
    return grants
  }

  sweep(now: number): Array<LockGrant> {
    const grants: Array<LockGrant> = []
    for (const [name, entry] of this.locks) {
      this.settle(entry, name, now, grants)
      this.forgetIfIdle(entry, name)
    }
    return grants
  }

  inspect(name: string): LockSnapshot | undefined {
    const entry = this.locks.get(name)
    if (entry === undefined) return undefined
    return {
      owner: entry.owner === undefined ? undefined : { ...entry.owner },
      queue: entry.queue.map((w) => ({ ...w }))
    }
  }

  /** Drops stale waiters and an expired owner, then grants the head of the queue if the lock is free. */
  private settle(entry: LockEntry, name: string, now: number, grants: Array<LockGrant>): void {
    // The wall clock may step back, so stale entries are not necessarily a prefix: check them all.
    let stale = 0
    for (const w of entry.queue) if (now - w.enqueuedAt >= this.waitTimeoutMs) stale++
    if (stale > 0) {
      entry.queue = entry.queue.filter((w) => {
        if (now - w.enqueuedAt < this.waitTimeoutMs) return true
        this.involve(w.connectionId, name, -1)
        return false
      })
    }
    if (entry.owner !== undefined && now >= entry.owner.expiresAt) this.dropOwner(entry, name)
    if (entry.owner === undefined && entry.queue.length > 0) {
      const next = entry.queue.shift()!
      this.involve(next.connectionId, name, -1)
      grants.push(this.grant(entry, name, next.connectionId, next.requestId, next.ttlMs, now))
    }
  }

  private grant(entry: LockEntry, name: string, connectionId: string, requestId: string, ttlMs: number, now: number): LockGrant {
    const fencingToken = this.nextToken()
    entry.owner = { connectionId, fencingToken, expiresAt: now + ttlMs }
    this.involve(connectionId, name, 1)
    return { connectionId, requestId, name, fencingToken }
  }

  private dropOwner(entry: LockEntry, name: string): void {
    if (entry.owner === undefined) return
    this.involve(entry.owner.connectionId, name, -1)
    entry.owner = undefined
  }

  /** Free and nobody waiting: forget the entry (tokens stay monotonic: they come from one counter). */
  private forgetIfIdle(entry: LockEntry, name: string): void {
    if (entry.owner === undefined && entry.queue.length === 0) this.locks.delete(name)
  }

  private involve(connectionId: string, name: string, delta: number): void {
    let names = this.involvement.get(connectionId)
    if (names === undefined) {
      if (delta <= 0) return
      this.involvement.set(connectionId, names = new Map())
    }
    const n = (names.get(name) ?? 0) + delta
    if (n > 0) names.set(name, n)
    else names.delete(name)
    if (names.size === 0) this.involvement.delete(connectionId)
  }
}

/**
 * Single-node lock authority over `LockTable`. Fencing tokens come from one node-wide counter, so they
 * grow for every lock name. With durable storage the counter survives restarts: a high-water mark
 * `fenceBlock` tokens ahead is persisted before any token below it is delivered, and a restart continues
 * above the stored mark.
 */
export const makeLocalLockAuthority = Effect.gen(function* () {
  const settings = Option.getOrElse(yield* Effect.serviceOption(LocksConfig), () => LocksConfig.defaults)
  const storage = yield* Storage
  const writeBehind = yield* WriteBehind
  const { wallMillis } = yield* Hlc
  const durable = storage.durable

  let issued = 0
  /** Tokens ≤ `committedMark` are covered by a committed high-water mark. */
  let committedMark = Number.POSITIVE_INFINITY
  let pendingMark: { readonly mark: number; readonly committed: Deferred.Deferred<void, PersistFailed> } | undefined

  if (durable) {
    const stored = yield* storage.getMeta(LOCK_FENCE_META_KEY)
    const parsed = Option.isSome(stored) ? Number(stored.value) : 0
    issued = Number.isSafeInteger(parsed) && parsed > 0 ? parsed : 0
    committedMark = issued + settings.fenceBlock
    yield* storage.write([{ _tag: "Meta", key: LOCK_FENCE_META_KEY, value: String(committedMark) }])
  }

  const nextToken = (): number => {
    issued += 1
    const latestMark = pendingMark?.mark ?? committedMark
    // Move the mark ahead while half a block is left, so grants normally never wait for storage.
    if (durable && issued > latestMark - settings.fenceBlock / 2) {
      const mark = issued + settings.fenceBlock
      pendingMark = { mark, committed: writeBehind.submitUnsafe([{ _tag: "Meta", key: LOCK_FENCE_META_KEY, value: String(mark) }]) }
    }
    return issued
  }

  /** Waits until every token in `grants` is covered by a committed high-water mark. */
  const durableGrants = <A extends { readonly grants: ReadonlyArray<LockGrant> }>(result: A): Effect.Effect<A> => {
    let highest = 0
    for (const g of result.grants) if (g.fencingToken > highest) highest = g.fencingToken
    if (highest <= committedMark || pendingMark === undefined) return Effect.succeed(result)
    const { mark, committed } = pendingMark
    return Deferred.await(committed).pipe(
      // A PERSISTED-style timeout while storage is failing: the write is still retried until it commits.
      Effect.catchAll(() => writeBehind.flush),
      Effect.map(() => {
        if (mark > committedMark) committedMark = mark
        return result
      })
    )
  }

  const table = new LockTable(settings.waitTimeoutMs, nextToken)

  const authority: LockAuthority = {
    request: (connectionId, requestId, name, ttlMs) =>
      Effect.suspend(() => durableGrants({ grants: table.request(connectionId, requestId, name, ttlMs, wallMillis()) })).pipe(
        Effect.map((r) => r.grants)
      ),
    release: (connectionId, name, fencingToken) =>
      Effect.suspend(() => durableGrants(table.release(connectionId, name, fencingToken, wallMillis()))),
    releaseConnection: (connectionId) =>
      Effect.suspend(() => durableGrants({ grants: table.releaseConnection(connectionId, wallMillis()) })).pipe(Effect.map((r) => r.grants)),
    sweep: Effect.suspend(() => durableGrants({ grants: table.sweep(wallMillis()) })).pipe(Effect.map((r) => r.grants)),
    inspect: (name) => table.inspect(name)
  }
  return { authority, settings } as const
})

export interface LockRequestPayload {
  readonly requestId: string
  readonly name: string
  readonly ttl?: number | undefined
}
export interface LockReleasePayload {
  readonly requestId?: string | undefined
  readonly name: string
  readonly fencingToken: number
}

/**
 * Distributed locks with fencing tokens (protocol.md §3.9, behavior.md §3.17): FIFO queue per lock,
 * lease expiry by a periodic sweep (Effect clock, so TestClock drives it), a wait limit for queued
 * requests, and release of everything a connection holds or waits for when it disconnects.
 */
export class Locks extends Effect.Service<Locks>()("tessera/Locks", {
  scoped: Effect.gen(function* () {
    const connections = yield* Connections
    const security = yield* Security
    // In a PostgreSQL cluster the lock table lives in the database (cluster/locks.ts).
    const clusterLocks = yield* Effect.serviceOption(ClusterLockAuthority)
    const { authority, settings } = Option.isSome(clusterLocks)
      ? yield* Effect.map(Effect.serviceOption(LocksConfig), (config) => {
        const settings = Option.getOrElse(config, () => LocksConfig.defaults)
        return { authority: clusterLocks.value.make(settings), settings }
      })
      : yield* makeLocalLockAuthority

    /**
     * Sends LOCK_GRANTED for each grant. A grant to a connection that is already gone (it closed while the
     * decision was made) is released at once, which may grant the next waiter.
     */
    const deliver = (grants: ReadonlyArray<LockGrant>): Effect.Effect<void> =>
      Effect.gen(function* () {
        let pending = grants
        while (pending.length > 0) {
          const orphans: Array<string> = []
          for (const g of pending) {
            const connection = connections.get(g.connectionId)
            if (connection === undefined) orphans.push(g.connectionId)
            else connection.send({ type: "LOCK_GRANTED", payload: { requestId: g.requestId, name: g.name, fencingToken: g.fencingToken } })
          }
          const next: Array<LockGrant> = []
          for (const id of orphans) next.push(...(yield* authority.releaseConnection(id)))
          pending = next
        }
      })

    const request = (connection: Connection, payload: LockRequestPayload): Effect.Effect<void> =>
      Effect.suspend(() => {
        const { requestId, name } = payload
        if (!security.checkPermission(connection.principal!, name, "PUT")) {
          connection.send({ type: "ERROR", payload: { code: 403, message: `Access Denied for lock ${name}` } })
          return Effect.void
        }
        // Disconnect cleanup already ran for this connection: it must not take or wait for a lock.
        if (connections.get(connection.id) !== connection) return Effect.void
        return authority.request(connection.id, requestId, name, effectiveTtl(payload.ttl, settings)).pipe(Effect.flatMap(deliver))
      })

    const release = (connection: Connection, payload: LockReleasePayload): Effect.Effect<void> =>
      authority.release(connection.id, payload.name, payload.fencingToken).pipe(
        Effect.flatMap(({ success, grants }) => {
          const reply: Record<string, unknown> = { name: payload.name, success }
          if (payload.requestId !== undefined) reply.requestId = payload.requestId
          connection.send({ type: "LOCK_RELEASED", payload: reply })
          return deliver(grants)
        })
      )

    connections.onDisconnect(30, (connection) => authority.releaseConnection(connection.id).pipe(Effect.flatMap(deliver)))

    // Grants decided on other nodes (a waiter here promoted by a release there).
    if (Option.isSome(clusterLocks)) {
      yield* clusterLocks.value.remoteGrants.pipe(
        Stream.runForEach((grant) => deliver([grant])),
        Effect.catchAllCause((cause) => Effect.logWarning("remote lock grants stream failed", cause)),
        Effect.annotateLogs({ fiber: "lock-remote-grants" }),
        Effect.forkScoped
      )
    }

    yield* authority.sweep.pipe(
      Effect.flatMap(deliver),
      Effect.catchAllCause((cause) => Effect.logWarning("lock sweep failed", cause)),
      Effect.schedule(Schedule.spaced(settings.sweepIntervalMs)),
      Effect.annotateLogs({ fiber: "lock-sweep" }),
      Effect.forkScoped
    )

    return {
      request,
      release,
      /** A snapshot of one lock (tests, admin); `undefined` when it is free with nobody waiting. */
      inspect: authority.inspect
    } as const
  })
}) {}
