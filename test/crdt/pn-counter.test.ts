import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  counterStatesEqual,
  counterToWire,
  counterValue,
  emptyCounterState,
  mergeCounter,
  normalizeCounterState,
  type PNCounterState
} from "../../src/crdt/pn-counter.js"

const arbSide = fc.dictionary(fc.constantFrom("a", "b", "c", "node-1", "constructor"), fc.integer({ min: 0, max: 100 }))
const arbState: fc.Arbitrary<PNCounterState> = fc.record({ p: arbSide, n: arbSide })

describe("normalizeCounterState", () => {
  it("accepts {p, n}, {positive, negative} and both, merging by entry-wise max", () => {
    expect(normalizeCounterState({ p: { a: 2 }, n: { a: 1 } })).toEqual({ p: { a: 2 }, n: { a: 1 } })
    expect(normalizeCounterState({ positive: { a: 2 }, negative: { b: 1 } })).toEqual({ p: { a: 2 }, n: { b: 1 } })
    expect(normalizeCounterState({ p: { a: 2, b: 7 }, positive: { a: 5 }, n: {}, negative: { c: 0.5 } })).toEqual({
      p: { a: 5, b: 7 },
      n: { c: 0.5 }
    })
    expect(normalizeCounterState({})).toEqual({ p: {}, n: {} })
    expect(normalizeCounterState({ p: null })).toEqual({ p: {}, n: {} })
  })

  it("drops entries that are not finite non-negative numbers", () => {
    expect(
      normalizeCounterState({ p: { a: -1, b: Number.NaN, c: Number.POSITIVE_INFINITY, d: "3", e: 4 }, n: { x: null } })
    ).toEqual({ p: { e: 4 }, n: {} })
  })

  it("rejects non-object states and fields", () => {
    for (const bad of [null, undefined, 3, "x", [], [1]]) expect(normalizeCounterState(bad)).toBeUndefined()
    expect(normalizeCounterState({ p: 3 })).toBeUndefined()
    expect(normalizeCounterState({ negative: [1] })).toBeUndefined()
  })

  it("handles node ids that collide with Object.prototype members", () => {
    expect(normalizeCounterState({ p: { constructor: 3, toString: 1 } })).toEqual({ p: { constructor: 3, toString: 1 }, n: {} })
  })
})

describe("mergeCounter", () => {
  it("takes the per-node max and does not mutate its inputs", () => {
    const a = { p: { x: 1, y: 5 }, n: { x: 2 } }
    const b = { p: { x: 3 }, n: { z: 1 } }
    expect(mergeCounter(a, b)).toEqual({ p: { x: 3, y: 5 }, n: { x: 2, z: 1 } })
    expect(a).toEqual({ p: { x: 1, y: 5 }, n: { x: 2 } })
    expect(b).toEqual({ p: { x: 3 }, n: { z: 1 } })
  })

  it("is commutative, associative and idempotent, with the empty state as identity", () => {
    fc.assert(
      fc.property(arbState, arbState, arbState, (a, b, c) => {
        expect(counterStatesEqual(mergeCounter(a, b), mergeCounter(b, a))).toBe(true)
        expect(counterStatesEqual(mergeCounter(mergeCounter(a, b), c), mergeCounter(a, mergeCounter(b, c)))).toBe(true)
        expect(counterStatesEqual(mergeCounter(a, a), a)).toBe(true)
        expect(counterStatesEqual(mergeCounter(a, emptyCounterState), a)).toBe(true)
        // merging never lowers any entry
        const m = mergeCounter(a, b)
        for (const [k, v] of Object.entries(a.p)) expect(m.p[k]).toBeGreaterThanOrEqual(v)
        for (const [k, v] of Object.entries(b.n)) expect(m.n[k]).toBeGreaterThanOrEqual(v)
      })
    )
  })
})

describe("counterValue / counterToWire / counterStatesEqual", () => {
  it("value is Σp − Σn", () => {
    expect(counterValue({ p: { a: 5, b: 2.5 }, n: { a: 3 } })).toBe(4.5)
    expect(counterValue(emptyCounterState)).toBe(0)
  })

  it("wire form carries all four keys with the same contents", () => {
    const s = { p: { a: 5 }, n: { b: 1 } }
    expect(counterToWire(s)).toEqual({ p: { a: 5 }, n: { b: 1 }, positive: { a: 5 }, negative: { b: 1 } })
    fc.assert(
      fc.property(arbState, (state) => {
        expect(counterStatesEqual(normalizeCounterState(counterToWire(state))!, state)).toBe(true)
      })
    )
  })

  it("equality compares entries", () => {
    expect(counterStatesEqual({ p: { a: 1 }, n: {} }, { p: { a: 1 }, n: {} })).toBe(true)
    expect(counterStatesEqual({ p: { a: 1 }, n: {} }, { p: { a: 2 }, n: {} })).toBe(false)
    expect(counterStatesEqual({ p: { a: 1 }, n: {} }, { p: { b: 1 }, n: {} })).toBe(false)
    expect(counterStatesEqual({ p: {}, n: {} }, { p: {}, n: { constructor: 0 } })).toBe(false)
  })
})
