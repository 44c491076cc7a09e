/**
 * Live maintenance of one subscription's result set (protocol.md §4.9.5). Emits exactly the updates a full
 * recomputation-and-diff would, without recomputing:
 *
 * - Unlimited queries keep a key → value map: O(1) per change.
 * - Limited queries keep the top-N window as a sorted array. Invariant: every qualifying row outside the window
 *   sorts after every window row, and the window is short of `limit` only when no qualifying row is outside it.
 *   A change then touches only the window's edge; `allRows()` is scanned (O(map)) only when a window row leaves
 *   or moves past the edge of a full window, to find the row that replaces it.
 *
 * Contract: call `onChange` once per committed change of a key, in commit order, with the key's new visible
 * value (`undefined` when deleted, tombstoned or expired). `allRows()` must return the map's visible rows as of
 * that change (the changed key with its new value, or without it); its rows may read their value on demand
 * (the window keeps only plain copies).
 */
import type { CompiledQuery } from "./compile.js"
import { afterCursor, type CursorPosition } from "./cursor.js"
import type { Row } from "./values.js"

export type ChangeType = "ENTER" | "UPDATE" | "LEAVE"

export interface QueryUpdate {
  readonly key: string
  readonly value: unknown
  readonly changeType: ChangeType
}

export class LiveQuery {
  private readonly current = new Map<string, unknown>()
  /** Sorted window (limited queries only). */
  private readonly window: Row[] | undefined
  private readonly isAfterCursor: ((row: Row) => boolean) | undefined

  /**
   * @param initial the rows returned in QUERY_RESP (for a limited query: exactly the first `limit` rows)
   * @param cursor the valid cursor position of the QUERY_SUB, fixed for the subscription's lifetime
   */
  constructor(
    readonly query: CompiledQuery,
    initial: readonly Row[],
    readonly cursor?: CursorPosition
  ) {
    this.isAfterCursor = cursor === undefined ? undefined : afterCursor(query, cursor)
    for (const row of initial) this.current.set(row.key, row.value)
    this.window = query.limit === undefined ? undefined : [...initial].sort(query.compare)
  }

  /** Keys of the current result set (the subscription's `previousResultKeys`). */
  keys(): IterableIterator<string> {
    return this.current.keys()
  }

  has(key: string): boolean {
    return this.current.has(key)
  }

  get size(): number {
    return this.current.size
  }

  /** Current result rows: in sort order for limited queries, otherwise in insertion order. */
  rows(): Row[] {
    if (this.window !== undefined) return [...this.window]
    return Array.from(this.current, ([key, value]) => ({ key, value }))
  }

  private qualifies(row: Row): boolean {
    // Without a filter the value is not read (rows of stored maps decode it on demand).
    return (this.query.matchesAll || this.query.matches(row.value)) && (this.isAfterCursor === undefined || this.isAfterCursor(row))
  }

  onChange(key: string, newValue: unknown, allRows: () => Iterable<Row>): QueryUpdate[] {
    const wasIn = this.current.has(key)
    const row: Row | undefined = newValue === undefined ? undefined : { key, value: newValue }
    const isIn = row !== undefined && this.qualifies(row)
    if (!wasIn && !isIn) return []
    if (this.window === undefined) {
      if (!isIn) {
        this.current.delete(key)
        return [leave(key)]
      }
      this.current.set(key, newValue)
      return [{ key, value: newValue, changeType: wasIn ? "UPDATE" : "ENTER" }]
    }
    return this.onWindowChange(this.window, this.query.limit!, key, wasIn, isIn ? row : undefined, allRows)
  }

  private onWindowChange(
    window: Row[],
    limit: number,
    key: string,
    wasIn: boolean,
    row: Row | undefined,
    allRows: () => Iterable<Row>
  ): QueryUpdate[] {
    const compare = this.query.compare
    if (!wasIn) {
      // A qualifying row from outside: it enters if there is room or it sorts before the window's last row.
      const newRow = row!
      if (window.length < limit) {
        this.insert(window, newRow)
        return [enter(newRow)]
      }
      const last = window[window.length - 1]!
      if (compare(newRow, last) >= 0) return []
      window.pop()
      this.current.delete(last.key)
      this.insert(window, newRow)
      return [leave(last.key), enter(newRow)]
    }

    const wasFull = window.length === limit
    const oldRow: Row = { key, value: this.current.get(key) }
    window.splice(this.indexOf(window, oldRow), 1)
    if (row === undefined) {
      this.current.delete(key)
      const updates = [leave(key)]
      if (wasFull) {
        const next = this.firstOutside(key, allRows)
        if (next !== undefined) {
          window.push(next) // every outside row sorts after the whole window
          this.current.set(next.key, next.value)
          updates.push(enter(next))
        }
      }
      return updates
    }

    // Still qualifies: it keeps its place unless it moved past the edge of a full window.
    const stays =
      !wasFull ||
      compare(row, oldRow) <= 0 ||
      (window.length > 0 && compare(row, window[window.length - 1]!) < 0)
    const next = stays ? undefined : this.firstOutside(key, allRows)
    if (next === undefined || compare(row, next) < 0) {
      this.insert(window, row)
      return [{ key, value: row.value, changeType: "UPDATE" }]
    }
    this.current.delete(key)
    window.push(next)
    this.current.set(next.key, next.value)
    return [leave(key), enter(next)]
  }

  /**
   * The first qualifying row outside the window, other than `changedKey` (handled by the caller), as a
   * plain row: `allRows` may yield rows that read their value on demand and are valid only during the scan.
   */
  private firstOutside(changedKey: string, allRows: () => Iterable<Row>): Row | undefined {
    let best: Row | undefined
    for (const candidate of allRows()) {
      if (candidate.key === changedKey || this.current.has(candidate.key) || !this.qualifies(candidate)) continue
      if (best === undefined || this.query.compare(candidate, best) < 0) best = candidate
    }
    return best === undefined ? undefined : { key: best.key, value: best.value }
  }

  private insert(window: Row[], row: Row): void {
    window.splice(this.lowerBound(window, row), 0, row)
    this.current.set(row.key, row.value)
  }

  private lowerBound(window: Row[], row: Row): number {
    let lo = 0
    let hi = window.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.query.compare(window[mid]!, row) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  private indexOf(window: Row[], row: Row): number {
    const i = this.lowerBound(window, row)
    if (window[i]?.key === row.key) return i
    // Unreachable while the comparator is a total order; a linear fallback keeps the state consistent anyway.
    return window.findIndex((r) => r.key === row.key)
  }
}

const leave = (key: string): QueryUpdate => ({ key, value: null, changeType: "LEAVE" })
const enter = (row: Row): QueryUpdate => ({ key: row.key, value: row.value, changeType: "ENTER" })
