import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { fnv1a, hashPath } from "../../src/crdt/hash.js"
import { lwwItemHash, MerkleTree, orEntryHash, orValueString } from "../../src/crdt/merkle.js"
import type { ORMapRecord } from "../../src/crdt/types.js"

const lwwVector = () => {
  const tree = new MerkleTree()
  tree.update("a", lwwItemHash("a", { millis: 1700000000000, counter: 0, nodeId: "n1" }))
  tree.update("zzz", lwwItemHash("zzz", { millis: 1700000000001, counter: 2, nodeId: "n2" }))
  tree.update("todo:001:title", lwwItemHash("todo:001:title", { millis: 1700000000002, counter: 0, nodeId: "n1" }))
  return tree
}

/** Builds a tree from scratch from final contents (reference for the incremental tree). */
const freshTree = (contents: ReadonlyMap<string, number>) => {
  const tree = new MerkleTree()
  for (const [k, h] of contents) tree.update(k, h)
  return tree
}

/** All bucket hashes of every inner node, for structural comparison. */
const allBuckets = (tree: MerkleTree) => {
  const out: Record<string, Record<string, number>> = {}
  const walk = (path: string) => {
    const buckets = tree.getBuckets(path)
    out[path] = buckets
    if (path.length < 2) for (const c of Object.keys(buckets)) walk(path + c)
  }
  walk("")
  return out
}

describe("MerkleTree — LWW vector of §4.6", () => {
  it("item hashes", () => {
    expect(lwwItemHash("a", { millis: 1700000000000, counter: 0, nodeId: "n1" })).toBe(410293271)
    expect(lwwItemHash("zzz", { millis: 1700000000001, counter: 2, nodeId: "n2" })).toBe(2085724498)
    expect(lwwItemHash("todo:001:title", { millis: 1700000000002, counter: 0, nodeId: "n1" })).toBe(2024869913)
  })

  it("root, buckets and leaf", () => {
    const tree = lwwVector()
    expect(tree.rootHash).toBe(225920386)
    expect(tree.getBuckets("")).toEqual({ "2": 2024869913, e: 410293271, a: 2085724498 })
    expect(tree.getBuckets("e")).toEqual({ "4": 410293271 })
    expect(tree.getBuckets("e4")).toEqual({ "0": 410293271 })
    expect(tree.isLeaf("e40")).toBe(true)
    expect(tree.leafKeys("e40")).toEqual(["a"])
    expect(tree.getBuckets("e40")).toEqual({})
    expect(tree.isLeaf("e4")).toBe(false)
    expect(tree.isLeaf("e41")).toBe(false)
    expect(tree.leafKeys("e41")).toEqual([])
    expect(tree.leafKeys("e4")).toEqual([])
    expect(tree.getBuckets("f")).toEqual({})
    expect(tree.getBuckets("e40a")).toEqual({})
    expect(tree.size).toBe(3)
  })

  it("empty tree has root 0; emptied nodes stay with hash 0", () => {
    expect(new MerkleTree().rootHash).toBe(0)
    expect(new MerkleTree().getBuckets("")).toEqual({})
    const tree = lwwVector()
    tree.remove("a")
    expect(tree.rootHash).toBe((2085724498 + 2024869913) % 2 ** 32)
    expect(tree.getBuckets("")).toEqual({ "2": 2024869913, e: 0, a: 2085724498 })
    expect(tree.getBuckets("e4")).toEqual({ "0": 0 })
    expect(tree.isLeaf("e40")).toBe(true)
    expect(tree.leafKeys("e40")).toEqual([])
    tree.remove("a") // absent: no-op
    tree.remove("never-there")
    expect(tree.size).toBe(2)
    tree.remove("zzz")
    tree.remove("todo:001:title")
    expect(tree.rootHash).toBe(0)
  })

  it("update replaces a key's item hash", () => {
    const tree = lwwVector()
    tree.update("a", 5)
    expect(tree.itemHash("a")).toBe(5)
    expect(tree.getBuckets("e")).toEqual({ "4": 5 })
    expect(tree.rootHash).toBe((5 + 2085724498 + 2024869913) % 2 ** 32)
    expect(tree.size).toBe(3)
  })
})

