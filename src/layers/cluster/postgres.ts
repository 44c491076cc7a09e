/**
 * `Cluster` on PostgreSQL (behavior.md §3.26): several Tessera nodes share one database, which is the
 * distributed engine — no node-to-node sockets.
 *
 * - Membership: each node upserts its row in `tessera_cluster_nodes` every `clusterHeartbeatMs` (database
 *   clock); members are the rows with a heartbeat fresher than `clusterHeartbeatTimeoutMs`.
 * - Leader: the holder of a session advisory lock on a dedicated connection; every takeover increments
 *   the epoch in `tessera_cluster_leader`. Leader actions (GC commits, change-row trimming) are guarded by
 *   the epoch in the database, so a paused old leader that resumes cannot act. A crashed leader loses the
 *   lock with its connection; a hung one is fenced by the others (its leader session is terminated) once
 *   its heartbeat is stale.
 * - Fan-out: the storage layer writes change rows in the merge's transaction (change-rows.ts); this layer
 *   LISTENs for wake-ups, reads rows per partition in sequence order from its cursors, skips its own rows,
 *   detects gaps (re-reads; past a grace period, or when rows were trimmed, re-syncs the loaded maps from
 *   the stored state) and applies map changes through `Maps` with origin "remote" (so queries, search,
 *   SERVER_EVENT and the journal see each once). Node-to-node messages (topics, counters, GC) are rows of
 *   the control partition, written in small batches.
 * - Start: the node registers, sets its cursors to the current end of the feed and joins before the layer
 *   is built, so by the time it listens for clients it serves the current state (maps load from the
 *   database on first touch; counters from merged rows).
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import { Context, Duration, Effect, Layer, PubSub, Redacted, Schedule, Schema, Stream, SubscriptionRef } from "effect"
import pg from "pg"
import { Cluster, type ClusterService, type Inbound, type Membership } from "../Cluster.js"
import { ClusterMessage } from "./messages.js"
import { Hlc } from "../Hlc.js"
import { type MapState, Maps } from "../Maps.js"
import { ServerInfo } from "../Partitions.js"
import { Storage } from "../Storage.js"
import { describeCause, StorageError } from "../storage/errors.js"
import { redactUrl } from "../storage/postgres.js"
import { T } from "../storage/schema.js"
import {
  appendChangeRows,
  CHANGES_CHANNEL,
  type ChangePayload,
  type ChangeRowInput,
  CONTROL_PARTITION,
  decodePayload,
  FEED_PARTITIONS
} from "./change-rows.js"
import { ClusterDirectory, type Directory, type MemberEndpoint } from "./partition-map.js"
import { ClusterLockAuthority, makePostgresLockAuthority } from "./locks.js"
import type { LockGrant } from "../Locks.js"

/** Session advisory lock key of the leader (any constant shared by all nodes). */
export const LEADER_LOCK_ID = 0x7e55e7b
/** Change rows are kept at least this long after every member has read them (default). */
const CHANGE_RETENTION_MS = 60_000
/** A gap in a partition's sequence is re-read for this long before the stored state is re-synced. */
const GAP_GRACE_MS = 2_000
/** Rows read per partition per query. */
const READ_LIMIT = 2_000
/** Full scan of every partition at least this often (a lost wake-up costs at most this much latency). */
const SAFETY_POLL_MS = 1_000

const DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"

export interface PostgresClusterOptions {
  readonly url: string
  readonly nodeId: string
  readonly heartbeatMs: number
  readonly heartbeatTimeoutMs: number
  /** The client-facing WebSocket URL (read at every heartbeat: the port is known once listening). */
  readonly publicUrl: () => string
  /** How long change rows read by every member are kept before the leader trims them [60 s]. */
  readonly changeRetentionMs?: number
  /** The leader trims every this many heartbeats [10]. */
  readonly trimEveryBeats?: number
}

export interface PostgresClusterStatus {
  readonly isLeader: boolean
  readonly epoch: number
  readonly appliedRemoteChanges: number
  readonly resyncs: number
  readonly cursors: ReadonlyArray<number>
}

