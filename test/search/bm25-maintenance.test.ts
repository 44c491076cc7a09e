import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { FullTextIndex, tokenize, type SearchOptions } from "../../src/search/index.js"

const rebuild = (docs: Map<string, unknown>, fields?: string[]) => {
  const index = new FullTextIndex(fields)
  for (const [key, value] of docs) index.upsert(key, value)
  return index
}

/** Retained postings (live + empty), read for the memory bound only. */
const postingCount = (index: FullTextIndex) => (index as unknown as { postings: Map<string, unknown> }).postings.size

// Few words over few fields, so replacements keep, move and drop terms between fields of the same document.
const WORDS = ["apple", "apples", "pie", "dog", "dogs", "run", "running", "zeta", "the"]
const text = fc.array(fc.constantFrom(...WORDS), { maxLength: 5 }).map((ws) => ws.join(" "))
const value = fc.oneof(
  { weight: 8, arbitrary: fc.record({ title: text, body: text, extra: text }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.constantFrom(null, 3, "apple") }
)
const op = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.option(value, { freq: 6 }))
const query = fc.array(fc.constantFrom(...WORDS), { minLength: 1, maxLength: 3 }).map((ws) => ws.join(" "))
const OPTIONS: SearchOptions[] = [{}, { limit: 2 }, { boost: { title: 2 } }, { boost: { body: 0.5, extra: 3 }, minScore: 0.1 }]

