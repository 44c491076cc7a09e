import { describe, expect, it } from "vitest"
import {
  compileQuery,
  MAX_ARRAY_OPERAND,
  MAX_PATTERN_LENGTH,
  MAX_PREDICATE_DEPTH,
  MAX_PREDICATE_NODES,
  type CompiledQuery
} from "../../src/query/index.js"

function compile(query: unknown): CompiledQuery {
  const r = compileQuery(query)
  if (!r.ok) throw new Error(r.error)
  return r.compiled
}
const where = (w: Record<string, unknown>) => compile({ where: w })
const pred = (p: unknown) => compile({ predicate: p })
const leaf = (op: string, attribute: string, value?: unknown) =>
  pred(value === undefined ? { op, attribute } : { op, attribute, value })

describe("where (§4.9.2)", () => {
  it("plain values use strict equality; arrays and objects never equal", () => {
    expect(where({ a: 1 }).matches({ a: 1 })).toBe(true)
    expect(where({ a: 1 }).matches({ a: "1" })).toBe(false)
    expect(where({ a: 1 }).matches({})).toBe(false)
    expect(where({ a: null }).matches({ a: null })).toBe(true)
    expect(where({ a: null }).matches({})).toBe(false)
    expect(where({ a: [1] }).matches({ a: [1] })).toBe(false)
    expect(where({ a: 1, b: "x" }).matches({ a: 1, b: "x" })).toBe(true)
    expect(where({ a: 1, b: "x" }).matches({ a: 1, b: "y" })).toBe(false)
  })

  it("operators $eq $ne $neq $gt $gte $lt $lte $in", () => {
    expect(where({ a: { $eq: 2 } }).matches({ a: 2 })).toBe(true)
    expect(where({ a: { $eq: 2 } }).matches({ a: 3 })).toBe(false)
    expect(where({ a: { $ne: 2 } }).matches({ a: 3 })).toBe(true)
    expect(where({ a: { $neq: 2 } }).matches({ a: 2 })).toBe(false)
    expect(where({ a: { $ne: 2 } }).matches({})).toBe(true)
    expect(where({ a: { $gt: 2 } }).matches({ a: 3 })).toBe(true)
    expect(where({ a: { $gt: 2 } }).matches({ a: 2 })).toBe(false)
    expect(where({ a: { $gte: 2 } }).matches({ a: 2 })).toBe(true)
    expect(where({ a: { $lt: 2 } }).matches({ a: 1 })).toBe(true)
    expect(where({ a: { $lte: 2 } }).matches({ a: 3 })).toBe(false)
    expect(where({ a: { $gt: 1, $lt: 5 } }).matches({ a: 3 })).toBe(true)
    expect(where({ a: { $gt: 1, $lt: 5 } }).matches({ a: 6 })).toBe(false)
    expect(where({ a: { $in: [1, "x"] } }).matches({ a: "x" })).toBe(true)
    expect(where({ a: { $in: [1, "x"] } }).matches({ a: "1" })).toBe(false)
    expect(where({ a: { $in: "x" } }).matches({ a: "x" })).toBe(false)
    expect(where({ a: {} }).matches({ a: 1 })).toBe(true)
  })

  it("an unknown operator makes the record not match", () => {
    expect(where({ a: { $regex: "x" } }).matches({ a: "x" })).toBe(false)
    expect(where({ a: { $gt: 0, $foo: 1 } }).matches({ a: 5 })).toBe(false)
  })

  it("uses JavaScript relational semantics for mixed types", () => {
    expect(where({ a: { $gt: 9 } }).matches({ a: "10" })).toBe(true) // "10" coerces to 10
    expect(where({ a: { $gt: "9" } }).matches({ a: "10" })).toBe(false) // string comparison
    expect(where({ a: { $lt: 1 } }).matches({ a: null })).toBe(true) // null coerces to 0
    expect(where({ a: { $gte: 0 } }).matches({})).toBe(false) // undefined: always false
    expect(where({ a: { $lte: 0 } }).matches({})).toBe(false)
    expect(where({ a: { $gt: "a" } }).matches({ a: 5 })).toBe(false) // NaN
    expect(where({ a: { $lt: "b" } }).matches({ a: "a" })).toBe(true)
    expect(where({ a: { $gt: "Z" } }).matches({ a: "a" })).toBe(true) // code units: "a" > "Z"
  })

  it("a value that cannot be converted to a primitive compares false instead of throwing", () => {
    const hostile = { a: { valueOf: 1, toString: 1 } }
    expect(where({ a: { $gt: 0 } }).matches(hostile)).toBe(false)
    expect(leaf("lt", "a", 0).matches(hostile)).toBe(false)
  })

  it("reads own top-level fields only (no dotted paths, no prototype)", () => {
    expect(where({ "a.b": 1 }).matches({ a: { b: 1 } })).toBe(false)
    expect(where({ "a.b": 1 }).matches({ "a.b": 1 })).toBe(true)
    expect(leaf("isNull", "constructor").matches({})).toBe(true)
    expect(leaf("isNotNull", "toString").matches({})).toBe(false)
  })
})

