import { afterEach, describe, expect, it, vi } from "vitest"
import { compileLikePattern, compileQuery, compileRegexPattern } from "../../src/query/index.js"

describe("user patterns run in linear time", () => {
  afterEach(() => vi.restoreAllMocks())

  // With a backtracking engine each of these inputs needs ~2^n steps (n in the tens of thousands): the
  // test could not finish. Completing at all shows the engine does not backtrack.
  it("catastrophic regexes answer on long inputs", () => {
    const input = "a".repeat(50_000) + "!"
    for (const pattern of ["(a+)+$", "^(a|a)*$", "(a|aa)+$", "^(a*)*b", "(.*a){12}$"]) {
      const compiled = compileRegexPattern(pattern)
      expect(compiled, pattern).toBeDefined()
      expect(compiled!.test(input), pattern).toBe(false)
    }
  })

  it("never hands user input to the backtracking RegExp engine while matching", () => {
    const compiled = compileRegexPattern("(x+x+)+y")!
    const like = compileLikePattern("%a%a%a%a%a%a%b")!
    const exec = vi.spyOn(RegExp.prototype, "exec")
    const test = vi.spyOn(RegExp.prototype, "test")
    expect(compiled.test("x".repeat(20_000))).toBe(false)
    expect(like.test("a".repeat(20_000))).toBe(false)
    expect(exec).not.toHaveBeenCalled()
    expect(test).not.toHaveBeenCalled()
  })

  it("polynomial LIKE patterns stay linear", () => {
    const q = compileQuery({ predicate: { op: "like", attribute: "s", value: "%a%a%a%a%a%a%a%a%b" } })
    expect(q.ok).toBe(true)
    if (q.ok) expect(q.compiled.matches({ s: "a".repeat(100_000) })).toBe(false)
  })

  it("still matches what JavaScript matches for ordinary patterns", () => {
    const cases: [string, string][] = [
      ["^[a-z]+@[a-z]+\\.com$", "bob@example.com"],
      ["colou?r", "the color red"],
      ["\\bcat\\b", "a cat sat"],
      ["^\\w+\\s\\w+$", "two words"],
      ["[\\]a]", "]"],
      ["x{2,3}", "xxx"],
      ["a{", "a{"],
      ["\\/path\\/", "/path/"],
      ["\\x41\\cJ", "A\n"],
      ["^$", ""],
      ["$", "line\n"]
    ]
    for (const [pattern, input] of cases) {
      const expected = new RegExp(pattern).test(input)
      expect(compileRegexPattern(pattern)?.test(input), pattern).toBe(expected)
      expect(compileRegexPattern(pattern)?.test(input + "\u0000zz#"), pattern).toBe(new RegExp(pattern).test(input + "\u0000zz#"))
    }
  })

  it("rejects what JavaScript rejects", () => {
    for (const pattern of ["(", "[a", "*a", "a**", "(?<n>a)(?<n>b)"]) {
      expect(compileRegexPattern(pattern), pattern).toBeUndefined()
    }
  })
})