/** Test and metrics view of the PostgreSQL cluster layer. */
export class PostgresClusterInfo extends Context.Tag("tessera/PostgresClusterInfo")<
  PostgresClusterInfo,
  { readonly status: Effect.Effect<PostgresClusterStatus> }
>() {}

const failed = (what: string) => (e: unknown) => new StorageError({ message: `${what}: ${describeCause(e)}`, cause: e })

const encodeMessage = Schema.encodeSync(ClusterMessage)
const decodeMessage = Schema.decodeUnknownEither(ClusterMessage)

const isTimestamped = (r: unknown): boolean =>
  typeof r === "object" && r !== null && typeof (r as { timestamp?: { millis?: unknown } }).timestamp?.millis === "number"

/** Rows come from other processes: check the shape before it reaches the apply path. */
const isMapChange = (p: ChangePayload): p is Extract<ChangePayload, { readonly m: string }> => {
  if (!("m" in p) || typeof p.m !== "string" || typeof p.k !== "string") return false
  if ("L" in p) return isTimestamped(p.L)
  if ("O" in p) return isTimestamped(p.O) && typeof p.O.tag === "string"
  return "X" in p && typeof p.X === "string"
}

/** A dedicated session (LISTEN, leader lock): errors mark it broken, never crash the process. */
class Session {
  client: pg.Client | undefined
  broken = false
  constructor(private readonly url: string, private readonly applicationName: string) {}

  async open(onNotification?: (payload: string) => void): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.url, application_name: this.applicationName })
    client.on("error", () => {
      this.broken = true
    })
    client.on("end", () => {
      this.broken = true
    })
    if (onNotification !== undefined) {
      client.on("notification", (msg) => {
        if (msg.channel === CHANGES_CHANNEL && msg.payload !== undefined) onNotification(msg.payload)
      })
    }
    await client.connect()
    this.client = client
    this.broken = false
    return client
  }

  close(): Promise<void> {
    const c = this.client
    this.client = undefined
    return c === undefined ? Promise.resolve() : c.end().catch(() => undefined)
  }
}