describe("non-object values and filter precedence", () => {
  it("primitives and OR arrays match only a query without where and predicate", () => {
    for (const v of [1, "s", true, null, [{ a: 1 }]]) {
      expect(compile({}).matches(v)).toBe(true)
      expect(compile({ sort: { a: "asc" }, limit: 3 }).matches(v)).toBe(true)
      expect(where({}).matches(v)).toBe(false)
      expect(where({ a: 1 }).matches(v)).toBe(false)
      expect(leaf("neq", "a", 1).matches(v)).toBe(false)
      expect(pred({ op: "and" }).matches(v)).toBe(false)
    }
  })

  it("an empty or absent where matches every object", () => {
    expect(where({}).matches({ x: 1 })).toBe(true)
    expect(compile({}).matches({})).toBe(true)
    expect(compile({ where: null, predicate: null }).matches(5)).toBe(true)
  })

  it("predicate overrides where", () => {
    const q = compile({ where: { a: 1 }, predicate: { op: "eq", attribute: "b", value: 2 } })
    expect(q.matches({ a: 99, b: 2 })).toBe(true)
    expect(q.matches({ a: 1, b: 3 })).toBe(false)
  })
})

describe("predicate leaves (§4.9.2, §3.16)", () => {
  it("eq / neq use strict equality; neq on a missing attribute is true", () => {
    expect(leaf("eq", "a", 1).matches({ a: 1 })).toBe(true)
    expect(leaf("eq", "a", 1).matches({ a: "1" })).toBe(false)
    expect(leaf("eq", "a", [1]).matches({ a: [1] })).toBe(false)
    expect(leaf("neq", "a", 1).matches({})).toBe(true)
    expect(leaf("neq", "a", 1).matches({ a: 1 })).toBe(false)
    expect(leaf("neq", "a", [1]).matches({ a: [1] })).toBe(true)
  })

  it("gt gte lt lte", () => {
    expect(leaf("gt", "a", 1).matches({ a: 2 })).toBe(true)
    expect(leaf("gte", "a", 2).matches({ a: 2 })).toBe(true)
    expect(leaf("lt", "a", 2).matches({ a: 2 })).toBe(false)
    expect(leaf("lte", "a", 2).matches({ a: 2 })).toBe(true)
    expect(leaf("gt", "a", 1).matches({})).toBe(false)
    expect(leaf("lt", "a", "b").matches({ a: "a" })).toBe(true)
  })

  it("a leaf without attribute is false, an unknown op is false", () => {
    expect(pred({ op: "eq", value: 1 }).matches({ a: 1 })).toBe(false)
    expect(pred({ op: "neq", value: 1 }).matches({ a: 2 })).toBe(false)
    expect(leaf("contains", "a", "x").matches({ a: "xyz" })).toBe(false)
    expect(leaf("match", "a", "x").matches({ a: "x" })).toBe(false)
    expect(pred({ op: 7, attribute: "a" }).matches({ a: 1 })).toBe(false)
  })

  it("and / or / not, including empty children", () => {
    const t = { op: "eq", attribute: "a", value: 1 }
    const f = { op: "eq", attribute: "a", value: 2 }
    const v = { a: 1 }
    expect(pred({ op: "and", children: [t, t] }).matches(v)).toBe(true)
    expect(pred({ op: "and", children: [t, f] }).matches(v)).toBe(false)
    expect(pred({ op: "and", children: [] }).matches(v)).toBe(true)
    expect(pred({ op: "and" }).matches(v)).toBe(true)
    expect(pred({ op: "or", children: [f, t] }).matches(v)).toBe(true)
    expect(pred({ op: "or", children: [f] }).matches(v)).toBe(false)
    expect(pred({ op: "or", children: [] }).matches(v)).toBe(false)
    expect(pred({ op: "not", children: [f] }).matches(v)).toBe(true)
    expect(pred({ op: "not", children: [t] }).matches(v)).toBe(false)
    expect(pred({ op: "not", children: [] }).matches(v)).toBe(true)
    expect(pred({ op: "not", children: [t, f] }).matches(v)).toBe(false) // only children[0] counts
  })

  it("like: escapes regex metacharacters, % and _ wildcards, anchored, case-insensitive", () => {
    const like = (p: string, v: string) => leaf("like", "a", p).matches({ a: v })
    expect(like("Hello%", "hello world")).toBe(true)
    expect(like("%WORLD", "hello world")).toBe(true)
    expect(like("h_llo", "HELLO")).toBe(true)
    expect(like("h_llo", "hllo")).toBe(false)
    expect(like("ello", "hello")).toBe(false) // anchored at the start
    expect(like("hell", "hello")).toBe(false) // anchored at the end
    expect(like("a.c", "abc")).toBe(false) // "." is escaped
    expect(like("a.c", "a.c")).toBe(true)
    expect(like("(a|b)+[x]{2}$^\\", "(A|B)+[X]{2}$^\\")).toBe(true)
    expect(like("(a|b)", "a")).toBe(false)
    expect(like("%", "")).toBe(true)
    expect(like("%", "line1\nline2")).toBe(false) // like the client's ".*": no line terminators
    // "*" and "?" are not escaped by the client: they stay quantifiers.
    expect(like("ab*", "abbb")).toBe(true)
    expect(like("ab?", "a")).toBe(true)
    expect(like("%*", "x")).toBe(false) // ".**" is an invalid expression → false
    expect(leaf("like", "a", "x%").matches({ a: 5 })).toBe(false) // both must be strings
    expect(leaf("like", "a", 5).matches({ a: "5" })).toBe(false)
  })

  it("regex: JavaScript syntax without flags; invalid or non-string → false", () => {
    const rx = (p: string, v: unknown) => leaf("regex", "a", p).matches({ a: v })
    expect(rx("^ab+c$", "abbbc")).toBe(true)
    expect(rx("b+", "abbbc")).toBe(true) // unanchored search
    expect(rx("^B", "bcd")).toBe(false) // case-sensitive
    expect(rx("\\d{3}-\\d{4}", "call 555-1234")).toBe(true)
    expect(rx("\\u0041", "A")).toBe(true)
    expect(rx("[^]", "x")).toBe(true)
    expect(rx("a.c", "a\nc")).toBe(false)
    expect(rx("a\\sc", "a\u00a0c")).toBe(true)
    expect(rx("\\Qa", "Qa")).toBe(true) // identity escape in JavaScript
    expect(rx("(?<year>\\d{4})", "in 2024")).toBe(true)
    expect(rx("(unclosed", "(unclosed")).toBe(false)
    expect(rx("a", 1)).toBe(false)
    expect(leaf("regex", "a", 1).matches({ a: "1" })).toBe(false)
  })

  it("regex features a linear-time engine cannot run make the leaf false", () => {
    expect(leaf("regex", "a", "(a)\\1").matches({ a: "aa" })).toBe(false)
    expect(leaf("regex", "a", "a(?=b)").matches({ a: "ab" })).toBe(false)
  })

  it("in: value array contains the attribute, or attribute array contains the value", () => {
    expect(leaf("in", "a", [1, 2]).matches({ a: 2 })).toBe(true)
    expect(leaf("in", "a", [1, 2]).matches({ a: 3 })).toBe(false)
    expect(leaf("in", "tags", "x").matches({ tags: ["x", "y"] })).toBe(true)
    expect(leaf("in", "tags", "z").matches({ tags: ["x", "y"] })).toBe(false)
    expect(leaf("in", "a", [1]).matches({})).toBe(false)
  })

  it("between is inclusive; malformed bounds → false", () => {
    expect(leaf("between", "a", [1, 3]).matches({ a: 1 })).toBe(true)
    expect(leaf("between", "a", [1, 3]).matches({ a: 3 })).toBe(true)
    expect(leaf("between", "a", [1, 3]).matches({ a: 4 })).toBe(false)
    expect(leaf("between", "a", ["b", "d"]).matches({ a: "c" })).toBe(true)
    expect(leaf("between", "a", [1]).matches({ a: 1 })).toBe(false)
    expect(leaf("between", "a", [1, 3]).matches({})).toBe(false)
  })

  it("isNull / isNotNull: absent or nil", () => {
    expect(leaf("isNull", "a").matches({})).toBe(true)
    expect(leaf("isNull", "a").matches({ a: null })).toBe(true)
    expect(leaf("isNull", "a").matches({ a: 0 })).toBe(false)
    expect(leaf("isNotNull", "a").matches({ a: 0 })).toBe(true)
    expect(leaf("isNotNull", "a").matches({ a: null })).toBe(false)
    expect(pred({ op: "isNull" }).matches({})).toBe(false) // attribute required
  })

  it("containsAll / containsAny on array attributes, array or scalar values", () => {
    const v = { tags: ["a", "b", 3] }
    expect(leaf("containsAll", "tags", ["a", 3]).matches(v)).toBe(true)
    expect(leaf("containsAll", "tags", ["a", "z"]).matches(v)).toBe(false)
    expect(leaf("containsAll", "tags", "b").matches(v)).toBe(true)
    expect(leaf("containsAny", "tags", ["z", 3]).matches(v)).toBe(true)
    expect(leaf("containsAny", "tags", ["z"]).matches(v)).toBe(false)
    expect(leaf("containsAny", "tags", "a").matches(v)).toBe(true)
    expect(leaf("containsAll", "tags", ["a"]).matches({ tags: "a" })).toBe(false)
  })

  it("startsWith / endsWith are case-sensitive string tests", () => {
    expect(leaf("startsWith", "a", "He").matches({ a: "Hello" })).toBe(true)
    expect(leaf("startsWith", "a", "he").matches({ a: "Hello" })).toBe(false)
    expect(leaf("endsWith", "a", "lo").matches({ a: "Hello" })).toBe(true)
    expect(leaf("endsWith", "a", "1").matches({ a: 11 })).toBe(false)
  })
})

