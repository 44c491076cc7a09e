import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { keyPatternMatches } from "../../src/sandbox/glob.js"
import { findForbiddenPattern } from "../../src/sandbox/forbidden.js"

/** Reference implementation via an escaped, anchored regex (`s` flag: `?` and `*` match newlines too). */
const viaRegex = (pattern: string, key: string): boolean => {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")
  return new RegExp(`^${source}$`, "s").test(key)
}

describe("keyPatternMatches", () => {
  it("examples", () => {
    expect(keyPatternMatches("user:*", "user:1")).toBe(true)
    expect(keyPatternMatches("user:*", "user:")).toBe(true)
    expect(keyPatternMatches("user:*", "admin:1")).toBe(false)
    expect(keyPatternMatches("user:?", "user:12")).toBe(false)
    expect(keyPatternMatches("user:??", "user:12")).toBe(true)
    expect(keyPatternMatches("*:profile", "u:1:profile")).toBe(true)
    expect(keyPatternMatches("a*b*c", "axxbyyc")).toBe(true)
    expect(keyPatternMatches("a*b*c", "axxbyy")).toBe(false)
    expect(keyPatternMatches("key", "key")).toBe(true)
    expect(keyPatternMatches("key", "key2")).toBe(false) // anchored
    expect(keyPatternMatches("a.c", "abc")).toBe(false) // `.` is literal
    expect(keyPatternMatches("*", "")).toBe(true)
    expect(keyPatternMatches("", "")).toBe(true)
    expect(keyPatternMatches("?", "")).toBe(false)
  })

  it("agrees with an anchored regex translation (property)", () => {
    const alphabet = fc.constantFrom("a", "b", ".", ":", "*", "?", "\n")
    const pattern = fc.array(alphabet, { maxLength: 8 }).map((cs) => cs.join(""))
    const key = fc.array(fc.constantFrom("a", "b", ".", ":", "\n"), { maxLength: 10 }).map((cs) => cs.join(""))
    fc.assert(fc.property(pattern, key, (p, k) => keyPatternMatches(p, k) === viaRegex(p, k)), { numRuns: 2000 })
  })

  it("is fast on pathological patterns", () => {
    const started = performance.now()
    expect(keyPatternMatches("*a*a*a*a*a*a*a*a*b", "a".repeat(5000))).toBe(false)
    expect(performance.now() - started).toBeLessThan(500)
  })
})

describe("findForbiddenPattern", () => {
  it("reports the first listed word with the exact message", () => {
    expect(findForbiddenPattern("return { value: 1 }")).toBeUndefined()
    expect(findForbiddenPattern("x = eval('1')")).toBe("Forbidden pattern detected: \\beval\\b")
    expect(findForbiddenPattern("require(process)")).toBe("Forbidden pattern detected: \\bprocess\\b")
    expect(findForbiddenPattern("new Function('x')")).toBe("Forbidden pattern detected: \\bFunction\\b")
    expect(findForbiddenPattern("globalThis.x; evaluate(); myFunction(); imports")).toBeUndefined()
    expect(findForbiddenPattern("a.global")).toBe("Forbidden pattern detected: \\bglobal\\b")
  })
})