export const makePostgresCluster = (opts: PostgresClusterOptions) =>
  Effect.gen(function*() {
    const maps = yield* Maps
    const storage = yield* Storage
    const hlc = (yield* Hlc).clock
    const self = opts.nodeId
    const where = `PostgreSQL at ${redactUrl(opts.url)}`

    const sql: SqlClient.SqlClient = yield* PgClient.make({
      url: Redacted.make(opts.url),
      connectTimeout: Duration.seconds(10),
      applicationName: `tessera-cluster:${self}`,
      maxConnections: 4
    }).pipe(Effect.provide(Reactivity.layer), Effect.mapError(failed(`Cannot connect to ${where}`)))
    const unsafe = (text: string, args: ReadonlyArray<unknown>) => sql.unsafe(text, args as Array<unknown>)

    // ---- state (touched synchronously only) ----
    const cursors = new Array<number>(FEED_PARTITIONS).fill(0)
    const dirty = new Set<number>()
    const gapSince = new Map<number, number>()
    let fullScan = true
    let isLeader = false
    let leaderEpoch = 0
    let appliedRemoteChanges = 0
    let resyncs = 0
    let outbox: Array<ChangeRowInput> = []

    const wake = Effect.unsafeMakeLatch(false)
    const outboxReady = Effect.unsafeMakeLatch(false)
    const hub = yield* PubSub.unbounded<Inbound>()
    const grantHub = yield* PubSub.unbounded<LockGrant>()
    const membership = yield* SubscriptionRef.make<Membership>({ members: [self], leader: undefined, epoch: 0 })
    const directory = yield* SubscriptionRef.make<Directory>({ version: 0, members: [] })

    // ---- change feed: LISTEN session and reader ----
    const listener = new Session(opts.url, `tessera-listen:${self}`)
    const onNotification = (payload: string): void => {
      for (const part of payload.split(",")) {
        const p = Number(part)
        if (Number.isInteger(p) && p >= 0 && p < FEED_PARTITIONS) dirty.add(p)
      }
      wake.unsafeOpen()
    }
    const ensureListener = Effect.suspend(() => {
      if (listener.client !== undefined && !listener.broken) return Effect.void
      return Effect.tryPromise({
        try: async () => {
          await listener.close()
          const client = await listener.open(onNotification)
          await client.query(`LISTEN ${CHANGES_CHANNEL}`)
        },
        catch: failed(`Cannot LISTEN on ${where}`)
      }).pipe(Effect.tap(() =>
        Effect.sync(() => {
          // Wake-ups may have been missed while disconnected: read every partition.
          fullScan = true
          wake.unsafeOpen()
        })
      ))
    })

    const readRows = (parts: ReadonlyArray<number>) =>
      unsafe(
        `SELECT c.partition_id, c.seq, c.node_id, c.target, c.payload FROM unnest($1::int[], $2::bigint[]) AS cur(p, s) ` +
          `CROSS JOIN LATERAL (SELECT partition_id, seq, node_id, target, payload FROM ${T.changes} ` +
          `WHERE partition_id = cur.p AND seq > cur.s ORDER BY seq LIMIT ${READ_LIMIT}) c ORDER BY c.partition_id, c.seq`,
        [parts, parts.map((p) => String(cursors[p]))]
      ).values

    /** Map changes are applied through the normal apply path; a map not loaded yet is loaded first. */
    const applyMapChange = (payload: Extract<ChangePayload, { readonly m: string }>, state: MapState): void => {
      if ("L" in payload) {
        if (state.type === "OR") return
        hlc.update(payload.L.timestamp)
        if (maps.applyLww(state, payload.k, payload.L, { origin: "remote" }) !== undefined) appliedRemoteChanges++
      } else if ("O" in payload) {
        if (state.type === "LWW") return
        hlc.update(payload.O.timestamp)
        if (maps.applyOrAdd(state, payload.k, payload.O, { origin: "remote" }) !== undefined) appliedRemoteChanges++
      } else {
        if (state.type === "LWW") return
        if (maps.applyOrTombstone(state, payload.k, payload.X, { origin: "remote" }) !== undefined) appliedRemoteChanges++
      }
    }

    /** Re-applies the stored state of every loaded map (after change rows were lost to trimming). */
    const resyncLoadedMaps = Effect.gen(function*() {
      for (const state of [...maps.all()]) {
        const loaded = yield* storage.loadMap(state.name).pipe(Effect.either)
        if (loaded._tag === "Left") {
          yield* Effect.logWarning(`cluster: cannot re-sync map ${state.name}`, loaded.left.message)
          continue
        }
        const m = loaded.right
        for (const t of m.orTombstones) maps.applyOrTombstone(state, "", t.tag, { origin: "remote" }, false)
        for (const r of m.orRecords) maps.applyOrAdd(state, r.key, r.record, { origin: "remote" })
        for (const r of m.lww) maps.applyLww(state, r.key, r.record, { origin: "remote" })
      }
      resyncs++
    })

    /** One read pass over the partitions that have news; returns true when more rows may be waiting. */
    const readPass = Effect.gen(function*() {
      const parts = fullScan ? Array.from({ length: FEED_PARTITIONS }, (_, i) => i) : [...dirty].sort((a, b) => a - b)
      fullScan = false
      dirty.clear()
      if (parts.length === 0) return false
      const rows = yield* readRows(parts)
      let more = false
      const perPartition = new Map<number, number>()
      const blocked = new Set<number>()
      let needResync = false
      const messages: Array<Inbound> = []
      const grants: Array<LockGrant> = []
      const now = Date.now()
      for (const r of rows) {
        const p = Number(r[0])
        const seq = Number(r[1])
        perPartition.set(p, (perPartition.get(p) ?? 0) + 1)
        if (blocked.has(p) || seq <= cursors[p]!) continue
        if (seq !== cursors[p]! + 1) {
          const since = gapSince.get(p)
          if (since === undefined) gapSince.set(p, now)
          if (since === undefined || now - since < GAP_GRACE_MS) {
            // Re-read the partition shortly: the missing rows may still be committing.
            blocked.add(p)
            dirty.add(p)
            more = true
            continue
          }
          // Rows are gone (trimmed while this node was away): the stored state fills the hole.
          needResync = true
        }
        gapSince.delete(p)
        cursors[p] = seq
        const from = String(r[2])
        if (from === self) continue
        const target = r[3] === null ? null : String(r[3])
        let payload: ChangePayload
        try {
          payload = decodePayload(r[4] as Uint8Array)
        } catch (e) {
          yield* Effect.logWarning(`cluster: undecodable change row ${p}/${seq}`, describeCause(e))
          continue
        }
        if ("c" in payload) {
          if (target !== null && target !== self) continue
          const decoded = decodeMessage(payload.c)
          if (decoded._tag === "Right") messages.push({ from, message: decoded.right })
          continue
        }
        if ("g" in payload) {
          if (target === self) grants.push(payload.g)
          continue
        }
        if (!isMapChange(payload)) {
          yield* Effect.logWarning(`cluster: malformed change row ${p}/${seq} from ${from}`)
          continue
        }
        // Maps nobody here has touched are skipped: their first load reads the committed state.
        const state = yield* maps.peekOrLoading(payload.m)
        // A map that cannot be loaded now will be loaded (with this change) from the database later.
        if (state !== undefined) applyMapChange(payload, state)
      }
      for (const [p, n] of perPartition) {
        if (n >= READ_LIMIT) {
          dirty.add(p)
          more = true
        }
      }
      if (needResync) yield* resyncLoadedMaps
      if (messages.length > 0) yield* PubSub.publishAll(hub, messages)
      if (grants.length > 0) yield* PubSub.publishAll(grantHub, grants)
      return more
    })

    const readerLoop = Effect.gen(function*() {
      while (true) {
        yield* Effect.raceFirst(wake.await, Effect.sleep(SAFETY_POLL_MS).pipe(Effect.tap(() => Effect.sync(() => {
          fullScan = true
        }))))
        wake.unsafeClose()
        const more = yield* readPass.pipe(
          Effect.catchAll((e) => Effect.zipRight(Effect.logWarning("cluster: reading change rows failed", describeCause(e)), Effect.succeed(true)))
        )
        if (more) {
          // Gaps are re-read after a short pause; a full page is continued at once.
          if (gapSince.size > 0) yield* Effect.sleep(20)
          wake.unsafeOpen()
        }
      }
    })

    // ---- node-to-node messages: batched rows of the control partition ----
    const flushOutbox = Effect.gen(function*() {
      const batch = outbox
      outbox = []
      if (batch.length === 0) return
      yield* sql.withTransaction(appendChangeRows(unsafe, self, batch, Date.now())).pipe(
        Effect.retry(Schedule.exponential(20).pipe(Schedule.compose(Schedule.recurs(5)))),
        Effect.catchAll((e) => Effect.logWarning(`cluster: ${batch.length} messages could not be published`, describeCause(e)))
      )
    })
    const outboxLoop = Effect.gen(function*() {
      while (true) {
        yield* outboxReady.await
        outboxReady.unsafeClose()
        yield* flushOutbox
      }
    })
    const enqueue = (target: string | null, message: ClusterMessage): void => {
      outbox.push({ partition: CONTROL_PARTITION, target, payload: { c: encodeMessage(message) } })
      outboxReady.unsafeOpen()
    }

    /** A GC commit is a leader action: written only while this node's epoch is the newest. */
    const publishGcCommit = (message: Extract<ClusterMessage, { _tag: "GcCommit" }>) =>
      sql.withTransaction(Effect.gen(function*() {
        const ok = yield* unsafe(
          `SELECT 1 FROM ${T.clusterLeader} WHERE id = 1 AND epoch = $1 AND node_id = $2 FOR UPDATE`,
          [message.epoch, self]
        ).values
        if (ok.length === 0) return false
        yield* appendChangeRows(unsafe, self, [{ partition: CONTROL_PARTITION, target: null, payload: { c: encodeMessage(message) } }], Date.now())
        return true
      })).pipe(
        Effect.flatMap((ok) => ok ? Effect.void : Effect.logWarning(`cluster: GC commit of epoch ${message.epoch} refused: a newer leader exists`)),
        Effect.catchAll((e) => Effect.logWarning("cluster: GC commit not published", describeCause(e)))
      )

    // ---- membership and leadership ----
    const leaderSession = new Session(opts.url, `tessera-leader:${self}`)
    const startedAt = Date.now()

    const dropLeadership = Effect.promise(() => leaderSession.close()).pipe(Effect.tap(() =>
      Effect.sync(() => {
        isLeader = false
      })
    ))

    /** Tries to take the leader lock; the holder bumps the epoch. A stale holder is fenced. */
    const leadership = (leaderRow: { readonly nodeId: string | undefined; readonly epoch: number }, members: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        if (isLeader) {
          if (leaderSession.broken || leaderSession.client === undefined) return yield* dropLeadership
          // Still holding the session: the row must still name this node and epoch.
          const rows = yield* Effect.tryPromise(() =>
            leaderSession.client!.query(`SELECT epoch, node_id FROM ${T.clusterLeader} WHERE id = 1`)
          )
          const row = rows.rows[0] as { epoch: string; node_id: string } | undefined
          if (row === undefined || Number(row.epoch) !== leaderEpoch || row.node_id !== self) yield* dropLeadership
          return
        }
        if (leaderSession.client === undefined || leaderSession.broken) {
          yield* Effect.tryPromise(async () => {
            await leaderSession.close()
            await leaderSession.open()
          })
        }
        const client = leaderSession.client!
        const got = yield* Effect.tryPromise(() => client.query("SELECT pg_try_advisory_lock($1) AS got", [LEADER_LOCK_ID]))
        if ((got.rows[0] as { got: boolean }).got) {
          const r = yield* Effect.tryPromise(() =>
            client.query(
              `UPDATE ${T.clusterLeader} SET node_id = $1, epoch = epoch + 1, since = ${DB_NOW} WHERE id = 1 RETURNING epoch`,
              [self]
            )
          )
          leaderEpoch = Number((r.rows[0] as { epoch: string }).epoch)
          isLeader = true
          yield* Effect.logInfo(`cluster: ${self} is the leader (epoch ${leaderEpoch})`)
          return
        }
        // Someone holds the lock. A holder that stopped heartbeating is hung: end its leader session.
        if (leaderRow.nodeId !== undefined && leaderRow.nodeId !== self && !members.includes(leaderRow.nodeId)) {
          yield* unsafe(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
            [`tessera-leader:${leaderRow.nodeId}`]
          )
        }
      }).pipe(Effect.catchAll((e) =>
        Effect.zipRight(Effect.logWarning("cluster: leader election step failed", describeCause(e)), dropLeadership)
      ))

    const trimChanges = Effect.suspend(() =>
      unsafe(
        `DELETE FROM ${T.changes} c USING (` +
          `SELECT g - 1 AS partition_id, min(n.cursors[g]) AS upto FROM ${T.clusterNodes} n CROSS JOIN generate_series(1, ${FEED_PARTITIONS}) g ` +
          `WHERE n.heartbeat_at > ${DB_NOW} - $1 AND cardinality(n.cursors) = ${FEED_PARTITIONS} GROUP BY g) m ` +
          `WHERE c.partition_id = m.partition_id AND c.seq <= m.upto AND c.created_at < $2 ` +
          `AND EXISTS (SELECT 1 FROM ${T.clusterLeader} WHERE id = 1 AND epoch = $3 AND node_id = $4)`,
        [opts.heartbeatTimeoutMs, Date.now() - (opts.changeRetentionMs ?? CHANGE_RETENTION_MS), leaderEpoch, self]
      ).pipe(Effect.zipRight(unsafe(
        // Rows of nodes gone for a day: nobody waits for them any more.
        `DELETE FROM ${T.clusterNodes} WHERE heartbeat_at < ${DB_NOW} - 86400000 ` +
          `AND EXISTS (SELECT 1 FROM ${T.clusterLeader} WHERE id = 1 AND epoch = $1 AND node_id = $2)`,
        [leaderEpoch, self]
      )))
    )

    let beats = 0
    const heartbeat = Effect.gen(function*() {
      yield* ensureListener.pipe(Effect.catchAll((e) => Effect.logWarning("cluster: LISTEN failed", e.message)))
      yield* unsafe(
        `INSERT INTO ${T.clusterNodes} (node_id, url, started_at, heartbeat_at, cursors) VALUES ($1, $2, $3, ${DB_NOW}, $4::bigint[]) ` +
          `ON CONFLICT (node_id) DO UPDATE SET url = excluded.url, heartbeat_at = excluded.heartbeat_at, cursors = excluded.cursors` +
          (beats === 0 ? ", started_at = excluded.started_at" : ""),
        [self, opts.publicUrl(), startedAt, cursors.map(String)]
      )
      const nodeRows = yield* unsafe(
        `SELECT node_id, url FROM ${T.clusterNodes} WHERE heartbeat_at > ${DB_NOW} - $1 ORDER BY node_id`,
        [opts.heartbeatTimeoutMs]
      ).values
      const endpoints: Array<MemberEndpoint> = nodeRows.map((r) => ({ nodeId: String(r[0]), url: String(r[1]) }))
      const members = endpoints.map((e) => e.nodeId)
      const leaderRows = yield* unsafe(`SELECT node_id, epoch, members_version, members FROM ${T.clusterLeader} WHERE id = 1`, []).values
      const leaderRow = { nodeId: leaderRows[0]?.[0] == null ? undefined : String(leaderRows[0][0]), epoch: Number(leaderRows[0]?.[1] ?? 0) }
      let membersVersion = Number(leaderRows[0]?.[2] ?? 0)
      yield* leadership(leaderRow, members)
      // The partition map's version is one number for the whole cluster: the leader bumps it (as a leader
      // action, epoch-guarded) whenever the member set it sees differs from the recorded one.
      const memberList = members.join(",")
      if (isLeader && String(leaderRows[0]?.[3] ?? "") !== memberList) {
        const bumped = yield* unsafe(
          `UPDATE ${T.clusterLeader} SET members_version = members_version + 1, members = $1 WHERE id = 1 AND epoch = $2 AND node_id = $3 RETURNING members_version`,
          [memberList, leaderEpoch, self]
        ).values
        if (bumped.length > 0) membersVersion = Number(bumped[0]![0])
      }
      const epoch = isLeader ? leaderEpoch : leaderRow.epoch
      const leader = isLeader ? self : leaderRow.nodeId !== undefined && members.includes(leaderRow.nodeId) ? leaderRow.nodeId : undefined
      const current = yield* SubscriptionRef.get(membership)
      if (current.epoch !== epoch || current.leader !== leader || current.members.join("\u0000") !== members.join("\u0000")) {
        yield* SubscriptionRef.set(membership, { members, leader, epoch })
      }
      const dir = yield* SubscriptionRef.get(directory)
      const same = dir.members.length === endpoints.length &&
        dir.members.every((m, i) => m.nodeId === endpoints[i]!.nodeId && m.url === endpoints[i]!.url)
      if (!same || dir.version !== membersVersion) yield* SubscriptionRef.set(directory, { version: membersVersion, members: endpoints })
      beats++
      if (isLeader && beats % (opts.trimEveryBeats ?? 10) === 0) yield* trimChanges
    })

    // ---- start: cursors at the end of the feed, join, then the loops ----
    const ends = yield* unsafe(`SELECT partition_id, seq FROM ${T.changeSeq}`, []).values.pipe(
      Effect.mapError(failed(`Cannot read the change feed of ${where} (is it migrated?)`))
    )
    for (const r of ends) cursors[Number(r[0])] = Number(r[1])
    // A previous run of this node id took its connections with it: their locks expire now (the sweep then
    // grants the waiters) and their queued requests go.
    yield* Effect.all([
      unsafe(`UPDATE ${T.locks} SET expires_at = 0 WHERE owner_node = $1`, [self]),
      unsafe(`DELETE FROM ${T.lockQueue} WHERE node_id = $1`, [self])
    ]).pipe(Effect.mapError(failed(`Cannot clear the locks of a previous run on ${where}`)))
    yield* ensureListener
    yield* heartbeat.pipe(Effect.mapError(failed(`Cannot join the cluster on ${where}`)))

    yield* readerLoop.pipe(Effect.annotateLogs({ fiber: "cluster-feed" }), Effect.forkScoped)
    yield* outboxLoop.pipe(Effect.annotateLogs({ fiber: "cluster-outbox" }), Effect.forkScoped)
    yield* heartbeat.pipe(
      Effect.catchAll((e) => Effect.logWarning("cluster: heartbeat failed", describeCause(e))),
      Effect.schedule(Schedule.spaced(opts.heartbeatMs)),
      Effect.annotateLogs({ fiber: "cluster-heartbeat" }),
      Effect.forkScoped
    )

    // Leaving: publish what is queued, drop out of the membership at once and give up the leader lock.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* flushOutbox
        yield* unsafe(`UPDATE ${T.clusterNodes} SET heartbeat_at = 0 WHERE node_id = $1`, [self]).pipe(Effect.ignore)
        yield* Effect.promise(() => Promise.all([leaderSession.close(), listener.close()]))
      }).pipe(Effect.timeout(3000), Effect.ignore)
    )

    const service: ClusterService = {
      nodeId: self,
      membership: SubscriptionRef.get(membership),
      membershipChanges: membership.changes,
      send: (to, message) =>
        to === self
          ? PubSub.publish(hub, { from: self, message }).pipe(Effect.asVoid)
          : Effect.sync(() => enqueue(to, message)),
      broadcast: (message) => message._tag === "GcCommit" ? publishGcCommit(message) : Effect.sync(() => enqueue(null, message)),
      inbound: Stream.fromPubSub(hub),
      replicatedRequiresCommit: true
    }
    const status = Effect.sync((): PostgresClusterStatus => ({
      isLeader,
      epoch: leaderEpoch,
      appliedRemoteChanges,
      resyncs,
      cursors: [...cursors]
    }))
    return Context.make(Cluster, service)
      .pipe(Context.add(ClusterDirectory, { current: SubscriptionRef.get(directory), changes: directory.changes }))
      .pipe(Context.add(PostgresClusterInfo, { status }))
      .pipe(Context.add(ClusterLockAuthority, {
        make: (settings) =>
          makePostgresLockAuthority({
            sql,
            nodeId: self,
            settings,
            heartbeatTimeoutMs: opts.heartbeatTimeoutMs,
            onError: (what, e) => Effect.logWarning(`cluster: ${what} failed`, describeCause(e))
          }),
        remoteGrants: Stream.fromPubSub(grantHub)
      }))
  })

