import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { FullTextIndex, tokenize, type SearchHit, type SearchOptions } from "../../src/search/index.js"

const k1 = 1.2
const b = 0.75
const idf = (n: number, df: number) => Math.log((n - df + 0.5) / (df + 0.5) + 1)
const bm25 = (n: number, df: number, tf: number, dl: number, avgdl: number) =>
  idf(n, df) * ((tf * (k1 + 1)) / (tf + k1 * (1 - b + b * (dl / avgdl))))

const build = (docs: Record<string, unknown>, fields?: string[]) => {
  const index = new FullTextIndex(fields)
  for (const [key, value] of Object.entries(docs)) index.upsert(key, value)
  return index
}

/** Corpus: d1 [quick, brown, fox] (dl 3), d2 [quick, quick, dog] (dl 3), d3 [lazi, dog] (dl 2); N 3, avgdl 8/3. */
const corpus = {
  d1: { text: "The quick brown fox" },
  d2: { text: "quick, QUICK dog!" },
  d3: { text: "a lazy dog" }
}

describe("FullTextIndex BM25 scores (hand-computed)", () => {
  const index = build(corpus)

  it("counts indexed documents", () => {
    expect(index.size).toBe(3)
  })

  it("scores a single-term query", () => {
    const hits = index.search("quick")
    expect(hits.map((h) => h.key)).toEqual(["d2", "d1"])
    expect(hits[0]!.score).toBeCloseTo(bm25(3, 2, 2, 3, 8 / 3), 12)
    expect(hits[1]!.score).toBeCloseTo(bm25(3, 2, 1, 3, 8 / 3), 12)
    expect(hits[0]!.score).toBeCloseTo(0.6243067075, 9) // ln 1.6 · 4.4 / (2 + 1.2 · 1.09375)
    expect(hits[0]!.matchedTerms).toEqual(["quick"])
  })

  it("sums over query tokens, duplicates counted again", () => {
    const hits = index.search("dog fox")
    const d1 = bm25(3, 1, 1, 3, 8 / 3)
    const d2 = bm25(3, 2, 1, 3, 8 / 3)
    const d3 = bm25(3, 2, 1, 2, 8 / 3)
    expect(hits.map((h) => [h.key, h.matchedTerms])).toEqual([
      ["d1", ["fox"]],
      ["d3", ["dog"]],
      ["d2", ["dog"]]
    ])
    expect(hits.map((h) => h.score)).toEqual([d1, d3, d2].map((s) => expect.closeTo(s, 12)))

    const twice = index.search("fox dog foxes")
    expect(twice.find((h) => h.key === "d1")!.score).toBeCloseTo(2 * d1, 12)
    expect(twice.find((h) => h.key === "d1")!.matchedTerms).toEqual(["fox"])
  })

  it("matchedTerms are the distinct query tokens present, in query order", () => {
    const [top] = index.search("dogs quick dog")
    expect(top!.key).toBe("d2")
    expect(top!.matchedTerms).toEqual(["dog", "quick"])
    expect(top!.score).toBeCloseTo(2 * bm25(3, 2, 1, 3, 8 / 3) + bm25(3, 2, 2, 3, 8 / 3), 12)
  })

  it("empty, stopword-only and unknown queries return nothing", () => {
    expect(index.search("")).toEqual([])
    expect(index.search("the and of a")).toEqual([])
    expect(index.search("!!! ,,,")).toEqual([])
    expect(index.search("zebra")).toEqual([])
    expect(new FullTextIndex().search("quick")).toEqual([])
  })

  it("minScore keeps score >= minScore", () => {
    const all = index.search("dog fox")
    expect(index.search("dog fox", { minScore: all[1]!.score }).map((h) => h.key)).toEqual(["d1", "d3"])
    expect(index.search("dog fox", { minScore: 100 })).toEqual([])
  })

  it("limit caps the result count when > 0; no default limit", () => {
    expect(index.search("dog fox", { limit: 1 }).map((h) => h.key)).toEqual(["d1"])
    expect(index.search("dog fox", { limit: 0 })).toHaveLength(3)
    expect(index.search("dog fox", { limit: -5 })).toHaveLength(3)
    const big = new FullTextIndex()
    for (let i = 0; i < 250; i++) big.upsert(`k${i}`, { t: "needle" })
    expect(big.search("needle")).toHaveLength(250)
  })

  it("heap (small limit) and full ordering (large limit) agree with the unlimited order", () => {
    const index = new FullTextIndex()
    for (let i = 0; i < 1500; i++) index.upsert(`k${(i * 7919) % 1500}`, { t: `needle ${"hay ".repeat(i % 4)}${i % 3 === 0 ? "needle" : ""}` })
    const all = index.search("needle")
    expect(all).toHaveLength(1500)
    for (let i = 1; i < all.length; i++) {
      const [p, c] = [all[i - 1]!, all[i]!]
      expect(p.score > c.score || (p.score === c.score && p.key < c.key)).toBe(true)
    }
    expect(index.search("needle", { limit: 7 })).toEqual(all.slice(0, 7))
    expect(index.search("needle", { limit: 1200 })).toEqual(all.slice(0, 1200))
  })

  it("ties are ordered by key ascending", () => {
    const ties = build({ b: { t: "same words" }, C: { t: "same words" }, a: { t: "same words" }, aa: { t: "same words" } })
    expect(ties.search("words").map((h) => h.key)).toEqual(["C", "a", "aa", "b"])
  })
})

