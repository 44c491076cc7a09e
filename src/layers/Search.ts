import { Effect } from "effect"
import { FullTextIndex, LiveSearch, type SearchOptions, tokenize } from "../search/index.js"
import type { Principal } from "./Auth.js"
import { type Change, ChangeStage, Changes } from "./Changes.js"
import { type Connection, Connections } from "./Connections.js"
import { Maps, type MapState } from "./Maps.js"
import { Security } from "./Security.js"
import { ServerConfig } from "./ServerConfig.js"

interface SearchSubscription {
  readonly id: string
  readonly connection: Connection
  readonly mapName: string
  readonly live: LiveSearch
  /** The index this subscriber may search (its readable fields only). */
  readonly index: FullTextIndex
}

interface SearchPayload {
  readonly mapName: string
  readonly query: string
  readonly options?: { readonly limit?: number | undefined; readonly minScore?: number | undefined; readonly boost?: Readonly<Record<string, number>> | undefined } | undefined
}

/** A one-shot search of HTTP sync (protocol.md §3.12 `searches[]`). */
interface OneShotSearch extends SearchPayload {
  readonly searchId: string
}

/** Search options without absent keys (exactOptionalPropertyTypes) and with sane bounds. */
const optionsOf = (o: SearchPayload["options"]): SearchOptions => ({
  ...(o?.limit !== undefined && o.limit > 0 ? { limit: Math.min(o.limit, 10_000) } : {}),
  ...(o?.minScore !== undefined ? { minScore: o.minScore } : {}),
  ...(o?.boost !== undefined ? { boost: o.boost } : {})
})

/**
 * Full-text search (protocol.md §3.6, §4.10; behavior.md §3.24). Every map is searchable without
 * configuration: its BM25 index is built from the visible records on the first SEARCH / SEARCH_SUB and
 * then maintained from `Changes` — maps nobody searches pay nothing on writes.
 */