describe("MerkleTree — incremental equals fresh", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("set" as const), key: fc.string({ maxLength: 4 }), hash: fc.integer({ min: 0, max: 0xffffffff }) }),
    fc.record({ kind: fc.constant("remove" as const), key: fc.string({ maxLength: 4 }) })
  )

  it("root and buckets equal a tree built from the final contents, for any op sequence", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const tree = new MerkleTree()
        const contents = new Map<string, number>()
        for (const o of ops) {
          if (o.kind === "set") {
            tree.update(o.key, o.hash)
            contents.set(o.key, o.hash)
          } else {
            tree.remove(o.key)
            contents.delete(o.key)
          }
        }
        const fresh = freshTree(contents)
        expect(tree.rootHash).toBe(fresh.rootHash)
        expect(tree.size).toBe(contents.size)
        // buckets of nodes that exist in both agree; nodes only in `tree` (emptied) hash to 0
        const inc = allBuckets(tree)
        for (const [path, buckets] of Object.entries(allBuckets(fresh))) {
          for (const [c, h] of Object.entries(buckets)) expect(inc[path]?.[c]).toBe(h)
        }
        for (const [path, buckets] of Object.entries(inc)) {
          for (const [c, h] of Object.entries(buckets)) {
            if (fresh.getBuckets(path)[c] === undefined) expect(h).toBe(0)
          }
        }
        for (const [k, h] of contents) {
          expect(tree.itemHash(k)).toBe(h)
          expect(tree.leafKeys(hashPath(k).slice(0, 3))).toContain(k)
        }
        const expectedRoot = [...contents.values()].reduce((s, h) => (s + h) % 2 ** 32, 0)
        expect(tree.rootHash).toBe(expectedRoot)
      })
    )
  })

  it("root hashes equal iff contents equal (exhaustively over a small universe)", () => {
    // every content of 4 keys × {absent, 3 versions}: 256 maps, all roots must be distinct
    const keys = ["a", "b", "zzz", "todo:001:title"]
    const roots = new Map<number, string>()
    for (let combo = 0; combo < 4 ** keys.length; combo++) {
      const contents = new Map<string, number>()
      keys.forEach((k, i) => {
        const version = Math.floor(combo / 4 ** i) % 4
        if (version > 0) contents.set(k, lwwItemHash(k, { millis: 1700000000000, counter: version, nodeId: "n1" }))
      })
      const label = JSON.stringify([...contents])
      const root = freshTree(contents).rootHash
      expect(roots.get(root) ?? label).toBe(label)
      roots.set(root, label)
      // insertion order does not matter
      expect(freshTree(new Map([...contents].reverse())).rootHash).toBe(root)
    }
    expect(roots.size).toBe(256)
  })
})

describe("OR entry hash of §4.6", () => {
  const vectorRecords: ORMapRecord[] = [
    {
      tag: "1700000000000:1:n1",
      value: "hello",
      timestamp: { millis: 1700000000000, counter: 1, nodeId: "n1" },
      ttlMs: 5000
    },
    {
      tag: "1700000000000:0:n1",
      value: { b: 1, a: { x: 1, a: 2 } },
      timestamp: { millis: 1700000000000, counter: 0, nodeId: "n1" }
    }
  ]

  it("matches the vector (tags sorted, JSON allow-list quirk, ttl suffix)", () => {
    const expected =
      'key:list-1|1700000000000:0:n1:{"a":{"a":2},"b":1}:1700000000000:0:n1|1700000000000:1:n1:hello:1700000000000:1:n1:ttl=5000'
    expect(fnv1a(expected)).toBe(107491507)
    expect(orEntryHash("list-1", vectorRecords)).toBe(107491507)
    expect(orEntryHash("list-1", [...vectorRecords].reverse())).toBe(107491507)
  })

  it("formats values like the client", () => {
    expect(orValueString(null)).toBe("null")
    expect(orValueString(undefined)).toBe("undefined")
    expect(orValueString(1e21)).toBe("1e+21")
    expect(orValueString(0.1)).toBe("0.1")
    expect(orValueString(true)).toBe("true")
    expect(orValueString("x:y")).toBe("x:y")
    // nested objects keep only properties whose names are top-level keys
    expect(orValueString({ b: { c: 1, b: 2 }, a: 1 })).toBe('{"a":1,"b":{"b":2}}')
    // objects inside arrays keep only keys "0", "1", …
    expect(orValueString([{ x: 1, "0": 2 }, 3])).toBe('[{"0":2},3]')
    expect(orValueString({})).toBe("{}")
    expect(orValueString({ n: 10n })).toBe("[object Object]")
  })

  it("sorts tags by UTF-16 code units (not locale)", () => {
    const rec = (tag: string): ORMapRecord => ({ tag, value: 1, timestamp: { millis: 1, counter: 0, nodeId: "n" } })
    expect(orEntryHash("k", [rec("a"), rec("B")])).toBe(fnv1a("key:k|B:1:1:0:n|a:1:1:0:n"))
  })

  it("an empty record set hashes just the key part", () => {
    expect(orEntryHash("k", [])).toBe(fnv1a("key:k"))
  })
})
