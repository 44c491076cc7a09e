import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  compareValues,
  compileQuery,
  CURSOR_TTL_MS,
  cursorStatus,
  decodeCursor,
  encodeCursor,
  LiveQuery,
  runQuery,
  type CompiledQuery,
  type Row
} from "../../src/query/index.js"
import { initialMap, query, rowsOf } from "./arbitraries.js"

const NOW = 1_700_000_000_000
function compile(query: unknown): CompiledQuery {
  const r = compileQuery(query)
  if (!r.ok) throw new Error(r.error)
  return r.compiled
}
const keys = (rows: readonly Row[]) => rows.map((r) => r.key)

const people: Row[] = [
  { key: "p5", value: { name: "eve", age: 30, city: "B" } },
  { key: "p1", value: { name: "ann", age: 30, city: "A" } },
  { key: "p3", value: { name: "cat", age: 25, city: "B" } },
  { key: "p2", value: { name: "bob", age: 41, city: "A" } },
  { key: "p4", value: { name: "dan", city: "A" } },
  { key: "p6", value: "not an object" }
]

describe("sort (§4.9.3)", () => {
  it("object and array encodings give the same order; ties break by key", () => {
    const objectForm = runQuery(people, compile({ where: {}, sort: { age: "desc", city: "asc" } }), { nowMs: NOW })
    const arrayForm = runQuery(
      people,
      compile({ where: {}, sort: [{ field: "age", direction: "desc" }, { field: "city", direction: "asc" }] }),
      { nowMs: NOW }
    )
    // p1/p5 tie on age; city A < B. p4 has no age: missing sorts first ascending, so last descending.
    expect(keys(objectForm.results)).toEqual(["p2", "p1", "p5", "p3", "p4"])
    expect(keys(arrayForm.results)).toEqual(keys(objectForm.results))
  })

  it("full ties fall back to key ascending, in both directions", () => {
    const rows: Row[] = [
      { key: "b", value: { v: 1 } },
      { key: "c", value: { v: 1 } },
      { key: "a", value: { v: 1 } }
    ]
    expect(keys(runQuery(rows, compile({ sort: { v: "asc" } }), { nowMs: NOW }).results)).toEqual(["a", "b", "c"])
    expect(keys(runQuery(rows, compile({ sort: [{ field: "v", direction: "desc" }] }), { nowMs: NOW }).results)).toEqual(
      ["a", "b", "c"]
    )
  })

  it("strings compare by UTF-16 code units like JavaScript <", () => {
    const rows: Row[] = ["b", "B", "a", "é", "A"].map((s, i) => ({ key: `k${i}`, value: { s } }))
    const sorted = runQuery(rows, compile({ sort: { s: "asc" } }), { nowMs: NOW }).results
    expect(sorted.map((r) => (r.value as { s: string }).s)).toEqual(["A", "B", "a", "b", "é"])
  })

  it("limit without sort orders by key", () => {
    const r = runQuery(people, compile({ limit: 3 }), { nowMs: NOW })
    expect(keys(r.results)).toEqual(["p1", "p2", "p3"])
    expect(r.hasMore).toBe(true)
    expect(r.nextCursor).toBeTypeOf("string")
    expect(r.cursorStatus).toBe("none")
  })

  it("without sort or limit keeps input order and sets no pagination", () => {
    const r = runQuery(people, compile({ where: { city: "A" } }), { nowMs: NOW })
    expect(keys(r.results)).toEqual(["p1", "p2", "p4"])
    expect(r.hasMore).toBe(false)
    expect(r.nextCursor).toBeUndefined()
  })

  it("a limit that covers everything has no more and no cursor", () => {
    const r = runQuery(people, compile({ where: {}, sort: { age: "asc" }, limit: 5 }), { nowMs: NOW })
    expect(r.results).toHaveLength(5)
    expect(r.hasMore).toBe(false)
    expect(r.nextCursor).toBeUndefined()
  })
})

