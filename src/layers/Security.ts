import { Effect } from "effect"
import type { Principal } from "./Auth.js"
import { ServerConfig, type SecurityPolicy } from "./ServerConfig.js"

export type Action = "READ" | "PUT" | "REMOVE"

/** Returns the value a principal may see: identity, a field projection, or null (no READ at all). */
export type ValueFilter = (value: unknown) => unknown

const identity: ValueFilter = (v) => v
const hidden: ValueFilter = () => null

const patternMatches = (pattern: string, resource: string, principal: Principal): boolean => {
  let p = pattern
  if (p.includes("{userId}")) {
    if (principal.userId === undefined) return false
    p = p.split("{userId}").join(principal.userId)
  }
  if (p === "*") return true
  if (p.endsWith("*")) return resource.startsWith(p.slice(0, -1))
  return p === resource
}

const projectFields = (value: unknown, allowed: ReadonlySet<string>): unknown => {
  if (Array.isArray(value)) return value.map((v) => projectFields(v, allowed))
  if (value === null || typeof value !== "object") return value
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(value)) {
    if (allowed.has(k)) out[k] = (value as Record<string, unknown>)[k]
  }
  return out
}

/**
 * RBAC + field-level security (protocol.md §2.5, behavior.md §3.6). Pure functions over the configured
 * policies; filters are cached per (role set, map) because they are computed on every outbound value.
 */
export class Security extends Effect.Service<Security>()("tessera/Security", {
  effect: Effect.gen(function* () {
    const { securityPolicies } = yield* ServerConfig
    return makeSecurity(securityPolicies)
  })
}) {}

export const makeSecurity = (policies: ReadonlyArray<SecurityPolicy>) => {
  const isAdmin = (p: Principal) => p.roles.includes("ADMIN")

  const checkPermission = (principal: Principal, resource: string, action: Action): boolean => {
    if (isAdmin(principal)) return true
    if (resource.startsWith("$sys/")) return false
    if (policies.length === 0) return true
    for (const policy of policies) {
      if (!principal.roles.includes(policy.role)) continue
      if (!policy.actions.includes(action) && !policy.actions.includes("ALL")) continue
      if (patternMatches(policy.mapNamePattern, resource, principal)) return true
    }
    return false
  }

  /** What a principal may read of a map's values: everything, nothing, or only some top-level fields. */
  type Readable = { readonly _tag: "All" } | { readonly _tag: "None" } | { readonly _tag: "Fields"; readonly fields: ReadonlySet<string> }
  const ALL: Readable = { _tag: "All" }
  const NONE: Readable = { _tag: "None" }
  const usesUserId = policies.some((p) => p.mapNamePattern.includes("{userId}"))
  const readableCache = new Map<string, { readonly readable: Readable; readonly filter: ValueFilter }>()

  const resolveReadable = (principal: Principal, mapName: string): { readonly readable: Readable; readonly filter: ValueFilter } => {
    const cacheKey = `${principal.roles.join("\u0000")}\u0001${mapName}${usesUserId ? `\u0001${principal.userId ?? ""}` : ""}`
    const cached = readableCache.get(cacheKey)
    if (cached !== undefined) return cached
    let anyMatch = false
    let unrestricted = false
    const allowed = new Set<string>()
    for (const policy of policies) {
      if (!principal.roles.includes(policy.role)) continue
      if (!policy.actions.includes("READ") && !policy.actions.includes("ALL")) continue
      if (!patternMatches(policy.mapNamePattern, mapName, principal)) continue
      anyMatch = true
      if (policy.allowedFields === undefined || policy.allowedFields.includes("*")) unrestricted = true
      else for (const f of policy.allowedFields) allowed.add(f)
    }
    const entry = !anyMatch
      ? { readable: NONE, filter: hidden }
      : unrestricted
      ? { readable: ALL, filter: identity }
      : { readable: { _tag: "Fields", fields: allowed } as const, filter: (v: unknown) => (v === null || typeof v !== "object" ? v : projectFields(v, allowed)) }
    if (readableCache.size > 10_000) readableCache.clear()
    readableCache.set(cacheKey, entry)
    return entry
  }

  /** The FLS filter for a principal on a map; `identity` when nothing needs filtering. */
  const valueFilter = (principal: Principal, mapName: string): ValueFilter =>
    policies.length === 0 || isAdmin(principal) ? identity : resolveReadable(principal, mapName).filter

  /**
   * Which fields of a map's values the principal may read. Paths that compute over values (search,
   * query filters and sorts, entry processors) use it so hidden fields cannot be probed indirectly.
   */
  const readable = (principal: Principal, mapName: string): Readable =>
    policies.length === 0 || isAdmin(principal) ? ALL : resolveReadable(principal, mapName).readable

  /** Apply FLS to a value (protocol.md §2.5 `filterObject`). */
  const filterValue = (principal: Principal, mapName: string, value: unknown): unknown =>
    value === null || typeof value !== "object" ? value : valueFilter(principal, mapName)(value)

  return { checkPermission, valueFilter, filterValue, readable, isAdmin, hasPolicies: policies.length > 0 } as const
}

export const isIdentityFilter = (f: ValueFilter): boolean => f === identity
