import { Effect, Exit } from "effect"
import { compareTimestamps } from "../crdt/hlc.js"
import { isVisible } from "../crdt/lww-map.js"
import type { LWWRecord } from "../crdt/types.js"
import { BUILTIN_RESOLVERS } from "../sandbox/builtins.js"
import { keyPatternMatches } from "../sandbox/glob.js"
import type { ResolverContext, ResolverResult } from "../sandbox/types.js"
import type { Principal } from "./Auth.js"
import type { Connection } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import type { MapState } from "./Maps.js"
import { Sandbox } from "./Sandbox.js"
import { Security } from "./Security.js"
import { ServerConfig } from "./ServerConfig.js"
import { Storage } from "./Storage.js"
import { WriteBehind } from "./storage/write-behind.js"

/** A registered resolver (behavior.md §3.22). Built-ins have no code: they run as host functions. */
interface ResolverEntry {
  readonly mapName: string
  readonly name: string
  readonly code: string
  readonly priority: number
  readonly keyPattern: string | undefined
  readonly registeredBy: string
  readonly seq: number
  readonly builtin: ((context: ResolverContext) => ResolverResult) | undefined
}

/** What the write pipeline does with an LWW write after the resolvers ran. */
export type Resolution =
  | { readonly _tag: "Accept" }
  | { readonly _tag: "Merge"; readonly value: unknown }
  | { readonly _tag: "Reject"; readonly reason: string }
  | { readonly _tag: "Local" }

const MAX_PER_MAP = 100
const META_PREFIX = "resolver:"

/**
 * Conflict resolvers (protocol.md §3.11, §4.13; behavior.md §3.22): per-map, priority-ordered functions
 * consulted on LWW writes. Custom code runs in the QuickJS sandbox; `prepare` compiles it ahead of the
 * synchronous apply loop so `resolve` never awaits. Registrations persist through `Storage`.
 */