describe("cursors (§4.9.4)", () => {
  const q = compile({ where: {}, sort: { age: "desc" }, limit: 2 })

  it("round-trips in the reference shape (base64url JSON, no padding)", () => {
    const cursor = encodeCursor(q, people[1]!, NOW)
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/)
    const json = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
    expect(json).toMatchObject({
      nodeValues: { local: 30 },
      nodeKeys: { local: "p1" },
      sortField: "age",
      sortDirection: "desc",
      predicateHash: q.predicateHash,
      sortHash: q.sortHash,
      timestamp: NOW
    })
    expect(decodeCursor(cursor)?.position).toMatchObject({ key: "p1", firstValue: 30, descending: true })
    expect(cursorStatus(q, cursor, NOW)).toBe("valid")
  })

  it("pages through every result exactly once", () => {
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = runQuery(people, q, cursor === undefined ? { nowMs: NOW } : { nowMs: NOW, cursor })
      expect(page.cursorStatus).toBe(cursor === undefined ? "none" : "valid")
      seen.push(...keys(page.results))
      cursor = page.nextCursor
      pages++
    } while (cursor !== undefined && pages < 10)
    expect(seen).toEqual(keys(runQuery(people, compile({ where: {}, sort: { age: "desc" } }), { nowMs: NOW }).results))
    expect(pages).toBe(3)
  })

  it("invalid cursors (garbage, other filter, other sort) and expired ones do not filter", () => {
    const first = runQuery(people, q, { nowMs: NOW })
    const cursor = first.nextCursor!
    const otherFilter = compile({ where: { city: "A" }, sort: { age: "desc" }, limit: 2 })
    const otherSort = compile({ where: {}, sort: { age: "asc" }, limit: 2 })
    expect(cursorStatus(q, "!!not base64", NOW)).toBe("invalid")
    expect(cursorStatus(q, Buffer.from("[1,2]").toString("base64url"), NOW)).toBe("invalid")
    expect(cursorStatus(q, Buffer.from("{not json").toString("base64url"), NOW)).toBe("invalid")
    expect(cursorStatus(otherFilter, cursor, NOW)).toBe("invalid")
    expect(cursorStatus(otherSort, cursor, NOW)).toBe("invalid")
    expect(cursorStatus(q, undefined, NOW)).toBe("none")
    expect(cursorStatus(q, cursor, NOW + CURSOR_TTL_MS)).toBe("valid")
    expect(cursorStatus(q, cursor, NOW + CURSOR_TTL_MS + 1)).toBe("expired")

    for (const [status, nowMs, bad] of [
      ["invalid", NOW, "garbage"],
      ["expired", NOW + CURSOR_TTL_MS + 1, cursor]
    ] as const) {
      const r = runQuery(people, q, { nowMs, cursor: bad })
      expect(r.cursorStatus).toBe(status)
      expect(keys(r.results)).toEqual(keys(first.results))
      expect(r.cursorPosition).toBeUndefined()
    }
  })

  it("the query's own cursor is used unless the options override it", () => {
    const cursor = runQuery(people, q, { nowMs: NOW }).nextCursor!
    const withCursor = compile({ where: {}, sort: { age: "desc" }, limit: 2, cursor })
    expect(keys(runQuery(people, withCursor, { nowMs: NOW }).results)).toEqual(["p5", "p3"])
  })

  it("reads reference-format cursors (without sort tuple) with compareValues", () => {
    const rows: Row[] = ["2024-01-03", "2024-01-01", "2024-01-02"].map((d, i) => ({ key: `d${i}`, value: { d } }))
    const byDate = compile({ sort: { d: "asc" }, limit: 1 })
    const reference = Buffer.from(
      JSON.stringify({
        nodeValues: { local: "2024-01-01" },
        nodeKeys: { local: "d1" },
        sortField: "d",
        sortDirection: "asc",
        predicateHash: byDate.predicateHash,
        sortHash: byDate.sortHash,
        timestamp: NOW
      })
    ).toString("base64url")
    const r = runQuery(rows, byDate, { nowMs: NOW, cursor: reference })
    expect(r.cursorStatus).toBe("valid")
    expect(keys(r.results)).toEqual(["d2"])
  })

  it("compareValues: nulls first, numbers, dates, localeCompare, booleans", () => {
    expect(compareValues(null, 0)).toBeLessThan(0)
    expect(compareValues(undefined, null)).toBe(0)
    expect(compareValues(2, 10)).toBeLessThan(0)
    expect(compareValues("2024-02-01", "2024-10-01")).toBeLessThan(0)
    expect(compareValues("b", "a")).toBeGreaterThan(0)
    expect(compareValues(false, true)).toBeLessThan(0)
    expect(compareValues(true, true)).toBe(0)
  })

  it("property: paging with nextCursor returns the unpaged result exactly (no duplicates, no gaps)", () => {
    fc.assert(
      fc.property(query, initialMap, (raw, map) => {
        const compiled = compileQuery({ ...raw, limit: (raw["limit"] as number | undefined) ?? 2 })
        if (!compiled.ok) return
        const paged = compiled.compiled
        const rows = rowsOf(new Map(Object.entries(map)))
        const { limit: _limit, ...unlimitedQuery } = raw
        const all = runQuery(rows, compile(unlimitedQuery), { nowMs: NOW })
        const seen: Row[] = []
        let cursor: string | undefined
        for (let i = 0; i < 20; i++) {
          const page = runQuery(rows, paged, cursor === undefined ? { nowMs: NOW } : { nowMs: NOW, cursor })
          seen.push(...page.results)
          cursor = page.nextCursor
          if (cursor === undefined) break
        }
        expect(new Set(keys(seen)).size).toBe(seen.length)
        expect(new Set(keys(seen))).toEqual(new Set(keys(all.results)))
      }),
      { numRuns: 300 }
    )
  })
})

