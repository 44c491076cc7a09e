/**
 * Value access and the comparison primitives shared by filtering, sorting and cursors (protocol.md §4.9).
 * User values are plain msgpack data; they are never trusted to convert to primitives safely.
 */

/** A visible map entry: LWW value, or the array of live values of an OR key. */
export interface Row {
  readonly key: string
  readonly value: unknown
}

const hasOwn = Object.prototype.hasOwnProperty

/** An object whose fields a filter may test: OR-map arrays and primitives are not (§4.9.2 rule 1). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
}

/**
 * Top-level own field of a record (no dotted paths). Own properties only, so a field named `constructor` or
 * `__proto__` never reaches `Object.prototype`.
 */
export function fieldOf(value: unknown, field: string): unknown {
  return isRecord(value) && hasOwn.call(value, field) ? value[field] : undefined
}

const isObjectLike = (v: unknown): boolean => typeof v === "object" && v !== null

type Relation = (a: any, b: any) => boolean
const lt: Relation = (a, b) => a < b
const lte: Relation = (a, b) => a <= b
const gt: Relation = (a, b) => a > b
const gte: Relation = (a, b) => a >= b

/**
 * JavaScript relational semantics (coercion included). Objects are converted the JavaScript way; a record that
 * cannot be converted (e.g. `{ valueOf: 1, toString: 1 }` from msgpack) compares false instead of throwing.
 */
function relate(rel: Relation, a: unknown, b: unknown): boolean {
  if (!isObjectLike(a) && !isObjectLike(b)) return rel(a, b)
  try {
    return rel(a, b)
  } catch {
    return false
  }
}

export const jsLt = (a: unknown, b: unknown): boolean => relate(lt, a, b)
export const jsLte = (a: unknown, b: unknown): boolean => relate(lte, a, b)
export const jsGt = (a: unknown, b: unknown): boolean => relate(gt, a, b)
export const jsGte = (a: unknown, b: unknown): boolean => relate(gte, a, b)

/** Type rank of the sort order: missing/null < booleans < numbers < strings < everything else. */
function sortRank(v: unknown): number {
  switch (typeof v) {
    case "undefined":
      return 0
    case "boolean":
      return 1
    case "number":
    case "bigint":
      return 2
    case "string":
      return 3
    default:
      return v === null ? 0 : 4
  }
}

/**
 * Sort comparison of two field values (§4.9.3). Values of one primitive type compare exactly as JavaScript
 * `<` / `>` do (numbers numerically, strings by UTF-16 code units, false < true). The spec's "incomparable →
 * equal" rule is not transitive (a missing field would be "equal" to both 1 and 2), which makes windows and
 * cursors ill-defined; this refines it into a total order: missing/null first, then booleans, numbers (NaN
 * before all other numbers), strings, and all other values (objects, arrays) equal to each other.
 */
export function compareSortValues(a: unknown, b: unknown): number {
  const ra = sortRank(a)
  const rb = sortRank(b)
  if (ra !== rb) return ra < rb ? -1 : 1
  if (ra === 0 || ra === 4) return 0
  if ((a as number) < (b as number)) return -1
  if ((a as number) > (b as number)) return 1
  if (ra === 2) {
    // Only NaN is neither < nor > nor equal; put it first so the order stays total.
    const aNaN = a !== a
    const bNaN = b !== b
    if (aNaN !== bNaN) return aNaN ? -1 : 1
  }
  return 0
}

/** Key order: UTF-16 code units, the deterministic tie-break. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * `compareValues` of the reference cursor format (§4.9.4): nulls first; numbers numerically; two strings that
 * both parse as dates compare as dates, else `localeCompare`; false < true; otherwise
 * `String(a).localeCompare(String(b))`. Used only for cursors that lack the exact sort tuple.
 */
export function compareValues(a: unknown, b: unknown): number {
  const aNull = a === null || a === undefined
  const bNull = b === null || b === undefined
  if (aNull || bNull) return aNull && bNull ? 0 : aNull ? -1 : 1
  if (typeof a === "number" && typeof b === "number") return a < b ? -1 : a > b ? 1 : 0
  if (typeof a === "string" && typeof b === "string") {
    const da = Date.parse(a)
    const db = Date.parse(b)
    if (!Number.isNaN(da) && !Number.isNaN(db)) return da < db ? -1 : da > db ? 1 : 0
    return a.localeCompare(b)
  }
  if (typeof a === "boolean" && typeof b === "boolean") return a === b ? 0 : a ? 1 : -1
  return safeString(a).localeCompare(safeString(b))
}

function safeString(v: unknown): string {
  try {
    return String(v)
  } catch {
    return ""
  }
}
