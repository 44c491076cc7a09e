/** One-shot evaluation: filter, sort, cursor, limit and pagination fields (protocol.md §4.9, §3.5.1). */
import type { CompiledQuery } from "./compile.js"
import { afterCursor, encodeCursor, resolveCursor, type CursorPosition, type CursorStatus } from "./cursor.js"
import { TopK } from "./top-k.js"
import type { Row } from "./values.js"

export interface QueryRunResult {
  readonly results: Row[]
  readonly hasMore: boolean
  /** Present only when `hasMore`. */
  readonly nextCursor?: string
  readonly cursorStatus: CursorStatus
  /** The valid cursor's position; pass it to `LiveQuery` so the subscription keeps this window. */
  readonly cursorPosition?: CursorPosition
}

export interface RunOptions {
  /** Overrides `q.cursor` (the cursor the query itself carried). */
  readonly cursor?: string
  readonly nowMs: number
  /**
   * Turns a result row into one that stays valid after the scan. Rows of stored maps may read their value
   * on demand (so a scan decodes only what it filters, sorts or returns); they are settled before return.
   */
  readonly settle?: (row: Row) => Row
}

/**
 * Evaluates `q` over the visible rows of a map (LWW: non-tombstone, unexpired values; OR: arrays of live
 * values). Results are in sort order whenever the query has a sort, a limit or a valid cursor; otherwise in
 * input order.
 */
export function runQuery(rows: Iterable<Row>, q: CompiledQuery, opts: RunOptions): QueryRunResult {
  const resolved = resolveCursor(q, opts.cursor ?? q.cursor, opts.nowMs)
  const isAfter = resolved.position === undefined ? undefined : afterCursor(q, resolved.position)
  const base = {
    cursorStatus: resolved.status,
    ...(resolved.position !== undefined ? { cursorPosition: resolved.position } : {})
  }
  // Without a filter the value is not read here (a stored row would decode it for nothing).
  const qualifies = (row: Row): boolean => (q.matchesAll || q.matches(row.value)) && (isAfter === undefined || isAfter(row))
  const settle = opts.settle

  if (q.limit !== undefined) {
    const top = new TopK<Row>(q.limit, q.compare)
    for (const row of rows) if (qualifies(row)) top.offer(row)
    const results = top.sorted()
    if (top.count <= q.limit) return { results: settled(results, settle), hasMore: false, ...base }
    const nextCursor = encodeCursor(q, results[results.length - 1]!, opts.nowMs)
    return { results: settled(results, settle), hasMore: true, nextCursor, ...base }
  }

  const results: Row[] = []
  for (const row of rows) if (qualifies(row)) results.push(row)
  if (q.sortFields.length > 0 || isAfter !== undefined) results.sort(q.compare)
  return { results: settled(results, settle), hasMore: false, ...base }
}

function settled(results: Row[], settle: ((row: Row) => Row) | undefined): Row[] {
  if (settle !== undefined) for (let i = 0; i < results.length; i++) results[i] = settle(results[i]!)
  return results
}
