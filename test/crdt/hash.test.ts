import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  combineHashes,
  fnv1a,
  fnv1aUpdate,
  FNV_OFFSET_BASIS,
  hashObject,
  hashPath,
  PARTITION_COUNT,
  partitionId
} from "../../src/crdt/hash.js"

// protocol.md §4.5: input, FNV-1a, 8-hex path, partition
const VECTORS: ReadonlyArray<readonly [string, number, string, number]> = [
  ["", 2166136261, "811c9dc5", 199],
  ["hello", 1335831723, "4f9f2cab", 95],
  ["key1", 927623783, "374a6a67", 268],
  ["key1:100:0:test", 3988528110, "edbc1bee", 245],
  ["\u00e9", 1812687940, "6c0b6c44", 105],
  ["\u{1F600}", 3409036472, "cb31c4b8", 102],
  ["a", 3826002220, "e40c292c", 101],
  ["zzz", 2813343901, "a7b0389d", 219],
  ["alice", 2267157479, "872213e7", 205],
  ["user:alice", 927278352, "37452510", 91],
  ["hash-compat-key", 551086912, "20d8eb40", 11],
  ["todo:001:title", 673830268, "2829d57c", 150]
]

/** Strings of arbitrary UTF-16 code units, lone surrogates included. */
const anyCodeUnits = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 16 })

describe("fnv1a", () => {
  it.each(VECTORS)("%j → hash, path and partition of §4.5", (input, hash, path, partition) => {
    expect(fnv1a(input)).toBe(hash)
    expect(hashPath(input)).toBe(path)
    expect(partitionId(input)).toBe(partition)
  })

  it("hashes UTF-16 code units, not UTF-8 bytes: a surrogate pair is two units", () => {
    expect(fnv1a("\u{1F600}")).toBe(fnv1aUpdate(fnv1aUpdate(FNV_OFFSET_BASIS, "\uD83D"), "\uDE00"))
  })

  it("returns an unsigned 32-bit integer and a zero-padded lowercase path", () => {
    fc.assert(
      fc.property(anyCodeUnits, (s) => {
        const h = fnv1a(s)
        expect(Number.isInteger(h) && h >= 0 && h < 2 ** 32).toBe(true)
        expect(hashPath(s)).toMatch(/^[0-9a-f]{8}$/)
        expect(parseInt(hashPath(s), 16)).toBe(h)
        expect(partitionId(s)).toBe(h % PARTITION_COUNT)
      })
    )
  })

  it("fnv1aUpdate continues a hash exactly like hashing the concatenation", () => {
    fc.assert(
      fc.property(anyCodeUnits, anyCodeUnits, (a, b) => {
        expect(fnv1aUpdate(fnv1aUpdate(FNV_OFFSET_BASIS, a), b)).toBe(fnv1a(a + b))
      })
    )
  })

  it("uses 271 partitions", () => {
    expect(PARTITION_COUNT).toBe(271)
  })
})

describe("combineHashes", () => {
  it("sums modulo 2^32", () => {
    expect(combineHashes([])).toBe(0)
    expect(combineHashes([0xffffffff, 2])).toBe(1)
    expect(combineHashes([1, 2, 3])).toBe(6)
  })

  it("is order-independent", () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff })
    fc.assert(
      fc.property(fc.array(u32), (hs) => {
        expect(combineHashes([...hs].reverse())).toBe(combineHashes(hs))
        expect(combineHashes(hs)).toBe(Number(hs.reduce((s, h) => s + BigInt(h), 0n) % 2n ** 32n))
      })
    )
  })
})

describe("hashObject", () => {
  it("hashes JSON with sorted object keys, recursively; arrays keep their order", () => {
    expect(hashObject({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null } })).toBe(
      fnv1a('{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}')
    )
    expect(hashObject(null)).toBe(fnv1a("null"))
    expect(hashObject([2, 1])).not.toBe(hashObject([1, 2]))
  })

  it("does not depend on key insertion order", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (o) => {
        const reversed = Object.fromEntries(Object.entries(o).reverse())
        expect(hashObject(reversed)).toBe(hashObject(o))
      })
    )
  })

  it("keeps an own __proto__ key as data", () => {
    const withProto = JSON.parse('{"__proto__":{"x":1},"a":1}')
    expect(hashObject(withProto)).toBe(fnv1a('{"__proto__":{"x":1},"a":1}'))
  })
})