export class Search extends Effect.Service<Search>()("tessera/Search", {
  effect: Effect.gen(function* () {
    const config = yield* ServerConfig
    const maps = yield* Maps
    const changes = yield* Changes
    const connections = yield* Connections
    const security = yield* Security

    /**
     * Per map, one index per distinct set of searchable fields: the default (configured fields, or every
     * top-level string) and, for principals whose field-level security hides fields, an index over their
     * readable fields only — so a search can neither match nor rank by a field the reader cannot see.
     */
    const indexes = new Map<string, Map<string, FullTextIndex>>()
    const byMap = new Map<string, Map<string, SearchSubscription>>()
    const byConnection = new Map<string, Map<string, SearchSubscription>>()

    const indexOf = (state: MapState, principal: Principal): FullTextIndex => {
      const configured = config.fullTextSearch[state.name]?.fields
      const readable = security.readable(principal, state.name)
      const fields = readable._tag !== "Fields"
        ? configured
        : (configured ?? [...readable.fields]).filter((f) => readable.fields.has(f)).sort()
      const fieldsKey = fields === undefined ? "" : `fields:${fields.join("\u0000")}`
      let forMap = indexes.get(state.name)
      if (forMap === undefined) indexes.set(state.name, forMap = new Map())
      let index = forMap.get(fieldsKey)
      if (index === undefined) {
        index = new FullTextIndex(fields)
        for (const row of maps.rows(state)) index.upsert(row.key, row.value)
        forMap.set(fieldsKey, index)
      }
      return index
    }

    /** Hits with the current values (FLS per recipient). */
    const resultsOf = (principal: Principal, state: MapState, index: FullTextIndex, query: string, options: SearchOptions) => {
      const filter = security.valueFilter(principal, state.name)
      return index.search(query, options).map((hit) => ({
        key: hit.key,
        value: filter(maps.visibleValue(state, hit.key) ?? null),
        score: hit.score,
        matchedTerms: hit.matchedTerms
      }))
    }

    /** Shared by SEARCH and SEARCH_SUB: READ check, lazy index, initial results. */
    const run = (c: Connection, requestId: string, p: SearchPayload) =>
      Effect.gen(function* () {
        if (!security.checkPermission(c.principal!, p.mapName, "READ")) {
          c.send({ type: "SEARCH_RESP", payload: { requestId, results: [], totalCount: 0, error: `Access denied for map: ${p.mapName}` } })
          return undefined
        }
        const state = yield* Effect.either(maps.get(p.mapName))
        if (state._tag === "Left") {
          c.send({ type: "SEARCH_RESP", payload: { requestId, results: [], totalCount: 0, error: `Failed to load map ${p.mapName}` } })
          return undefined
        }
        const index = indexOf(state.right, c.principal!)
        const results = resultsOf(c.principal!, state.right, index, p.query, optionsOf(p.options))
        c.send({ type: "SEARCH_RESP", payload: { requestId, results, totalCount: results.length } })
        return { state: state.right, results, index }
      })

    const search = (c: Connection, p: SearchPayload & { readonly requestId: string }) => Effect.asVoid(run(c, p.requestId, p))

    const remove = (sub: SearchSubscription) => {
      byMap.get(sub.mapName)?.delete(sub.id)
      byConnection.get(sub.connection.id)?.delete(sub.id)
    }

    const subscribe = (c: Connection, p: SearchPayload & { readonly subscriptionId: string }) =>
      Effect.gen(function* () {
        const previous = byConnection.get(c.id)?.get(p.subscriptionId)
        if (previous !== undefined) remove(previous)
        const initial = yield* run(c, p.subscriptionId, p)
        if (initial === undefined) return
        const options = optionsOf(p.options)
        const sub: SearchSubscription = {
          id: p.subscriptionId,
          connection: c,
          mapName: p.mapName,
          live: new LiveSearch(tokenize(p.query), options.minScore !== undefined ? { minScore: options.minScore } : {}, initial.results),
          index: initial.index
        }
        let forMap = byMap.get(p.mapName)
        if (forMap === undefined) byMap.set(p.mapName, forMap = new Map())
        forMap.set(`${c.id}\u0000${sub.id}`, sub)
        let own = byConnection.get(c.id)
        if (own === undefined) byConnection.set(c.id, own = new Map())
        own.set(sub.id, sub)
      })

    const unsubscribe = (c: Connection, subscriptionId: string) =>
      Effect.sync(() => {
        const sub = byConnection.get(c.id)?.get(subscriptionId)
        if (sub === undefined) return
        byMap.get(sub.mapName)?.delete(`${c.id}\u0000${sub.id}`)
        byConnection.get(c.id)?.delete(subscriptionId)
      })

    const onChange = (change: Change): void => {
      const forMap = indexes.get(change.mapName)
      if (forMap === undefined) return
      for (const index of forMap.values()) {
        if (change.after === undefined) index.remove(change.key)
        else index.upsert(change.key, change.after)
      }
      const subs = byMap.get(change.mapName)
      if (subs === undefined || subs.size === 0) return
      for (const sub of subs.values()) {
        const update = sub.live.onChange(change.key, change.after, sub.index)
        if (update === undefined) continue
        const value = change.after === undefined ? null : security.filterValue(sub.connection.principal!, change.mapName, change.after)
        sub.connection.send({
          type: "SEARCH_UPDATE",
          payload: { subscriptionId: sub.id, key: change.key, value, score: update.score, matchedTerms: update.matchedTerms, changeType: update.changeType }
        })
      }
    }

    changes.subscribe(ChangeStage.Search, "search", onChange)
    connections.onDisconnect(10, (c) =>
      Effect.sync(() => {
        const own = byConnection.get(c.id)
        if (own === undefined) return
        for (const sub of own.values()) byMap.get(sub.mapName)?.delete(`${c.id}\u0000${sub.id}`)
        byConnection.delete(c.id)
      })
    )

    return {
      search,
      subscribe,
      unsubscribe,
      /** One-shot search for HTTP sync (same rules as SEARCH). */
      searchFor: (
        principal: Principal,
        request: OneShotSearch
      ): Effect.Effect<{ searchId: string; results: ReadonlyArray<unknown>; totalCount: number }, { code: number; message: string; context: string }> =>
        Effect.gen(function* () {
          if (!security.checkPermission(principal, request.mapName, "READ")) {
            return yield* Effect.fail({ code: 403, message: `Access denied for map: ${request.mapName}`, context: request.searchId })
          }
          const state = yield* maps.get(request.mapName).pipe(
            Effect.mapError(() => ({ code: 500, message: `Failed to load map ${request.mapName}`, context: request.searchId }))
          )
          const results = resultsOf(principal, state, indexOf(state, principal), request.query, optionsOf(request.options))
          return { searchId: request.searchId, results, totalCount: results.length }
        }),
      indexedMaps: (): number => indexes.size
    } as const
  })
}) {}
