import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compileQuery, LiveQuery, runQuery, type QueryUpdate, type Row } from "../../src/query/index.js"
import { change, initialMap, query, rowsOf } from "./arbitraries.js"

const NOW = 1_700_000_000_000

/** The updates §4.9.5 prescribes, by recomputing the window and diffing it against the previous one. */
function specUpdates(previous: Row[], next: Row[], key: string, newValue: unknown): QueryUpdate[] {
  const prevKeys = new Set(previous.map((r) => r.key))
  const nextKeys = new Set(next.map((r) => r.key))
  const matchesOrWasIn = prevKeys.has(key) || next.some((r) => r.key === key)
  if (!matchesOrWasIn) return []
  const out: QueryUpdate[] = []
  for (const r of previous) if (!nextKeys.has(r.key)) out.push({ key: r.key, value: null, changeType: "LEAVE" })
  if (nextKeys.has(key)) out.push({ key, value: newValue, changeType: prevKeys.has(key) ? "UPDATE" : "ENTER" })
  for (const r of next) {
    if (r.key !== key && !prevKeys.has(r.key)) out.push({ key: r.key, value: r.value, changeType: "ENTER" })
  }
  return out
}

const byKey = (rows: Row[]): Row[] => [...rows].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))

describe("LiveQuery maintenance equals recomputation", () => {
  it("keeps the same window (keys, values, order) and emits the §4.9.5 updates", () => {
    fc.assert(
      fc.property(
        query,
        initialMap,
        fc.array(change, { maxLength: 25 }),
        fc.boolean(),
        (rawQuery, initial, changes, secondPage) => {
          const compiled = compileQuery(rawQuery)
          expect(compiled.ok).toBe(true)
          if (!compiled.ok) return
          const q = compiled.compiled
          const map = new Map<string, unknown>(Object.entries(initial))

          // Optionally subscribe with the cursor of page 1, so the window starts after it.
          let cursor: string | undefined
          if (secondPage && q.limit !== undefined) {
            cursor = runQuery(rowsOf(map), q, { nowMs: NOW }).nextCursor
          }
          const opts = cursor === undefined ? { nowMs: NOW } : { nowMs: NOW, cursor }
          const first = runQuery(rowsOf(map), q, opts)
          if (cursor !== undefined) expect(first.cursorStatus).toBe("valid")
          const live = new LiveQuery(q, first.results, first.cursorPosition)
          let previous = first.results

          for (const { key, value } of changes) {
            if (value === undefined) map.delete(key)
            else map.set(key, value)
            const updates = live.onChange(key, value, () => rowsOf(map))
            const expected = runQuery(rowsOf(map), q, opts).results

            if (q.limit !== undefined) expect(live.rows()).toEqual(expected)
            else expect(byKey(live.rows())).toEqual(byKey(expected))

            const want = specUpdates(previous, expected, key, value)
            // LEAVEs first; the same set of messages as the recompute-and-diff algorithm.
            const firstNonLeave = updates.findIndex((u) => u.changeType !== "LEAVE")
            if (firstNonLeave >= 0) expect(updates.slice(firstNonLeave).every((u) => u.changeType !== "LEAVE")).toBe(true)
            expect(updates.length).toBe(want.length)
            expect(new Set(updates.map((u) => JSON.stringify(u)))).toEqual(new Set(want.map((u) => JSON.stringify(u))))
            previous = expected
          }
        }
      ),
      { numRuns: Number(process.env["QUERY_PROPERTY_RUNS"] ?? 400) }
    )
  })
})
