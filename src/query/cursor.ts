/**
 * Pagination cursors (protocol.md §4.9.4). Opaque to the client; base64url (no padding) JSON in the reference
 * shape `{ nodeValues: { local }, nodeKeys: { local }, sortField, sortDirection, predicateHash, sortHash,
 * timestamp }`, plus `sortValues`: the last row's value for every sort field. With `sortValues` the position
 * test uses the query's own comparator, so paging never skips or repeats a row even with several sort fields or
 * strings that `localeCompare` orders differently from `<`. A cursor without `sortValues` is read as the
 * reference format: first sort field compared with `compareValues`, then the key.
 */
import type { CompiledQuery } from "./compile.js"
import { compareKeys, compareValues, fieldOf, isRecord, type Row } from "./values.js"

export const CURSOR_TTL_MS = 10 * 60 * 1000
/** Cursors longer than this are rejected before decoding (they embed sort values, which may be long strings). */
export const MAX_CURSOR_LENGTH = 1_000_000

export type CursorStatus = "none" | "valid" | "invalid" | "expired"

/** Where a cursor points: rows strictly after it belong to the page. Fixed for a live subscription. */
export interface CursorPosition {
  readonly key: string
  /** Exact sort tuple of the last row (own cursors). */
  readonly sortValues?: readonly unknown[]
  /** Reference format: value of the first sort field, compared with `compareValues`. */
  readonly firstValue: unknown
  readonly sortField: string
  readonly descending: boolean
}

interface CursorPayload {
  readonly position: CursorPosition
  readonly predicateHash: number
  readonly sortHash: number
  readonly timestamp: number
}

// Sort values survive JSON: non-finite numbers are tagged; objects/arrays (all equal in the sort order) become {}.
function encodeSortValue(v: unknown): unknown {
  if (v === undefined || v === null) return null
  if (typeof v === "number") return Number.isFinite(v) ? v : { n: String(v) }
  if (typeof v === "bigint") return { n: v.toString() }
  if (typeof v === "string" || typeof v === "boolean") return v
  return { o: 1 }
}

function decodeSortValue(v: unknown): unknown {
  if (isRecord(v)) {
    if (typeof v["n"] === "string") return Number(v["n"])
    return {}
  }
  return v
}

const BASE64URL = /^[A-Za-z0-9_-]*$/

export function encodeCursor(q: CompiledQuery, last: Row, nowMs: number): string {
  const first = q.sortFields[0]
  const payload = {
    nodeValues: { local: first === undefined ? last.key : encodeSortValue(fieldOf(last.value, first.field)) },
    nodeKeys: { local: last.key },
    sortField: first === undefined ? "_key" : first.field,
    sortDirection: first?.descending === true ? "desc" : "asc",
    predicateHash: q.predicateHash,
    sortHash: q.sortHash,
    timestamp: nowMs,
    sortValues: q.sortFields.map((f) => encodeSortValue(fieldOf(last.value, f.field)))
  }
  return Buffer.from(JSON.stringify(payload), "utf8").toString("base64url")
}

/** Parses a cursor string; `undefined` when it is not one of ours (or is malformed). */
export function decodeCursor(cursor: string): CursorPayload | undefined {
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !BASE64URL.test(cursor)) return undefined
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
  } catch {
    return undefined
  }
  if (!isRecord(raw)) return undefined
  const { nodeValues, nodeKeys, sortField, sortDirection, predicateHash, sortHash, timestamp, sortValues } = raw
  if (!isRecord(nodeValues) || !isRecord(nodeKeys) || typeof nodeKeys["local"] !== "string") return undefined
  if (typeof sortField !== "string" || (sortDirection !== "asc" && sortDirection !== "desc")) return undefined
  if (typeof predicateHash !== "number" || typeof sortHash !== "number") return undefined
  if (typeof timestamp !== "number" || !Number.isFinite(timestamp)) return undefined
  if (sortValues !== undefined && !Array.isArray(sortValues)) return undefined
  return {
    position: {
      key: nodeKeys["local"],
      firstValue: nodeValues["local"],
      sortField,
      descending: sortDirection === "desc",
      ...(sortValues !== undefined ? { sortValues: sortValues.map(decodeSortValue) } : {})
    },
    predicateHash,
    sortHash,
    timestamp
  }
}

export interface ResolvedCursor {
  readonly status: CursorStatus
  /** Present only when `status` is "valid". */
  readonly position?: CursorPosition
}

/** Status of a cursor for this query at `nowMs`; invalid and expired cursors do not filter. */
export function resolveCursor(q: CompiledQuery, cursor: string | undefined, nowMs: number): ResolvedCursor {
  if (cursor === undefined) return { status: "none" }
  const payload = decodeCursor(cursor)
  if (payload === undefined) return { status: "invalid" }
  const { position } = payload
  const first = q.sortFields[0]
  const consistent =
    payload.predicateHash === q.predicateHash &&
    payload.sortHash === q.sortHash &&
    position.sortField === (first === undefined ? "_key" : first.field) &&
    position.descending === (first?.descending === true) &&
    (position.sortValues === undefined || position.sortValues.length === q.sortFields.length)
  if (!consistent) return { status: "invalid" }
  if (nowMs - payload.timestamp > CURSOR_TTL_MS) return { status: "expired" }
  return { status: "valid", position }
}

export function cursorStatus(q: CompiledQuery, cursor: string | undefined, nowMs: number): CursorStatus {
  return resolveCursor(q, cursor, nowMs).status
}

/** The row a cursor points at, rebuilt from its sort tuple, for use with `q.compare`. */
function anchorRow(q: CompiledQuery, position: CursorPosition, sortValues: readonly unknown[]): Row {
  const value: Record<string, unknown> = Object.create(null)
  // A repeated sort field keeps its first value, as `fieldOf` of a real row would return the same for both.
  for (let i = q.sortFields.length - 1; i >= 0; i--) value[q.sortFields[i]!.field] = sortValues[i]
  return { key: position.key, value }
}

/** Predicate "strictly after the cursor" for this query, built once per cursor. */
export function afterCursor(q: CompiledQuery, position: CursorPosition): (row: Row) => boolean {
  if (position.sortValues !== undefined) {
    const anchor = anchorRow(q, position, position.sortValues)
    return (row) => q.compare(row, anchor) > 0
  }
  if (position.sortField === "_key") {
    return position.descending
      ? (row) => compareKeys(row.key, position.key) < 0
      : (row) => compareKeys(row.key, position.key) > 0
  }
  return (row) => {
    const c = compareValues(fieldOf(row.value, position.sortField), position.firstValue)
    if (c !== 0) return position.descending ? c < 0 : c > 0
    return compareKeys(row.key, position.key) > 0
  }
}
