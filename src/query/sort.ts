/** Sort specifications (protocol.md §4.9.3): both wire encodings, compiled to one row comparator. */
import { QueryCompileError } from "./match.js"
import { compareKeys, compareSortValues, fieldOf, isRecord, type Row } from "./values.js"

export const MAX_SORT_FIELDS = 32

export interface SortField {
  readonly field: string
  readonly descending: boolean
}

/**
 * Object form `{ field: "asc" | "desc" }` (fields in key order) or array form `[{ field, direction }]`.
 * Absent/null → no sort fields. A direction other than "desc" sorts ascending.
 */
export function parseSort(sort: unknown): SortField[] {
  if (sort === undefined || sort === null) return []
  const fields: SortField[] = []
  if (Array.isArray(sort)) {
    for (const entry of sort) {
      if (!isRecord(entry) || typeof entry["field"] !== "string") {
        throw new QueryCompileError("sort entries must be { field, direction }")
      }
      fields.push({ field: entry["field"], descending: entry["direction"] === "desc" })
    }
  } else if (isRecord(sort)) {
    for (const field of Object.keys(sort)) fields.push({ field, descending: sort[field] === "desc" })
  } else {
    throw new QueryCompileError("sort must be an object or an array")
  }
  if (fields.length > MAX_SORT_FIELDS) throw new QueryCompileError(`more than ${MAX_SORT_FIELDS} sort fields`)
  return fields
}

/** Comparator over rows: each field in turn, then key ascending. A strict total order on distinct keys. */
export function makeRowComparator(fields: readonly SortField[]): (a: Row, b: Row) => number {
  if (fields.length === 0) return (a, b) => compareKeys(a.key, b.key)
  return (a, b) => {
    for (let i = 0; i < fields.length; i++) {
      const { field, descending } = fields[i]!
      const c = compareSortValues(fieldOf(a.value, field), fieldOf(b.value, field))
      if (c !== 0) return descending ? -c : c
    }
    return compareKeys(a.key, b.key)
  }
}