describe("FullTextIndex documents and fields", () => {
  it("only object values with at least one token are documents", () => {
    const index = build({ s: "quick", n: 42, nil: null, arr: ["quick"], empty: { t: "the of" }, num: { t: 5 }, ok: { t: "quick" } })
    expect(index.size).toBe(1)
    expect(index.search("quick").map((h) => h.key)).toEqual(["ok"])
  })

  it("indexes every top-level string property without configuration, nothing nested", () => {
    const index = build({ x: { a: "alpha", b: "beta", nested: { c: "gamma" }, n: 1 } })
    expect(index.search("alpha beta gamma")[0]!.matchedTerms).toEqual(["alpha", "beta"])
  })

  it("indexes only configured fields when configured", () => {
    const index = build({ x: { title: "alpha", body: "beta", other: "gamma" } }, ["title", "body"])
    expect(index.search("alpha beta gamma")[0]!.matchedTerms).toEqual(["alpha", "beta"])
    expect(index.search("gamma")).toEqual([])
  })

  it("statistics are combined over fields (tf of a term in two fields adds up)", () => {
    const split = build({ x: { title: "apple", body: "apple pie" }, y: { title: "pie" } }, ["title", "body"])
    const single = build({ x: { t: "apple apple pie" }, y: { t: "pie" } })
    expect(split.search("apple pie")).toEqual(single.search("apple pie"))
    const [x] = split.search("apple")
    expect(x!.score).toBeCloseTo(bm25(2, 1, 2, 3, 2), 12)
  })

  it("upsert replaces and remove deletes, updating N/avgdl/df", () => {
    const index = build(corpus)
    index.upsert("d1", { text: "dog" })
    index.remove("d3")
    index.remove("missing")
    expect(index.size).toBe(2)
    // d1 [dog] dl 1, d2 [quick quick dog] dl 3; avgdl 2, df(dog) 2
    const hits = index.search("dog")
    expect(hits.map((h) => h.key)).toEqual(["d1", "d2"])
    expect(hits[0]!.score).toBeCloseTo(bm25(2, 2, 1, 1, 2), 12)
    index.upsert("d2", "not a document")
    expect(index.size).toBe(1)
    expect(index.search("quick")).toEqual([])
  })
})

