import { describe, expect, it } from "vitest"
import { FullTextIndex, LiveSearch, tokenize } from "../../src/search/index.js"

/** Applies a change to the index first (as the server does), then asks the subscription. */
const change = (index: FullTextIndex, live: LiveSearch, key: string, value: unknown) => {
  if (value === undefined) index.remove(key)
  else index.upsert(key, value)
  return live.onChange(key, value, index)
}

const subscribe = (index: FullTextIndex, query: string, opts: { minScore?: number; limit?: number } = {}) =>
  new LiveSearch(tokenize(query), opts, index.search(query, opts))

describe("LiveSearch (protocol §4.10 live updates)", () => {
  it("ENTER when a document starts matching, with its single-document score", () => {
    const index = new FullTextIndex()
    index.upsert("a", { t: "red apple" })
    const live = subscribe(index, "banana")
    expect(live.size).toBe(0)
    const ev = change(index, live, "b", { t: "yellow banana" })
    expect(ev).toEqual({ changeType: "ENTER", score: index.search("banana")[0]!.score, matchedTerms: ["banana"] })
    expect(ev!.score).toBeGreaterThan(0)
    expect(live.has("b")).toBe(true)
  })

  it("UPDATE when a matching document changes and still matches (even with the same score)", () => {
    const index = new FullTextIndex()
    index.upsert("a", { t: "apple pie" })
    index.upsert("b", { t: "cherry" })
    const live = subscribe(index, "apple cherry")
    expect(live.size).toBe(2)
    const ev = change(index, live, "a", { t: "apple cherry" })
    expect(ev?.changeType).toBe("UPDATE")
    expect(ev?.matchedTerms).toEqual(["appl", "cherri"])
    expect(ev?.score).toBeCloseTo(index.search("apple cherry").find((h) => h.key === "a")!.score, 12)
    expect(change(index, live, "a", { t: "apple cherry", other: 1 })?.changeType).toBe("UPDATE")
  })

  it("LEAVE on removal, on losing the terms and on turning into a non-document", () => {
    const index = new FullTextIndex()
    for (const k of ["a", "b", "c"]) index.upsert(k, { t: "apple" })
    const live = subscribe(index, "apple")
    expect(change(index, live, "a", undefined)).toEqual({ changeType: "LEAVE", score: 0, matchedTerms: [] })
    expect(change(index, live, "b", { t: "pear" })).toEqual({ changeType: "LEAVE", score: 0, matchedTerms: [] })
    expect(change(index, live, "c", "apple")).toEqual({ changeType: "LEAVE", score: 0, matchedTerms: [] })
    expect(live.size).toBe(0)
  })

  it("nothing when a non-matching key stays outside", () => {
    const index = new FullTextIndex()
    const live = subscribe(index, "apple")
    expect(change(index, live, "x", { t: "pear" })).toBeUndefined()
    expect(change(index, live, "x", undefined)).toBeUndefined()
    expect(change(index, live, "y", null)).toBeUndefined()
  })

  it("minScore gates ENTER and turns a falling score into LEAVE", () => {
    const index = new FullTextIndex()
    index.upsert("a", { t: "apple" })
    index.upsert("z", { t: "zeta" })
    const threshold = 0.5
    const live = subscribe(index, "apple", { minScore: threshold })
    expect(live.has("a")).toBe(true) // ln(1 + 1.5/1.5) · 1 ≈ 0.69
    // A document full of other words scores lower (long dl), below the threshold.
    const long = { t: "apple " + "filler ".repeat(40) }
    expect(change(index, live, "b", long)).toBeUndefined()
    expect(index.scoreDocument("b", tokenize("apple"))!.score).toBeLessThan(threshold)
    expect(change(index, live, "a", long)?.changeType).toBe("LEAVE")
  })

  it("ignores the subscription limit", () => {
    const index = new FullTextIndex()
    index.upsert("a", { t: "apple" })
    index.upsert("b", { t: "apple" })
    const live = subscribe(index, "apple", { limit: 1 })
    expect(live.size).toBe(1)
    expect(change(index, live, "c", { t: "apple" })?.changeType).toBe("ENTER")
    // "b" was outside the initial (limited) results, so its change is an ENTER as well.
    expect(change(index, live, "b", { t: "apple" })?.changeType).toBe("ENTER")
  })

  it("a stopword-only query never matches", () => {
    const index = new FullTextIndex()
    const live = subscribe(index, "the of")
    expect(change(index, live, "a", { t: "the of" })).toBeUndefined()
  })
})
