/**
 * Locks authoritative in PostgreSQL (behavior.md §3.17, §3.26): the lock table (owner, fencing token,
 * expiry) and the FIFO queue are rows; every decision — grant, queue, extend, release, expiry — is one
 * transaction serialized per lock name by a transaction-scoped advisory lock, and fencing tokens come
 * from one database sequence. So two nodes can never grant the same lock, and tokens only grow.
 *
 * Expiry and queue timeouts are judged by the database clock (one clock for every node). A grant for a
 * connection on another node (a waiter promoted by a release here) is published, in the same
 * transaction, as a change row addressed to that node, whose `Locks` layer delivers LOCK_GRANTED.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, type Stream } from "effect"
import type { LockAuthority, LockGrant, LockSettings } from "../Locks.js"
import { T } from "../storage/schema.js"
import { appendChangeRows, CONTROL_PARTITION, type ChangeRowInput } from "./change-rows.js"

/** Provided by the PostgreSQL cluster layer; `Locks` uses it instead of its single-node table. */
export class ClusterLockAuthority extends Context.Tag("tessera/ClusterLockAuthority")<
  ClusterLockAuthority,
  {
    readonly make: (settings: LockSettings) => LockAuthority
    /** Grants decided on other nodes for connections of this node. */
    readonly remoteGrants: Stream.Stream<LockGrant>
  }
>() {}

const DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"

interface Decision {
  readonly grants: Array<{ readonly node: string; readonly grant: LockGrant }>
}

type Unsafe = (text: string, args: ReadonlyArray<unknown>) => ReturnType<SqlClient.SqlClient["unsafe"]>