describe("FullTextIndex boost", () => {
  const docs = {
    a: { title: "apple", body: "banana cherry" },
    b: { title: "banana", body: "apple apple" }
  }
  // title: N 2, avgdl 1, df(apple) 1; body: N 2, avgdl 2, df(apple) 1
  const aTitle = bm25(2, 1, 1, 1, 1)
  const bBody = bm25(2, 1, 2, 2, 2)

  it("scores each field with its own statistics and weights it", () => {
    const index = build(docs, ["title", "body"])
    const neutral = index.search("apple", { boost: { title: 1 } })
    expect(neutral.map((h) => [h.key, h.score])).toEqual([
      ["b", expect.closeTo(bBody, 12)],
      ["a", expect.closeTo(aTitle, 12)]
    ])
    const boosted = index.search("apple", { boost: { title: 2 } })
    expect(boosted.map((h) => [h.key, h.score])).toEqual([
      ["a", expect.closeTo(2 * aTitle, 12)],
      ["b", expect.closeTo(bBody, 12)]
    ])
  })

  it("matchedTerms is the union over fields: field order, then query order", () => {
    const index = build(docs, ["title", "body"])
    const [top] = index.search("cherry banana apple", { boost: { body: 3 } })
    expect(top!.key).toBe("a")
    expect(top!.matchedTerms).toEqual(["appl", "cherri", "banana"])
  })

  it("an empty boost object means the combined statistics", () => {
    const index = build(docs, ["title", "body"])
    expect(index.search("apple banana", { boost: {} })).toEqual(index.search("apple banana"))
  })

  it("works with discovered fields, minScore and limit", () => {
    const index = build(docs)
    const hits = index.search("apple", { boost: { title: 2 }, minScore: 2 * aTitle - 1e-9, limit: 5 })
    expect(hits.map((h) => h.key)).toEqual(["a"])
  })
})

// ---- Property: incremental maintenance equals a rebuild and a from-scratch model ------------------------

const WORDS = ["apple", "apples", "banana", "cherry", "dog", "dogs", "running", "run", "the", "of", "quick", "x", "zeta"]
const text = fc.array(fc.constantFrom(...WORDS), { maxLength: 6 }).map((ws) => ws.join(" "))
const value = fc.oneof(
  { weight: 6, arbitrary: fc.record({ title: text, body: text }, { requiredKeys: [] }) },
  { weight: 2, arbitrary: fc.record({ body: text, extra: text, n: fc.integer() }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.constantFrom(null, 7, "apple", ["apple"]) }
)
const op = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constant("upsert" as const), fc.integer({ min: 0, max: 7 }), value) },
  { weight: 1, arbitrary: fc.tuple(fc.constant("remove" as const), fc.integer({ min: 0, max: 7 }), fc.constant(undefined)) }
)
const query = fc.array(fc.constantFrom(...WORDS), { minLength: 1, maxLength: 4 }).map((ws) => ws.join(" "))
const options = fc.record(
  {
    limit: fc.integer({ min: -1, max: 4 }),
    minScore: fc.double({ min: 0, max: 2, noNaN: true }),
    boost: fc.dictionary(fc.constantFrom("title", "body", "extra"), fc.double({ min: 0.5, max: 3, noNaN: true }), {
      maxKeys: 2
    })
  },
  { requiredKeys: [] }
)