describe("compileQuery bounds", () => {
  it("rejects malformed queries", () => {
    expect(compileQuery(5).ok).toBe(false)
    expect(compileQuery({ where: 3 }).ok).toBe(false)
    expect(compileQuery({ predicate: "x" }).ok).toBe(false)
    expect(compileQuery({ predicate: { op: "and", children: [null] } }).ok).toBe(false)
    expect(compileQuery({ sort: "a" }).ok).toBe(false)
    expect(compileQuery({ sort: [{ direction: "asc" }] }).ok).toBe(false)
    expect(compileQuery({ limit: "5" }).ok).toBe(false)
  })

  it("limits predicate size and depth", () => {
    const leafNode = { op: "eq", attribute: "a", value: 1 }
    const wide = { op: "or", children: Array.from({ length: MAX_PREDICATE_NODES }, () => leafNode) }
    expect(compileQuery({ predicate: wide }).ok).toBe(false)
    const ok = { op: "or", children: Array.from({ length: MAX_PREDICATE_NODES - 1 }, () => leafNode) }
    expect(compileQuery({ predicate: ok }).ok).toBe(true)

    const deep = (depth: number): unknown => (depth === 1 ? leafNode : { op: "not", children: [deep(depth - 1)] })
    expect(compileQuery({ predicate: deep(MAX_PREDICATE_DEPTH) }).ok).toBe(true)
    expect(compileQuery({ predicate: deep(MAX_PREDICATE_DEPTH + 1) }).ok).toBe(false)

    const manyWhere = Object.fromEntries(Array.from({ length: MAX_PREDICATE_NODES + 1 }, (_, i) => [`f${i}`, i]))
    expect(compileQuery({ where: manyWhere }).ok).toBe(false)
  })

  it("limits array operands and pattern length", () => {
    const big = Array.from({ length: MAX_ARRAY_OPERAND + 1 }, (_, i) => i)
    expect(compileQuery({ where: { a: { $in: big } } }).ok).toBe(false)
    expect(compileQuery({ predicate: { op: "in", attribute: "a", value: big } }).ok).toBe(false)
    expect(compileQuery({ predicate: { op: "containsAny", attribute: "a", value: big } }).ok).toBe(false)
    expect(compileQuery({ predicate: { op: "in", attribute: "a", value: big.slice(1) } }).ok).toBe(true)
    const long = "a".repeat(MAX_PATTERN_LENGTH + 1)
    expect(compileQuery({ predicate: { op: "regex", attribute: "a", value: long } }).ok).toBe(false)
    expect(compileQuery({ predicate: { op: "like", attribute: "a", value: long } }).ok).toBe(false)
    expect(compileQuery({ predicate: { op: "regex", attribute: "a", value: long.slice(1) } }).ok).toBe(true)
  })

  it("non-positive limits mean no limit; fractional limits round down", () => {
    expect(compile({ limit: 0 }).limit).toBeUndefined()
    expect(compile({ limit: -3 }).limit).toBeUndefined()
    expect(compile({ limit: 2.7 }).limit).toBe(2)
  })
})
