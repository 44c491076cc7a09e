import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { LwwPage } from "../../src/layers/storage/lww-page.js"

/** A page as SQLite's json_group_array(json_array(…, json(value), …)) writes it: values embedded as JSON. */
const pageText = (rows: ReadonlyArray<readonly [string, unknown, number, number, string, number | null, number, number, string]>): string =>
  `[${rows.map(([k, v, ...rest]) => `[${JSON.stringify(k)},${v === null ? "null" : JSON.stringify(v)},${rest.map((x) => JSON.stringify(x)).join(",")}]`).join(",")}]`

const arbRow = fc.tuple(
  fc.oneof(fc.string(), fc.string({ unit: "grapheme" }), fc.constantFrom('q"uote', "back\\slash", "new\nline", "tab\t", "\u0001ctl", "ünï", "😀")),
  fc.oneof(fc.constant(null), fc.jsonValue().filter((v) => v !== null)),
  fc.integer({ min: 0, max: 2 ** 47 }),
  fc.nat(),
  fc.constantFrom("node-a", "node-b", "n\"q"),
  fc.option(fc.nat(), { nil: null }),
  fc.maxSafeNat(),
  fc.nat(),
  fc.constantFrom("srv", "node-a")
)

describe("LwwPage: rows read in place from SQLite's JSON page", () => {
  it("yields exactly what JSON.parse would, with each value as its own JSON text", () => {
    fc.assert(
      fc.property(fc.array(arbRow, { maxLength: 30 }), (rows) => {
        const text = pageText(rows)
        const page = new LwwPage(text, rows.length)
        const parsed = JSON.parse(text) as Array<Array<unknown>>
        const got = page.rows
        expect(got).toHaveLength(parsed.length)
        got.forEach((row, i) => {
          const want = parsed[i]!
          expect(row[0]).toBe(want[0])
          expect(row[1] === null ? null : JSON.parse(row[1])).toEqual(want[1])
          expect(row.slice(2)).toEqual(want.slice(2))
        })
      }),
      { numRuns: 300 }
    )
  })

  it("reuses the previous row's node id string", () => {
    const text = pageText([["a", 1, 1, 0, "node-a", null, 1, 0, "srv"], ["b", 2, 2, 0, "node-a", null, 2, 0, "srv"]])
    const ids: string[] = []
    new LwwPage(text, 2).scan((_k, _t, _vs, _ve, _m, _c, nodeId, _ttl, _sm, _sc, storedNodeId) => ids.push(nodeId, storedNodeId))
    expect(ids).toEqual(["node-a", "srv", "node-a", "srv"])
  })

  it("reads numbers beyond 15 digits, fractions and exponents as Number does", () => {
    const text = '[["k",1,12345678901234567,1.5,"n",1e3,-7,0,"s"]]'
    expect(new LwwPage(text, 1).rows[0]!.slice(2)).toEqual([12345678901234567, 1.5, "n", 1000, -7, 0, "s"])
  })

  it("throws on text that is not a page of well-formed rows", () => {
    for (const bad of ["", "[", '[["k",1,1,0,"n",null,1,0,"s"]', '[["k",1,1,0,"n",null,1,0]]', '[["k",{"a":1,1,0,"n",null,1,0,"s"]]', '[[1,1,1,0,"n",null,1,0,"s"]]', '[["k",1,x,0,"n",null,1,0,"s"]]', '[["k,1,1,0]]']) {
      expect(() => new LwwPage(bad, 1).rows, bad).toThrow()
    }
    expect(new LwwPage("[]", 0).rows).toEqual([])
  })
})