/** BM25 straight from the spec over the final documents (no index structures). */
function modelSearch(docs: Map<string, unknown>, fields: string[] | undefined, q: string, opts: SearchOptions): SearchHit[] {
  const tokens = tokenize(q)
  if (tokens.length === 0) return []
  const perField = new Map<string, Map<string, string[]>>() // field → key → tokens
  const combined = new Map<string, string[]>()
  for (const [key, v] of docs) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) continue
    const all: string[] = []
    for (const f of fields ?? Object.keys(v)) {
      const t = (v as Record<string, unknown>)[f]
      if (typeof t !== "string") continue
      const ts = tokenize(t)
      if (ts.length === 0) continue
      if (!perField.has(f)) perField.set(f, new Map())
      perField.get(f)!.set(key, ts)
      all.push(...ts)
    }
    if (all.length > 0) combined.set(key, all)
  }
  const score = (coll: Map<string, string[]>) => {
    const n = coll.size
    const avgdl = [...coll.values()].reduce((s, t) => s + t.length, 0) / n
    const out = new Map<string, { score: number; terms: string[] }>()
    for (const [key, ts] of coll) {
      let s = 0
      const terms: string[] = []
      for (const q of tokens) {
        const tf = ts.filter((t) => t === q).length
        if (tf === 0) continue
        const df = [...coll.values()].filter((d) => d.includes(q)).length
        s += bm25(n, df, tf, ts.length, avgdl)
        if (!terms.includes(q)) terms.push(q)
      }
      if (terms.length > 0) out.set(key, { score: s, terms })
    }
    return out
  }
  let hits: SearchHit[]
  if (opts.boost !== undefined && Object.keys(opts.boost).length > 0) {
    const acc = new Map<string, { key: string; score: number; matchedTerms: string[] }>()
    const order = fields ?? [...perField.keys()].sort()
    for (const f of order) {
      const coll = perField.get(f)
      if (coll === undefined) continue
      for (const [key, r] of score(coll)) {
        const hit: { key: string; score: number; matchedTerms: string[] } = acc.get(key) ?? { key, score: 0, matchedTerms: [] }
        hit.score += r.score * (opts.boost[f] ?? 1)
        for (const t of r.terms) if (!hit.matchedTerms.includes(t)) hit.matchedTerms.push(t)
        acc.set(key, hit)
      }
    }
    hits = [...acc.values()]
  } else {
    hits = [...score(combined)].map(([key, r]) => ({ key, score: r.score, matchedTerms: r.terms }))
  }
  hits = hits.filter((h) => opts.minScore === undefined || h.score >= opts.minScore)
  hits.sort((x, y) => y.score - x.score || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0))
  return opts.limit !== undefined && opts.limit > 0 ? hits.slice(0, opts.limit) : hits
}

const sameHits = (actual: SearchHit[], expected: SearchHit[]) => {
  expect(actual.map((h) => h.key)).toEqual(expected.map((h) => h.key))
  actual.forEach((h, i) => {
    expect(h.score).toBeCloseTo(expected[i]!.score, 9)
    expect(h.matchedTerms).toEqual(expected[i]!.matchedTerms)
  })
}

describe("FullTextIndex incremental maintenance (property)", () => {
  for (const fields of [undefined, ["title", "body"]]) {
    it(`equals a rebuilt index and the spec model (fields: ${fields?.join(",") ?? "discovered"})`, () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 40 }), fc.array(fc.tuple(query, options), { minLength: 1, maxLength: 4 }), (ops, queries) => {
          const incremental = new FullTextIndex(fields)
          const finalDocs = new Map<string, unknown>()
          for (const [kind, k, v] of ops) {
            const key = `k${k}`
            if (kind === "upsert") {
              incremental.upsert(key, v)
              finalDocs.set(key, v)
            } else {
              incremental.remove(key)
              finalDocs.delete(key)
            }
          }
          const rebuilt = new FullTextIndex(fields)
          for (const [key, v] of [...finalDocs].reverse()) rebuilt.upsert(key, v)
          expect(incremental.size).toBe(rebuilt.size)
          for (const [q, opts] of queries) {
            const got = incremental.search(q, opts)
            sameHits(got, rebuilt.search(q, opts))
            sameHits(got, modelSearch(finalDocs, fields, q, opts))
            // Live-update scores equal unboosted search scores.
            for (const hit of incremental.search(q)) {
              expect(incremental.scoreDocument(hit.key, tokenize(q))).toEqual({ score: hit.score, matchedTerms: hit.matchedTerms })
            }
          }
        }),
        { numRuns: 300 }
      )
    })
  }
})
