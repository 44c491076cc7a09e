import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { STOPWORDS, stem } from "../../src/search/index.js"
import { tokenize, tokenizeInto } from "../../src/search/tokenizer.js"

/** Protocol §4.10 written out literally (no memo, no ASCII fast path). */
const specTokenize = (text: string): string[] =>
  text
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((word) => word.length >= 2 && !STOPWORDS.has(word))
    .map(stem)
    .filter((token) => token.length >= 2 && token.length <= 40)

const asciiText = fc.string({ unit: fc.constantFrom(..."aAbBeEiIsSnNgGdDyY019 _-.,!'\t\n"), maxLength: 60 })
const wordyText = fc
  .array(fc.constantFrom("Running", "RUNS", "the", "The", "cats", "Cat", "ies", "a1", "X", "naïve", "Café", "東京", "İstanbul", "ß"), { maxLength: 10 })
  .map((words) => words.join(" "))

describe("tokenize fast path (ASCII) equals the §4.10 definition", () => {
  it("on ASCII text, any case and separators", () => {
    fc.assert(fc.property(asciiText, (text) => {
      expect(tokenize(text)).toEqual(specTokenize(text))
    }), { numRuns: 500 })
  })

  it("on text mixing ASCII and non-ASCII words (falls back to the Unicode path)", () => {
    fc.assert(fc.property(wordyText, (text) => {
      expect(tokenize(text)).toEqual(specTokenize(text))
    }), { numRuns: 300 })
    fc.assert(fc.property(fc.string({ maxLength: 30 }), (text) => {
      expect(tokenize(text)).toEqual(specTokenize(text))
    }), { numRuns: 300 })
  })

  it("the word memo is case-insensitive and exact (no prefix or length confusion)", () => {
    expect(tokenize("RUNNING running Running")).toEqual(["run", "run", "run"])
    expect(tokenize("run runn running runnings")).toEqual(specTokenize("run runn running runnings"))
    expect(tokenize("ab abc AB")).toEqual(["ab", "abc", "ab"])
  })

  it("stays correct after the word memo fills up and is cleared", () => {
    const words = Array.from({ length: 40_000 }, (_, i) => `w${i.toString(36)}x`)
    const text = words.join(" ")
    expect(tokenize(text)).toEqual(specTokenize(text))
    expect(tokenize("Running DOGS")).toEqual(["run", "dog"])
  })

  it("tokenizeInto overwrites a reused scratch array from index 0 and returns the count", () => {
    const scratch = ["stale", "stale", "stale", "stale"]
    expect(tokenizeInto("Quick dogs", scratch)).toBe(2)
    expect(scratch.slice(0, 2)).toEqual(["quick", "dog"])
    expect(tokenizeInto("naïve café dogs", scratch)).toBe(3)
    expect(scratch.slice(0, 3)).toEqual(["naïv", "café", "dog"])
  })
})
