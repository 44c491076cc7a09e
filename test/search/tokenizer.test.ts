import { describe, expect, it } from "vitest"
import { STOPWORDS, tokenize } from "../../src/search/index.js"

describe("tokenize (protocol §4.10)", () => {
  it("lower-cases, splits on non letter/number runs and stems", () => {
    expect(tokenize("The Running DOGS, jumped!")).toEqual(["run", "dog", "jump"])
    expect(tokenize("foo_bar-baz.qux")).toEqual(["foo", "bar", "baz", "qux"])
  })

  it("keeps Unicode letters and numbers", () => {
    expect(tokenize("Привет, мир! 東京 2024 v8")).toEqual(["привет", "мир", "東京", "2024", "v8"])
    expect(tokenize("naïve café")).toEqual(["naïv", "café"])
    // A combining mark is neither a letter nor a number, so it separates.
    expect(tokenize("cafe\u0301s")).toEqual(["cafe"])
  })

  it("drops words shorter than 2 and stopwords", () => {
    expect(tokenize("a b c x y z 7")).toEqual([])
    expect(tokenize("I don't know what you were thinking")).toEqual(["don", "know", "think"])
    expect(tokenize("the and of to")).toEqual([])
  })

  it("drops stems longer than 40 and keeps 40", () => {
    expect(tokenize("b".repeat(41))).toEqual([])
    expect(tokenize("b".repeat(40))).toEqual(["b".repeat(40)])
  })

  it("drops stems that became shorter than 2", () => {
    // "ies" → step 1a → "i"
    expect(tokenize("ies ties")).toEqual(["ti"])
  })

  it("keeps duplicates (they are term frequencies)", () => {
    expect(tokenize("cat cats CAT")).toEqual(["cat", "cat", "cat"])
  })

  it("has the exact stopword list", () => {
    // Copied verbatim from protocol §4.10.
    const spec =
      "a an the i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it its itself they them their theirs themselves what which who whom this that these those am is are was were be been being have has had having do does did doing will would shall should can could may might must ought about above across after against along among around at before behind below beneath beside between beyond by down during except for from in inside into near of off on onto out outside over past since through throughout to toward towards under underneath until up upon with within without and but or nor so yet both either neither not only as if than when while although because unless whether here there where how why all each every any some no none more most other such own same too very just also now then again ever once few many much several s t d ll m ve re"
    expect([...STOPWORDS].sort()).toEqual([...new Set(spec.split(" "))].sort())
    expect(STOPWORDS.size).toBe(172)
    for (const w of ["a", "ought", "throughout", "neither", "ve", "re", "ll", "several"]) expect(STOPWORDS.has(w)).toBe(true)
    for (const w of ["search", "data", "not_a_word", "nobody"]) expect(STOPWORDS.has(w)).toBe(false)
  })
})
