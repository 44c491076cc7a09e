// Its own file: the item hash keeps the digits of the last long number in module state, and the first
// numbers this module hashes must be the interesting ones.
import { describe, expect, it } from "vitest"
import { fnv1a } from "../../src/crdt/hash.js"
import { lwwItemHash } from "../../src/crdt/merkle.js"

describe("lwwItemHash digit cache", () => {
  it("hashes -1 and other uncached numbers by their text, before and after long numbers", () => {
    for (const millis of [-1, 1_700_000_000_000, -1, 1_700_000_000_000, 12, 1_700_000_000_001, Number.NaN, 1e21, 100_000_000]) {
      expect(lwwItemHash("k", { millis, counter: 0, nodeId: "n" })).toBe(fnv1a(`k:${millis}:0:n`))
    }
  })
})
