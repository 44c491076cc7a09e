import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { TopK } from "../../src/query/top-k.js"

describe("TopK", () => {
  it("property: equals sort-then-slice and counts every offer", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -20, max: 20 })), fc.nat({ max: 12 }), (items, k) => {
        const top = new TopK<number>(k, (a, b) => a - b)
        for (const item of items) top.offer(item)
        expect(top.count).toBe(items.length)
        expect(top.sorted()).toEqual([...items].sort((a, b) => a - b).slice(0, k))
      }),
      { numRuns: 500 }
    )
  })
})
