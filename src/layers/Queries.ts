import { Effect } from "effect"
import { compileQuery, type CompiledQuery, LiveQuery, runQuery, SubscriptionIndex, unreadableFields } from "../query/index.js"
import { encodeMessage } from "../protocol/codec.js"
import { type Change, ChangeStage, Changes } from "./Changes.js"
import { type Connection, Connections } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { Maps } from "./Maps.js"
import { isIdentityFilter, Security, type ValueFilter } from "./Security.js"

/** One live query: (connection, queryId) on a map, with its maintained result window. */
interface Subscription {
  readonly id: string
  readonly connection: Connection
  readonly queryId: string
  readonly mapName: string
  readonly live: LiveQuery
  readonly filter: ValueFilter
  readonly fields: ReadonlyArray<string> | undefined
}

interface QuerySubPayload {
  readonly queryId: string
  readonly mapName: string
  readonly query: unknown
  readonly fields?: ReadonlyArray<string> | undefined
}

const project = (value: unknown, fields: ReadonlyArray<string> | undefined): unknown => {
  if (fields === undefined || value === null || typeof value !== "object" || Array.isArray(value)) return value
  const out: Record<string, unknown> = {}
  for (const f of fields) if (Object.prototype.hasOwnProperty.call(value, f)) out[f] = (value as Record<string, unknown>)[f]
  return out
}

/**
 * Live queries (protocol.md §3.5, §4.9; behavior.md §3.14) and the SERVER_EVENT fan-out to the
 * connections that hold a live query on a map (protocol.md §3.2.4). Both consume `Changes`
 * synchronously, in stage order, so a recipient gets SERVER_EVENT before the QUERY_UPDATEs of the
 * same change. A change is matched only against its map's subscriptions, pruned by the equality index.
 */