describe("rows that read their value on demand (stored maps)", () => {
  class CountingRow implements Row {
    static reads = 0
    constructor(readonly key: string, private readonly v: unknown) {}
    get value(): unknown {
      CountingRow.reads++
      return this.v
    }
  }
  const lazy = () => people.map((p) => new CountingRow(p.key, p.value))
  const settle = (row: Row): Row => ({ key: row.key, value: row.value })

  it("an unfiltered, key-ordered query reads only the values it returns, and results are settled", () => {
    CountingRow.reads = 0
    const r = runQuery(lazy(), compile({ limit: 2 }), { nowMs: NOW, settle })
    expect(keys(r.results)).toEqual(["p1", "p2"])
    expect(CountingRow.reads).toBe(2) // by `settle`, for the two results; the scan read none
    for (const row of r.results) expect(row).not.toBeInstanceOf(CountingRow)
    expect(r.results.map((row) => row.value)).toEqual([people[1]!.value, people[3]!.value])
  })

  it("a filter or a value sort reads values, with the same results as plain rows", () => {
    for (const q of [{ where: { city: "A" } }, { sort: { age: "desc" }, limit: 3 }, { where: { age: { $gte: 30 } }, sort: { name: "asc" } }]) {
      CountingRow.reads = 0
      const lazyResult = runQuery(lazy(), compile(q), { nowMs: NOW, settle })
      expect(CountingRow.reads).toBeGreaterThan(lazyResult.results.length)
      expect(lazyResult.results).toEqual(runQuery(people, compile(q), { nowMs: NOW }).results)
    }
  })
})

describe("a live window refilled from rows that read their value on demand", () => {
  it("reads only the value of the row that enters, and keeps a plain copy of it", () => {
    let reads = 0
    class LazyRow implements Row {
      constructor(readonly key: string, private readonly v: unknown) {}
      get value(): unknown {
        reads++
        return this.v
      }
    }
    const data = new Map<string, unknown>([["a", 1], ["b", 2], ["c", 3], ["d", 4]])
    const q = compile({ limit: 2 })
    const first = runQuery([...data].map(([key, value]) => ({ key, value })), q, { nowMs: NOW })
    const live = new LiveQuery(q, first.results, first.cursorPosition)
    data.delete("a")
    reads = 0
    const updates = live.onChange("a", undefined, () => [...data].map(([key, value]) => new LazyRow(key, value)))
    expect(updates).toEqual([{ key: "a", value: null, changeType: "LEAVE" }, { key: "c", value: 3, changeType: "ENTER" }])
    expect(reads).toBe(1) // "c" only: the scan compared keys
    expect(live.rows()).toEqual([{ key: "b", value: 2 }, { key: "c", value: 3 }])
    for (const row of live.rows()) expect(row).not.toBeInstanceOf(LazyRow)
  })
})