describe("FullTextIndex in-place maintenance", () => {
  for (const fields of [undefined, ["title", "body", "extra"]]) {
    it(`upserts/removes give bit-identical results to a rebuild (fields: ${fields?.join(",") ?? "discovered"})`, () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 30 }), fc.array(query, { minLength: 1, maxLength: 3 }), (ops, queries) => {
          const index = new FullTextIndex(fields)
          const docs = new Map<string, unknown>()
          for (const [k, v] of ops) {
            const key = `k${k}`
            if (v === null) {
              index.remove(key)
              docs.delete(key)
            } else {
              index.upsert(key, v)
              docs.set(key, v)
            }
          }
          const rebuilt = rebuild(docs, fields)
          expect(index.size).toBe(rebuilt.size)
          for (let k = 0; k < 4; k++) expect(index.has(`k${k}`)).toBe(rebuilt.has(`k${k}`))
          for (const q of queries) {
            for (const options of OPTIONS) expect(index.search(q, options)).toEqual(rebuilt.search(q, options))
            for (const key of docs.keys()) expect(index.scoreDocument(key, tokenize(q))).toEqual(rebuilt.scoreDocument(key, tokenize(q)))
          }
        }),
        { numRuns: 300 }
      )
    })
  }

  it("a term whose last document left is absent (df 0), and counts again when it returns", () => {
    const index = new FullTextIndex()
    index.upsert("a", { t: "zebra apple" })
    index.upsert("b", { t: "apple pie" })
    index.upsert("a", { t: "apple" })
    expect(index.search("zebra")).toEqual([])
    expect(index.search("zebra apple")).toEqual(rebuild(new Map([["a", { t: "apple" }], ["b", { t: "apple pie" }]])).search("zebra apple"))
    expect(index.search("zebra apple", { boost: { t: 2 } }).every((hit) => !hit.matchedTerms.includes("zebra"))).toBe(true)

    index.upsert("b", { t: "zebra" })
    const expected = rebuild(new Map<string, unknown>([["a", { t: "apple" }], ["b", { t: "zebra" }]]))
    expect(index.search("zebra apple")).toEqual(expected.search("zebra apple"))
    expect(index.search("zebra")[0]!.score).toBe(expected.search("zebra")[0]!.score)
  })

  it("a term kept in one field and dropped from another still counts the document once", () => {
    const index = new FullTextIndex(["title", "body"])
    index.upsert("x", { title: "apple pie", body: "apple" })
    index.upsert("y", { title: "dog" })
    index.upsert("x", { title: "pie", body: "apple apple" })
    const expected = rebuild(new Map<string, unknown>([["x", { title: "pie", body: "apple apple" }], ["y", { title: "dog" }]]), ["title", "body"])
    for (const q of ["apple", "pie apple", "dog"]) {
      expect(index.search(q)).toEqual(expected.search(q))
      expect(index.search(q, { boost: { body: 2 } })).toEqual(expected.search(q, { boost: { body: 2 } }))
    }
  })

  it("retains empty postings only up to a bound, and stays correct across sweeps", () => {
    const index = new FullTextIndex()
    index.upsert("stable", { t: "common words here" })
    for (let i = 0; i < 5000; i++) index.upsert("churn", { t: `common unique${i.toString(36)}x` })
    // Live terms: common, word, here, one unique; empties are swept once they exceed 1024 and outnumber live ones.
    expect(postingCount(index)).toBeLessThanOrEqual(4 + 1025)
    const docs = new Map<string, unknown>([["stable", { t: "common words here" }], ["churn", { t: `common unique${(4999).toString(36)}x` }]])
    expect(index.search(`common here unique${(4999).toString(36)}x unique0x`)).toEqual(rebuild(docs).search(`common here unique${(4999).toString(36)}x unique0x`))
    index.clear()
    expect(index.size).toBe(0)
    expect(postingCount(index)).toBe(0)
    expect(index.search("common")).toEqual([])
  })

  it("postings grow past their initial capacity and shrink back correctly", () => {
    const index = new FullTextIndex()
    for (let i = 0; i < 100; i++) index.upsert(`k${i}`, { t: i % 2 === 0 ? "needle hay" : "needle" })
    for (let i = 0; i < 100; i += 3) index.remove(`k${i}`)
    const docs = new Map<string, unknown>()
    for (let i = 0; i < 100; i++) if (i % 3 !== 0) docs.set(`k${i}`, { t: i % 2 === 0 ? "needle hay" : "needle" })
    expect(index.search("needle hay")).toEqual(rebuild(docs).search("needle hay"))
  })

  it("compacts dead entries: many rewrites of a few documents keep postings near their live size and results exact", () => {
    const index = new FullTextIndex(["title", "body"])
    const docs = new Map<string, unknown>()
    const words = ["apple", "pie", "dog", "run", "zeta", "blue", "sky"]
    for (let i = 0; i < 3000; i++) {
      const key = `k${i % 5}`
      const doc = { title: `${words[i % 7]} apple`, body: `${words[(i * 3) % 7]} ${words[(i * 5) % 7]} apple` }
      index.upsert(key, doc)
      docs.set(key, doc)
      if (i % 500 === 499) {
        const rebuilt = rebuild(docs, ["title", "body"])
        for (const q of ["apple", "pie dog", "zeta sky blue", "run apple"]) {
          expect(index.search(q)).toEqual(rebuilt.search(q))
          expect(index.search(q, { boost: { body: 2 } })).toEqual(rebuilt.search(q, { boost: { body: 2 } }))
        }
      }
    }
    // "apple" is in both fields of every document: 10 live entries; dead ones are dropped once they reach half as many.
    const apple = (index as unknown as { postings: Map<string, { count: number; dead: number }> }).postings.get("appl")!
    expect(apple.count - apple.dead).toBe(10)
    expect(apple.count).toBeLessThanOrEqual(15 + 2)
  })

  it("retires an ordinal whose version is exhausted and keeps the document findable", () => {
    const index = new FullTextIndex()
    index.upsert("a", { t: "apple pie" })
    index.upsert("b", { t: "apple dog" })
    const internals = index as unknown as { docVersions: Int32Array; ordByKey: Map<string, number> }
    const ord = internals.ordByKey.get("a")!
    internals.docVersions[ord] = 0x7fffffff - 1
    index.upsert("a", { t: "apple zeta" })
    expect(internals.ordByKey.get("a")).not.toBe(ord)
    index.upsert("c", { t: "zeta" })
    expect(internals.ordByKey.get("c")).not.toBe(ord)
    const expected = rebuild(new Map<string, unknown>([["a", { t: "apple zeta" }], ["b", { t: "apple dog" }], ["c", { t: "zeta" }]]))
    for (const q of ["apple", "zeta", "pie", "dog zeta"]) expect(index.search(q)).toEqual(expected.search(q))
  })

  it("finds a word again after its posting was swept (the word → posting table is emptied with the postings)", () => {
    const index = new FullTextIndex()
    index.upsert("keep", { t: "common" })
    index.upsert("churn", { t: "comeback" })
    for (let i = 0; i < 3000; i++) index.upsert("churn", { t: `filler${i.toString(36)}x` })
    expect(postingCount(index)).toBeLessThan(1500)
    index.upsert("churn", { t: "comeback common" })
    expect(index.search("comeback").map((hit) => hit.key)).toEqual(["churn"])
    expect(index.search("comeback common")).toEqual(
      rebuild(new Map<string, unknown>([["keep", { t: "common" }], ["churn", { t: "comeback common" }]])).search("comeback common")
    )
  })
})