export class Queries extends Effect.Service<Queries>()("tessera/Queries", {
  effect: Effect.gen(function* () {
    const maps = yield* Maps
    const changes = yield* Changes
    const connections = yield* Connections
    const security = yield* Security
    const hlc = (yield* Hlc).clock
    const wall = (yield* Hlc).wallMillis

    const byMap = new Map<string, SubscriptionIndex<Subscription>>()
    /** Per map with live queries: the `needBefore` declaration to release when its last query goes. */
    const releaseBefore = new Map<string, () => void>()
    const byConnection = new Map<string, Map<string, Subscription>>()

    const subKey = (connectionId: string, queryId: string) => `${connectionId}\u0000${queryId}`

    const remove = (sub: Subscription): void => {
      const index = byMap.get(sub.mapName)
      index?.remove(sub.id)
      if (index !== undefined && index.size === 0) {
        byMap.delete(sub.mapName)
        releaseBefore.get(sub.mapName)?.()
        releaseBefore.delete(sub.mapName)
      }
      byConnection.get(sub.connection.id)?.delete(sub.queryId)
      connections.removeMapSubscriber(sub.mapName, sub.connection.id)
    }

    const unsubscribe = (c: Connection, queryId: string) =>
      Effect.sync(() => {
        const sub = byConnection.get(c.id)?.get(queryId)
        if (sub !== undefined) remove(sub)
      })

    const respondError = (c: Connection, queryId: string, error: string, code: string) =>
      c.send({ type: "QUERY_RESP", payload: { queryId, results: [], error, code } })

    const subscribe = (c: Connection, payload: QuerySubPayload) =>
      Effect.gen(function* () {
        const { queryId, mapName } = payload
        if (!security.checkPermission(c.principal!, mapName, "READ")) {
          c.send({ type: "ERROR", payload: { code: 403, message: `Access Denied for map ${mapName}` } })
          return
        }
        const query = payload.query as { groupBy?: unknown; aggregations?: unknown } | null
        if (query !== null && typeof query === "object" && (query.groupBy !== undefined || query.aggregations !== undefined)) {
          return respondError(c, queryId, "Aggregation queries are not available on this server", "FEATURE_DISABLED")
        }
        const readable = security.readable(c.principal!, mapName)
        if (readable._tag === "Fields") {
          const hidden = unreadableFields(payload.query, readable.fields)
          if (hidden.length > 0) return respondError(c, queryId, `Query references fields you may not read: ${hidden.join(", ")}`, "ACCESS_DENIED")
        }
        const compiled = compileQuery(payload.query)
        if (!compiled.ok) return respondError(c, queryId, compiled.error, "INVALID_QUERY")
        const state = yield* Effect.either(maps.get(mapName))
        if (state._tag === "Left") {
          c.send({ type: "ERROR", payload: { code: 500, message: `Failed to load map ${mapName}` } })
          return
        }
        // A repeated queryId replaces the previous subscription.
        const previous = byConnection.get(c.id)?.get(queryId)
        if (previous !== undefined) remove(previous)

        const q: CompiledQuery = compiled.compiled
        const result = runQuery(maps.scanRows(state.right), q, { nowMs: wall(), settle: maps.settleRow })
        const filter = security.valueFilter(c.principal!, mapName)
        const fields = payload.fields !== undefined && payload.fields.length > 0 ? payload.fields : undefined
        const sub: Subscription = {
          id: subKey(c.id, queryId),
          connection: c,
          queryId,
          mapName,
          live: new LiveQuery(q, result.results, result.cursorPosition),
          filter,
          fields
        }
        let index = byMap.get(mapName)
        if (index === undefined) {
          byMap.set(mapName, index = new SubscriptionIndex())
          releaseBefore.set(mapName, changes.needBefore(mapName, "decoded")) // candidates(before, after)
        }
        index.add(sub.id, q, sub)
        let own = byConnection.get(c.id)
        if (own === undefined) byConnection.set(c.id, own = new Map())
        own.set(queryId, sub)
        connections.addMapSubscriber(mapName, c.id)

        const results = result.results.map((row) => ({ key: row.key, value: project(filter(row.value), fields) }))
        c.send({
          type: "QUERY_RESP",
          payload: {
            queryId,
            results,
            ...(q.limit !== undefined || payload.query !== null && typeof payload.query === "object" && "cursor" in payload.query
              ? { hasMore: result.hasMore, cursorStatus: result.cursorStatus }
              : {}),
            ...(result.nextCursor !== undefined ? { nextCursor: result.nextCursor } : {})
          }
        })
      })

    /** SERVER_EVENT to every connection with a live query on the map, except the writer (protocol.md §3.2.4). */
    const broadcastServerEvent = (change: Change): void => {
      const recipients = connections.mapSubscribers(change.mapName)
      if (recipients === undefined) return
      const timestamp = hlc.now()
      // Encode once per distinct FLS filter (identity for everyone when no policies are configured).
      const encoded = new Map<ValueFilter, Uint8Array>()
      for (const connectionId of recipients.keys()) {
        if (connectionId === change.writerId && !change.echoToWriter) continue
        const c = connections.get(connectionId)
        if (c === undefined || c.principal === undefined) continue
        const filter = security.valueFilter(c.principal, change.mapName)
        let frame = encoded.get(filter)
        if (frame === undefined) {
          frame = encodeMessage({ type: "SERVER_EVENT", payload: serverEventPayload(change, filter), timestamp })
          encoded.set(filter, frame)
        }
        c.sendEncoded(frame)
      }
    }

    const onChange = (change: Change): void => {
      const index = byMap.get(change.mapName)
      if (index === undefined) return
      const state = maps.peek(change.mapName)
      if (state === undefined) return
      const allRows = () => maps.scanRows(state) // values decoded only where the query reads them
      for (const sub of index.candidates(change.before, change.after)) {
        const updates = sub.live.onChange(change.key, change.after, allRows)
        for (const u of updates) {
          sub.connection.send({
            type: "QUERY_UPDATE",
            payload: {
              queryId: sub.queryId,
              key: u.key,
              value: u.changeType === "LEAVE" ? null : project(sub.filter(u.value), sub.fields),
              changeType: u.changeType
            }
          })
        }
      }
    }

    changes.subscribe(ChangeStage.ServerEvent, "server-events", broadcastServerEvent)
    changes.subscribe(ChangeStage.Queries, "live-queries", onChange)
    connections.onDisconnect(10, (c) =>
      Effect.sync(() => {
        const own = byConnection.get(c.id)
        if (own === undefined) return
        for (const sub of [...own.values()]) remove(sub)
        byConnection.delete(c.id)
      })
    )

    return {
      subscribe,
      unsubscribe,
      /** Number of live subscriptions (metrics). */
      count: (): number => {
        let n = 0
        for (const own of byConnection.values()) n += own.size
        return n
      }
    } as const
  })
}) {}

/** The SERVER_EVENT payload of a change with FLS applied to the record value. */
const serverEventPayload = (change: Change, filter: ValueFilter): object => {
  const base = { mapName: change.mapName, eventType: change.eventType, key: change.key }
  if (change.record !== undefined) {
    const r = change.record
    const record = r.value === null || isIdentityFilter(filter) ? r : { ...r, value: filter(r.value) }
    return { ...base, record }
  }
  if (change.orRecord !== undefined) {
    const r = change.orRecord
    const orRecord = isIdentityFilter(filter) ? r : { ...r, value: filter(r.value) }
    return { ...base, orRecord, orTag: r.tag }
  }
  return { ...base, orTag: change.orTag }
}