export class Resolvers extends Effect.Service<Resolvers>()("tessera/Resolvers", {
  effect: Effect.gen(function* () {
    const config = yield* ServerConfig
    const sandbox = yield* Sandbox
    const security = yield* Security
    const storage = yield* Storage
    const writeBehind = yield* WriteBehind
    const hlc = (yield* Hlc).clock
    const wall = (yield* Hlc).wallMillis

    const byMap = new Map<string, ResolverEntry[]>()
    let seq = 0

    const sortEntries = (list: ResolverEntry[]) => list.sort((a, b) => b.priority - a.priority || a.seq - b.seq)

    const put = (entry: ResolverEntry) => {
      const list = (byMap.get(entry.mapName) ?? []).filter((e) => e.name !== entry.name)
      list.push(entry)
      byMap.set(entry.mapName, sortEntries(list))
    }

    const persist = (entry: ResolverEntry | { mapName: string; name: string; deleted: true }) => {
      if (!storage.durable) return
      const key = `${META_PREFIX}${entry.mapName}\u0000${entry.name}`
      const value = "deleted" in entry
        ? "null"
        : JSON.stringify({ code: entry.code, priority: entry.priority, keyPattern: entry.keyPattern ?? null, registeredBy: entry.registeredBy })
      writeBehind.submitUnsafe([{ _tag: "Meta", key, value }])
    }

    // Built-ins configured per map (server-side only, never over the wire).
    for (const [mapName, names] of Object.entries(config.builtinResolvers)) {
      for (const name of names) {
        const builtin = BUILTIN_RESOLVERS.get(name)
        if (builtin === undefined) continue
        put({ mapName, name, code: "", priority: builtin.priority, keyPattern: undefined, registeredBy: "config", seq: seq++, builtin: builtin.resolve })
      }
    }
    // Registrations survive restarts.
    if (storage.durable) {
      const rows = yield* storage.metaByPrefix(META_PREFIX).pipe(Effect.orElseSucceed(() => []))
      for (const [key, value] of rows) {
        const [mapName, name] = key.slice(META_PREFIX.length).split("\u0000")
        if (mapName === undefined || name === undefined || value === "null") continue
        try {
          const r = JSON.parse(value) as { code: string; priority: number; keyPattern: string | null; registeredBy: string }
          put({ mapName, name, code: r.code, priority: r.priority, keyPattern: r.keyPattern ?? undefined, registeredBy: r.registeredBy, seq: seq++, builtin: undefined })
        } catch {
          yield* Effect.logWarning(`ignoring unreadable resolver registration ${key}`)
        }
      }
    }

    const has = (mapName: string): boolean => (byMap.get(mapName)?.length ?? 0) > 0
    /** Whether any map has resolver code that must be compiled before use. */
    const hasCustom = (): boolean => {
      for (const list of byMap.values()) for (const e of list) if (e.builtin === undefined) return true
      return false
    }

    /** Compiles the custom resolvers of these maps so `resolve` runs without awaiting. */
    const prepare = (mapNames: Iterable<string>): Effect.Effect<void> => {
      const custom: ResolverEntry[] = []
      for (const mapName of mapNames) for (const e of byMap.get(mapName) ?? []) if (e.builtin === undefined) custom.push(e)
      return custom.length === 0
        ? Effect.void
        : Effect.forEach(custom, (e) => sandbox.prepare("resolver", e.name, e.code).pipe(Effect.ignore), { discard: true })
    }

    /**
     * Runs the map's resolvers for an LWW write (protocol.md §4.13), then the built-in LWW rule.
     * Synchronous: custom code must have been `prepare`d; one that cannot run synchronously, throws or
     * exceeds a limit is skipped.
     */
    const resolve = (state: MapState, key: string, record: LWWRecord, principal: Principal | undefined, writerId: string | undefined): Resolution => {
      const list = byMap.get(state.name)
      if (list === undefined || list.length === 0) return { _tag: "Accept" }
      const local = state.lww.get(key)
      const visible = local !== undefined && isVisible(local.record, wall())
      const context: ResolverContext = {
        mapName: state.name,
        key,
        ...(visible ? { localValue: local!.record.value } : {}),
        remoteValue: record.value,
        ...(local !== undefined ? { localTimestamp: local.record.timestamp } : {}),
        remoteTimestamp: record.timestamp,
        ...(writerId !== undefined ? { remoteNodeId: writerId } : {}),
        ...(principal !== undefined ? { auth: { ...principal.claims, ...(principal.userId !== undefined ? { userId: principal.userId } : {}), roles: principal.roles } } : {})
      }
      for (const entry of list) {
        if (entry.keyPattern !== undefined && !keyPatternMatches(entry.keyPattern, key)) continue
        let result: ResolverResult
        if (entry.builtin !== undefined) {
          result = entry.builtin(context)
        } else {
          const exit = Effect.runSyncExit(sandbox.runResolver({ name: entry.name, code: entry.code, context }))
          if (Exit.isFailure(exit)) continue // throws, times out, invalid, or not compiled: skipped
          result = exit.value
        }
        switch (result.action) {
          case "accept":
            return { _tag: "Accept" }
          case "merge":
            return { _tag: "Merge", value: result.value }
          case "reject":
            return { _tag: "Reject", reason: result.reason }
          case "local":
            continue
        }
      }
      // builtin:lww — always last.
      return local === undefined || compareTimestamps(record.timestamp, local.record.timestamp) > 0 ? { _tag: "Accept" } : { _tag: "Local" }
    }

    const respond = (c: Connection, type: string, requestId: string, error?: string) =>
      c.send(error === undefined ? { type, requestId, success: true } : { type, requestId, success: false, error })

    const register = (c: Connection, m: { requestId: string; mapName: string; resolver: { name: string; code: string; priority?: unknown; keyPattern?: string | undefined } }) =>
      Effect.gen(function* () {
        const type = "REGISTER_RESOLVER_RESPONSE"
        const { name, code, keyPattern } = m.resolver
        if (!security.checkPermission(c.principal!, m.mapName, "PUT")) return respond(c, type, m.requestId, `Access Denied for map ${m.mapName}`)
        // Resolver code sees whole stored values and its reject reasons reach writers: FLS would leak.
        if (security.readable(c.principal!, m.mapName)._tag !== "All") {
          return respond(c, type, m.requestId, `Access Denied for map ${m.mapName}: resolvers need read access to every field`)
        }
        if (name.length < 1 || name.length > 100) return respond(c, type, m.requestId, "Invalid resolver: name must be 1-100 characters")
        if (name.startsWith("builtin:")) return respond(c, type, m.requestId, "Invalid resolver: built-in resolvers are configured on the server")
        if (code.length > 50_000) return respond(c, type, m.requestId, "Invalid resolver: code must be at most 50000 characters")
        const priority = m.resolver.priority ?? 50
        if (typeof priority !== "number" || !Number.isInteger(priority) || priority < 0 || priority > 100) {
          return respond(c, type, m.requestId, "Invalid resolver: priority must be an integer 0-100")
        }
        const existing = byMap.get(m.mapName) ?? []
        if (existing.length >= MAX_PER_MAP && !existing.some((e) => e.name === name)) {
          return respond(c, type, m.requestId, `Invalid resolver: at most ${MAX_PER_MAP} resolvers per map`)
        }
        const checked = yield* Effect.either(sandbox.validateCode(code, 50_000, "resolver"))
        if (checked._tag === "Left") return respond(c, type, m.requestId, checked.left.message)
        const compiled = yield* Effect.either(sandbox.prepare("resolver", name, code))
        if (compiled._tag === "Left") return respond(c, type, m.requestId, compiled.left.message)
        const entry: ResolverEntry = {
          mapName: m.mapName,
          name,
          code,
          priority,
          keyPattern,
          registeredBy: c.principal!.userId ?? c.id,
          seq: seq++,
          builtin: undefined
        }
        put(entry)
        persist(entry)
        respond(c, type, m.requestId)
      })

    const unregister = (c: Connection, m: { requestId: string; mapName: string; resolverName: string }) =>
      Effect.sync(() => {
        const type = "UNREGISTER_RESOLVER_RESPONSE"
        if (!security.checkPermission(c.principal!, m.mapName, "PUT")) return respond(c, type, m.requestId, `Access Denied for map ${m.mapName}`)
        const list = byMap.get(m.mapName) ?? []
        const entry = list.find((e) => e.name === m.resolverName && e.builtin === undefined)
        const owner = c.principal!.userId ?? c.id
        if (entry === undefined || (entry.registeredBy !== owner && !security.isAdmin(c.principal!))) {
          return respond(c, type, m.requestId, "Resolver not found or not owned by this client")
        }
        byMap.set(m.mapName, list.filter((e) => e !== entry))
        persist({ mapName: m.mapName, name: entry.name, deleted: true })
        respond(c, type, m.requestId)
      })

    const list = (c: Connection, m: { requestId: string; mapName?: string | undefined }) =>
      Effect.sync(() => {
        const maps = m.mapName !== undefined ? [m.mapName] : [...byMap.keys()]
        const resolvers = maps
          .filter((mapName) => security.checkPermission(c.principal!, mapName, "READ"))
          .flatMap((mapName) =>
            (byMap.get(mapName) ?? []).map((e) => ({
              mapName,
              name: e.name,
              priority: e.priority,
              ...(e.keyPattern !== undefined ? { keyPattern: e.keyPattern } : {})
            }))
          )
        c.send({ type: "LIST_RESOLVERS_RESPONSE", requestId: m.requestId, resolvers })
      })

    return { has, hasCustom, prepare, resolve, register, unregister, list, now: () => hlc.now() } as const
  })
}) {}