/**
 * The PostgreSQL cluster layer for the server's settings. Sits above `Maps` (it applies remote changes)
 * and below everything that uses `Cluster`.
 */
export const layerPostgresCluster = (settings: {
  readonly databaseUrl: string | undefined
  readonly nodeId: string
  readonly clusterHeartbeatMs: number
  readonly clusterHeartbeatTimeoutMs: number
  readonly publicUrl: string | undefined
  readonly host: string
}, tuning: Pick<PostgresClusterOptions, "changeRetentionMs" | "trimEveryBeats"> = {}): Layer.Layer<Cluster | ClusterDirectory | PostgresClusterInfo | ClusterLockAuthority, StorageError, Maps | Storage | Hlc | ServerInfo> =>
  Layer.scopedContext(Effect.gen(function*() {
    const info = yield* ServerInfo
    const derivedUrl = (): string => {
      if (settings.publicUrl !== undefined) return settings.publicUrl
      const h = settings.host
      const host = h === "::" || h === "0.0.0.0" ? "localhost" : h.includes(":") ? `[${h}]` : h
      return `ws://${host}:${info.port()}/ws`
    }
    return yield* makePostgresCluster({
      url: settings.databaseUrl ?? "",
      nodeId: settings.nodeId,
      heartbeatMs: settings.clusterHeartbeatMs,
      heartbeatTimeoutMs: settings.clusterHeartbeatTimeoutMs,
      publicUrl: derivedUrl,
      ...tuning
    })
  }))
