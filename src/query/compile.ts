/**
 * `compileQuery`: validates and bounds a wire `Query` (protocol.md §3.0) once, producing the filter, the
 * comparator and the identity hashes used by cursors.
 */
import { hashObject } from "../crdt/hash.js"
import { compilePredicate, compileWhere, newBudget, QueryCompileError, type RecordTest } from "./match.js"
import { makeRowComparator, parseSort, type SortField } from "./sort.js"
import { isRecord, type Row } from "./values.js"

export type Scalar = string | number | boolean | null

/** A necessary condition `value[field] === value` of the filter (used by `SubscriptionIndex`). */
export interface EqualityConstraint {
  readonly field: string
  readonly value: Scalar
}

export interface CompiledQuery {
  /** Filter only (§4.9.2): no sort, cursor or limit. */
  readonly matches: (value: unknown) => boolean
  /** No filter: `matches` is true for every value (a scan need not read values to filter). */
  readonly matchesAll: boolean
  /** Sort order (§4.9.3) with key tie-break; key order when the query has no sort. */
  readonly compare: (a: Row, b: Row) => number
  /** Positive integer window size; absent = unlimited. */
  readonly limit?: number
  readonly sortFields: readonly SortField[]
  /** `hashObject(predicate ?? where ?? null)` — a cursor made for another filter is invalid. */
  readonly predicateHash: number
  /** `hashObject(sort ?? null)` — a cursor made for another sort is invalid. */
  readonly sortHash: number
  /** The query's own `cursor`, if it carried one. */
  readonly cursor?: string
  /** Set when the filter requires one field to equal a scalar. */
  readonly equality?: EqualityConstraint
}

export type CompileResult = { ok: true; compiled: CompiledQuery } | { ok: false; error: string }

const isScalar = (v: unknown): v is Scalar =>
  v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean"

function eqLeaf(node: unknown): EqualityConstraint | undefined {
  if (!isRecord(node) || node["op"] !== "eq") return undefined
  const attribute = node["attribute"]
  const value = node["value"]
  return typeof attribute === "string" && isScalar(value) ? { field: attribute, value } : undefined
}

/** An `eq` predicate at the top level or as a direct child of a top-level `and`. */
function predicateEquality(predicate: Record<string, unknown>): EqualityConstraint | undefined {
  const direct = eqLeaf(predicate)
  if (direct !== undefined || predicate["op"] !== "and") return direct
  const children = predicate["children"]
  if (!Array.isArray(children)) return undefined
  for (const child of children) {
    const found = eqLeaf(child)
    if (found !== undefined) return found
  }
  return undefined
}

/** `where: { field: scalar }` or `where: { field: { $eq: scalar, … } }`. */
function whereEquality(where: Record<string, unknown>): EqualityConstraint | undefined {
  for (const field of Object.keys(where)) {
    const expected = where[field]
    if (isScalar(expected)) return { field, value: expected }
    if (isRecord(expected) && Object.prototype.hasOwnProperty.call(expected, "$eq") && isScalar(expected["$eq"])) {
      return { field, value: expected["$eq"] }
    }
  }
  return undefined
}

function parseLimit(limit: unknown): number | undefined {
  if (limit === undefined || limit === null) return undefined
  if (typeof limit !== "number" || Number.isNaN(limit)) throw new QueryCompileError("limit must be a number")
  const n = Math.floor(limit)
  return n > 0 && Number.isFinite(n) ? n : undefined
}

export function compileQuery(query: unknown): CompileResult {
  try {
    return { ok: true, compiled: compileOrThrow(query) }
  } catch (e) {
    if (e instanceof QueryCompileError) return { ok: false, error: e.message }
    throw e
  }
}

function compileOrThrow(query: unknown): CompiledQuery {
  if (!isRecord(query)) throw new QueryCompileError("query must be an object")
  const rawWhere = query["where"] ?? undefined
  const rawPredicate = query["predicate"] ?? undefined
  if (rawWhere !== undefined && !isRecord(rawWhere)) throw new QueryCompileError("where must be an object")
  if (rawPredicate !== undefined && !isRecord(rawPredicate)) throw new QueryCompileError("predicate must be an object")

  const budget = newBudget()
  // The predicate alone decides when present (where is ignored); an absent or empty where matches all.
  const test: RecordTest | undefined =
    rawPredicate !== undefined
      ? compilePredicate(rawPredicate, 1, budget)
      : rawWhere !== undefined
        ? compileWhere(rawWhere, budget)
        : undefined
  // Rule 1: a primitive or an OR-map array matches only a query with neither where nor predicate.
  const matches: (value: unknown) => boolean =
    test === undefined ? () => true : (value) => isRecord(value) && test(value)

  const rawSort = query["sort"] ?? undefined
  const sortFields = parseSort(rawSort)
  const limit = parseLimit(query["limit"])
  const cursor = query["cursor"]
  const equality =
    rawPredicate !== undefined
      ? predicateEquality(rawPredicate)
      : rawWhere !== undefined
        ? whereEquality(rawWhere)
        : undefined

  return {
    matches,
    matchesAll: test === undefined,
    compare: makeRowComparator(sortFields),
    sortFields,
    predicateHash: hashObject(rawPredicate ?? rawWhere ?? null),
    sortHash: hashObject(rawSort ?? null),
    ...(limit !== undefined ? { limit } : {}),
    ...(typeof cursor === "string" ? { cursor } : {}),
    ...(equality !== undefined ? { equality } : {})
  }
}