export const makePostgresLockAuthority = (deps: {
  readonly sql: SqlClient.SqlClient
  readonly nodeId: string
  readonly settings: LockSettings
  /** Nodes silent this long are gone, and so are their clients' locks and queued requests. */
  readonly heartbeatTimeoutMs: number
  readonly onError: (what: string, error: SqlError) => Effect.Effect<void>
}): LockAuthority => {
  const { sql, nodeId: self, settings } = deps
  const unsafe: Unsafe = (text, args) => sql.unsafe(text, args as Array<unknown>)

  /** Serializes decisions per lock name (hash order: two multi-name transactions never deadlock). */
  const lockNames = (names: ReadonlyArray<string>) =>
    unsafe(`SELECT pg_advisory_xact_lock(hashtext('tessera-lock:' || n)) FROM unnest($1::text[]) AS n ORDER BY hashtext('tessera-lock:' || n)`, [names])

  const grantTo = (name: string, node: string, conn: string, requestId: string, ttlMs: number, now: number, d: Decision) =>
    Effect.gen(function*() {
      const rows = yield* unsafe(
        `INSERT INTO ${T.locks} (name, owner_node, owner_conn, fencing_token, expires_at) VALUES ($1, $2, $3, nextval('tessera_lock_fence'), $4) ` +
          `RETURNING fencing_token`,
        [name, node, conn, now + ttlMs]
      ).values
      d.grants.push({ node, grant: { connectionId: conn, requestId, name, fencingToken: Number(rows[0]![0]) } })
    })

  /** Member nodes as a subquery: `$n` is the oldest fresh heartbeat. */
  const liveNodes = (param: string) => `(SELECT node_id FROM ${T.clusterNodes} WHERE heartbeat_at > ${param})`

  /**
   * Drops stale waiters and an expired owner, then grants the head of the queue if the lock is free. A
   * node that left the membership took its connections with it: their locks and requests go too.
   */
  const settle = (name: string, now: number, d: Decision) =>
    Effect.gen(function*() {
      const fresh = now - deps.heartbeatTimeoutMs
      yield* unsafe(
        `DELETE FROM ${T.lockQueue} WHERE name = $1 AND (enqueued_at <= $2 OR node_id NOT IN ${liveNodes("$3")})`,
        [name, now - settings.waitTimeoutMs, fresh]
      )
      yield* unsafe(
        `DELETE FROM ${T.locks} WHERE name = $1 AND (expires_at <= $2 OR owner_node NOT IN ${liveNodes("$3")})`,
        [name, now, fresh]
      )
      const owner = yield* unsafe(`SELECT 1 FROM ${T.locks} WHERE name = $1`, [name]).values
      if (owner.length > 0) return
      const head = yield* unsafe(
        `DELETE FROM ${T.lockQueue} WHERE id = (SELECT id FROM ${T.lockQueue} WHERE name = $1 ORDER BY id LIMIT 1) ` +
          `RETURNING node_id, conn_id, request_id, ttl_ms`,
        [name]
      ).values
      const h = head[0]
      if (h !== undefined) yield* grantTo(name, String(h[0]), String(h[1]), String(h[2]), Number(h[3]), now, d)
    })

  /** Runs one decision in a transaction; grants for other nodes are published in it. */
  const decide = <A>(names: ReadonlyArray<string>, body: (now: number, d: Decision) => Effect.Effect<A, SqlError>) =>
    sql.withTransaction(Effect.gen(function*() {
      if (names.length > 0) yield* lockNames(names)
      const nowRows = yield* unsafe(`SELECT ${DB_NOW}`, []).values
      const now = Number(nowRows[0]![0])
      const d: Decision = { grants: [] }
      const result = yield* body(now, d)
      const remote: Array<ChangeRowInput> = d.grants
        .filter((g) => g.node !== self)
        .map((g) => ({ partition: CONTROL_PARTITION, target: g.node, payload: { g: g.grant } }))
      yield* appendChangeRows(unsafe, self, remote, Date.now())
      return { result, local: d.grants.filter((g) => g.node === self).map((g) => g.grant) }
    }))

  /** A failed transaction decided nothing: the caller gets no grant (the client may retry). */
  const orNothing = <A>(what: string, fallback: A) => (e: SqlError) => Effect.as(deps.onError(what, e), fallback)

  return {
    request: (connectionId, requestId, name, ttlMs) =>
      decide([name], (now, d) =>
        Effect.gen(function*() {
          yield* settle(name, now, d)
          const rows = yield* unsafe(`SELECT owner_node, owner_conn, fencing_token, expires_at FROM ${T.locks} WHERE name = $1`, [name]).values
          const owner = rows[0]
          if (owner === undefined) return yield* grantTo(name, self, connectionId, requestId, ttlMs, now, d)
          if (owner[0] === self && owner[1] === connectionId) {
            yield* unsafe(`UPDATE ${T.locks} SET expires_at = GREATEST(expires_at, $2) WHERE name = $1`, [name, now + ttlMs])
            d.grants.push({ node: self, grant: { connectionId, requestId, name, fencingToken: Number(owner[2]) } })
            return
          }
          yield* unsafe(
            `INSERT INTO ${T.lockQueue} (name, node_id, conn_id, request_id, ttl_ms, enqueued_at) VALUES ($1, $2, $3, $4, $5, $6)`,
            [name, self, connectionId, requestId, ttlMs, now]
          )
        })
      ).pipe(
        Effect.map((r) => r.local),
        Effect.catchAll(orNothing(`lock request ${name}`, []))
      ),

    release: (connectionId, name, fencingToken) =>
      decide([name], (now, d) =>
        Effect.gen(function*() {
          yield* settle(name, now, d)
          const deleted = yield* unsafe(
            `DELETE FROM ${T.locks} WHERE name = $1 AND owner_node = $2 AND owner_conn = $3 AND fencing_token = $4 RETURNING 1`,
            [name, self, connectionId, fencingToken]
          ).values
          if (deleted.length > 0) yield* settle(name, now, d)
          return deleted.length > 0
        })
      ).pipe(
        Effect.map((r) => ({ success: r.result, grants: r.local })),
        Effect.catchAll(orNothing(`lock release ${name}`, { success: false, grants: [] }))
      ),

    releaseConnection: (connectionId) =>
      Effect.gen(function*() {
        const names = (yield* unsafe(
          `SELECT name FROM ${T.locks} WHERE owner_node = $1 AND owner_conn = $2 ` +
            `UNION SELECT name FROM ${T.lockQueue} WHERE node_id = $1 AND conn_id = $2`,
          [self, connectionId]
        ).values).map((r) => String(r[0]))
        if (names.length === 0) return []
        const r = yield* decide(names, (now, d) =>
          Effect.gen(function*() {
            yield* unsafe(`DELETE FROM ${T.lockQueue} WHERE node_id = $1 AND conn_id = $2`, [self, connectionId])
            yield* unsafe(`DELETE FROM ${T.locks} WHERE owner_node = $1 AND owner_conn = $2`, [self, connectionId])
            for (const name of names) yield* settle(name, now, d)
          })
        )
        return r.local
      }).pipe(Effect.catchAll(orNothing(`releasing the locks of ${connectionId}`, []))),

    // Every node sweeps (idempotent per name): expired owners and stale waiters, wherever they came from.
    sweep: Effect.gen(function*() {
      const names = (yield* unsafe(
        `SELECT name FROM ${T.locks} WHERE expires_at <= ${DB_NOW} OR owner_node NOT IN ${liveNodes(`${DB_NOW} - $2`)} ` +
          `UNION SELECT name FROM ${T.lockQueue} WHERE enqueued_at <= ${DB_NOW} - $1 OR node_id NOT IN ${liveNodes(`${DB_NOW} - $2`)} LIMIT 1000`,
        [settings.waitTimeoutMs, deps.heartbeatTimeoutMs]
      ).values).map((r) => String(r[0]))
      const out: Array<LockGrant> = []
      for (const name of names) {
        const r = yield* decide([name], (now, d) => settle(name, now, d))
        out.push(...r.local)
      }
      return out
    }).pipe(Effect.catchAll(orNothing("lock sweep", []))),

    // The table lives in the database: no synchronous snapshot on a cluster node.
    inspect: () => undefined
  }
}
