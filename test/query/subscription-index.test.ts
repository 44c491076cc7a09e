import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compileQuery, SubscriptionIndex, type CompiledQuery } from "../../src/query/index.js"
import { query, value } from "./arbitraries.js"

function compile(q: unknown): CompiledQuery {
  const r = compileQuery(q)
  if (!r.ok) throw new Error(r.error)
  return r.compiled
}

describe("SubscriptionIndex", () => {
  it("extracts equality constraints from where and from top-level / and-child eq predicates", () => {
    expect(compile({ where: { status: "open", n: { $gt: 1 } } }).equality).toEqual({ field: "status", value: "open" })
    expect(compile({ where: { n: { $gt: 1 }, s: { $eq: 3 } } }).equality).toEqual({ field: "s", value: 3 })
    expect(compile({ predicate: { op: "eq", attribute: "s", value: true } }).equality).toEqual({ field: "s", value: true })
    expect(
      compile({
        predicate: { op: "and", children: [{ op: "gt", attribute: "n", value: 1 }, { op: "eq", attribute: "s", value: null }] }
      }).equality
    ).toEqual({ field: "s", value: null })
    // not pruned: or, not, nested and, non-scalar constants, predicate overriding where
    expect(compile({ predicate: { op: "or", children: [{ op: "eq", attribute: "s", value: 1 }] } }).equality).toBeUndefined()
    expect(compile({ predicate: { op: "not", children: [{ op: "eq", attribute: "s", value: 1 }] } }).equality).toBeUndefined()
    expect(compile({ where: { s: [1] } }).equality).toBeUndefined()
    expect(compile({ where: { s: 1 }, predicate: { op: "gt", attribute: "n", value: 1 } }).equality).toBeUndefined()
  })

  it("returns constrained subscriptions only for changes touching their constant", () => {
    const index = new SubscriptionIndex<string>()
    index.add("open", compile({ where: { status: "open" } }), "open")
    index.add("closed", compile({ predicate: { op: "eq", attribute: "status", value: "closed" } }), "closed")
    index.add("all", compile({ where: { n: { $gt: 0 } } }), "all")
    const c = (o: unknown, n: unknown) => [...index.candidates(o, n)].sort()
    expect(c(undefined, { status: "open" })).toEqual(["all", "open"])
    expect(c({ status: "open" }, { status: "closed" })).toEqual(["all", "closed", "open"])
    expect(c({ status: "open" }, { status: "open", x: 1 })).toEqual(["all", "open"]) // no duplicates
    expect(c({ status: "other" }, undefined)).toEqual(["all"])
    expect(c([1], 5)).toEqual(["all"])
    index.remove("open")
    expect(c(undefined, { status: "open" })).toEqual(["all"])
    index.add("all", compile({ where: { status: "closed" } }), "all") // replacing re-indexes
    expect(c(undefined, { status: "open" })).toEqual([])
    expect(index.size).toBe(2)
    expect(index.remove("missing")).toBe(false)
  })

  it("property: never omits a subscription whose result could change", () => {
    fc.assert(
      fc.property(
        fc.array(query, { minLength: 1, maxLength: 8 }),
        fc.option(value, { nil: undefined }),
        fc.option(value, { nil: undefined }),
        fc.array(fc.nat(), { maxLength: 3 }),
        (queries, oldValue, newValue, removals) => {
          const index = new SubscriptionIndex<number>()
          const compiled = queries.map((q) => compile(q))
          compiled.forEach((q, i) => index.add(`s${i}`, q, i))
          const removed = new Set(removals.map((r) => r % compiled.length))
          for (const r of removed) index.remove(`s${r}`)
          const got = [...index.candidates(oldValue, newValue)]
          expect(new Set(got).size).toBe(got.length)
          compiled.forEach((q, i) => {
            const visibleMatch = (v: unknown) => v !== undefined && q.matches(v)
            const affected = visibleMatch(oldValue) || visibleMatch(newValue)
            if (affected && !removed.has(i)) expect(got).toContain(i)
            if (removed.has(i)) expect(got).not.toContain(i)
          })
        }
      ),
      { numRuns: 1000 }
    )
  })
})
