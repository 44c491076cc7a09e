import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { fnv1a, hashPath } from "../../src/crdt/hash.js"
import { compareTimestamps } from "../../src/crdt/hlc.js"
import { LWWMap, MERGE_LOST, type StoredLww } from "../../src/crdt/lww-map.js"
import { ARENA_CHUNK_BYTES } from "../../src/crdt/byte-arena.js"
import type { LwwStore } from "../../src/crdt/lww-store.js"
import { lwwItemHash, MerkleTree } from "../../src/crdt/merkle.js"
import type { LWWRecord, Timestamp } from "../../src/crdt/types.js"

const ts = (millis: number, counter = 0, nodeId = "n1"): Timestamp => ({ millis, counter, nodeId })

/** Keys chosen so that some share a depth-3 leaf and several share depth-1/2 nodes (letters and digits). */
const KEYS: ReadonlyArray<string> = (() => {
  const byLeaf = new Map<string, string[]>()
  for (let i = 0; i < 20_000; i++) {
    const key = `k${i}`
    const leaf = hashPath(key).slice(0, 3)
    byLeaf.set(leaf, [...(byLeaf.get(leaf) ?? []), key])
  }
  const sharing = [...byLeaf.values()].filter((keys) => keys.length >= 3).slice(0, 4).flatMap((keys) => keys.slice(0, 3))
  const sameTop = ["a", "b", "c", "d", "e", "f"].flatMap((c) => {
    const found: string[] = []
    for (let i = 0; found.length < 2; i++) if (hashPath(`${c}${i}`)[0] === c) found.push(`${c}${i}`)
    return found
  })
  return [...sharing, ...sameTop, "a", "zzz", "todo:001:title", "", "ü", "ÿ", "日本語", "a\ud800", "\u0100", "k".repeat(40)]
})()

const arbTs = fc.record({
  millis: fc.integer({ min: 1, max: 6 }),
  counter: fc.integer({ min: 0, max: 2 }),
  nodeId: fc.constantFrom("a", "B", "n1")
})

const arbOp = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("merge" as const),
      key: fc.constantFrom(...KEYS),
      ts: arbTs,
      value: fc.constantFrom<unknown>(null, 1, "v", { x: 1 }, { nested: [1, "two", { three: 3.5 }], big: 2 ** 53 - 1 }, "x".repeat(300), false, []),
      ttlMs: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
      /** storedAt: the record's own timestamp object, an equal copy, or another time. */
      stored: fc.oneof(fc.constant("same" as const), fc.constant("copy" as const), arbTs)
    })
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("delete" as const), key: fc.constantFrom(...KEYS) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("prune" as const), bound: arbTs }) }
)

/** Every path a client could ask about: all prefixes of the touched keys' paths, plus absent/invalid ones. */
const probePaths = (keys: Iterable<string>): string[] => {
  const paths = new Set(["", "g", "A", "0g", "ff", "fff", "e40a", "00000000"])
  for (const key of keys) {
    const p = hashPath(key)
    for (let n = 0; n <= 4; n++) paths.add(p.slice(0, n))
  }
  return [...paths]
}

const expectSameTree = (tree: LwwStore, ref: MerkleTree, touched: Iterable<string>) => {
  expect(tree.rootHash).toBe(ref.rootHash)
  expect(tree.size).toBe(ref.size)
  for (const path of probePaths(touched)) {
    const mine = tree.getBuckets(path)
    const theirs = ref.getBuckets(path)
    // identical maps including key order (clients receive them as encoded objects)
    expect(Object.entries(mine)).toEqual(Object.entries(theirs))
    expect(tree.isLeaf(path)).toBe(ref.isLeaf(path))
    expect([...tree.leafKeys(path)].sort()).toEqual([...ref.leafKeys(path)].sort())
  }
  for (const key of touched) expect(tree.itemHash(key)).toBe(ref.itemHash(key))
}

describe("LWWMap's columnar store and tree equal MerkleTree fed the same items", () => {
  it("after any merge/delete/prune sequence: root, buckets (with order), isLeaf, leafKeys; map equals a model", () => {
    fc.assert(
      fc.property(fc.array(arbOp, { maxLength: 60 }), (ops) => {
        const map = new LWWMap()
        const ref = new MerkleTree()
        const model = new Map<string, StoredLww>()
        const touched = new Set<string>()
        for (const op of ops) {
          if (op.kind === "merge") {
            touched.add(op.key)
            const timestamp = op.ts
            const record: LWWRecord = op.ttlMs === undefined ? { value: op.value, timestamp } : { value: op.value, timestamp, ttlMs: op.ttlMs }
            const storedAt = op.stored === "same" ? timestamp : op.stored === "copy" ? { ...timestamp } : op.stored
            const local = model.get(op.key)
            const wins = local === undefined || compareTimestamps(timestamp, local.record.timestamp) > 0
            expect(map.merge(op.key, record, storedAt)).toBe(wins)
            if (wins) {
              model.set(op.key, { record, storedAt })
              ref.update(op.key, lwwItemHash(op.key, timestamp))
            }
          } else if (op.kind === "delete") {
            expect(map.delete(op.key)).toBe(model.delete(op.key))
            ref.remove(op.key)
          } else {
            const expected = [...model].filter(([, s]) => s.record.value === null && compareTimestamps(s.storedAt, op.bound) < 0).map(([k]) => k)
            const pruned = map.pruneTombstones(op.bound)
            expect([...pruned].sort()).toEqual(expected.sort())
            for (const key of pruned) {
              model.delete(key)
              ref.remove(key)
            }
          }
        }
        expectSameTree(map.merkle, ref, touched)
        // the map itself: same content (values decoded: equal, not identical), storedAt equal
        expect(map.size).toBe(model.size)
        expect(map.tombstoneCount).toBe([...model.values()].filter((s) => s.record.value === null).length)
        expect(new Set(map.tombstoneKeys())).toEqual(new Set([...model].filter(([, s]) => s.record.value === null).map(([k]) => k)))
        const entries = [...map.entries()]
        expect(entries.map(([k]) => k).sort()).toEqual([...model.keys()].sort())
        expect([...map.keys()].sort()).toEqual([...model.keys()].sort())
        for (const [key, stored] of entries) {
          const expected = model.get(key)!
          expect(stored.record).toEqual(expected.record)
          expect(stored.storedAt).toEqual(expected.storedAt)
          expect(map.get(key)!.record).toEqual(expected.record)
          expect(map.get(key)!.storedAt).toEqual(expected.storedAt)
          expect(map.visibleValue(key, 0)).toEqual(expected.record.value === null ? undefined : expected.record.value)
        }
        for (const key of KEYS) if (!model.has(key)) expect(map.get(key)).toBeUndefined()
        const expired = map.expiredEntries(8).map(([k, s]) => [k, s.record] as const)
        const expectedExpired = [...model].filter(([, s]) => s.record.value !== null && s.record.ttlMs !== undefined && s.record.timestamp.millis + s.record.ttlMs < 8)
        expect(new Map(expired)).toEqual(new Map(expectedExpired.map(([k, s]) => [k, s.record])))
      }),
      { numRuns: 200 }
    )
  })

  it("an empty tree answers like an empty MerkleTree", () => {
    expectSameTree(new LWWMap().merkle, new MerkleTree(), ["a", "zzz"])
  })

  it("emptied nodes stay and hash to 0; letter buckets keep creation order", () => {
    const map = new LWWMap()
    const ref = new MerkleTree()
    // "a" → e…, "zzz" → a…, "todo:001:title" → 2…: letters created e then a, so getBuckets lists e before a
    for (const [key, t] of [["a", ts(2)], ["zzz", ts(1)], ["todo:001:title", ts(3)]] as const) {
      map.merge(key, { value: 1, timestamp: t }, t)
      ref.update(key, lwwItemHash(key, t))
    }
    map.delete("a")
    ref.remove("a")
    expect(map.merkle.getBuckets("")).toEqual({ "2": lwwItemHash("todo:001:title", ts(3)), a: lwwItemHash("zzz", ts(1)), e: 0 })
    expect(Object.keys(map.merkle.getBuckets(""))).toEqual(["2", "e", "a"])
    expect(map.merkle.isLeaf("e40")).toBe(true)
    expect(map.merkle.leafKeys("e40")).toEqual([])
    expectSameTree(map.merkle, ref, ["a", "zzz", "todo:001:title"])
  })

  it("a losing merge creates no node", () => {
    const map = new LWWMap()
    map.merge("a", { value: 1, timestamp: ts(5) }, ts(5))
    const before = map.merkle.getBuckets("")
    expect(map.merge("a", { value: 2, timestamp: ts(4) }, ts(6))).toBe(false)
    expect(map.merkle.getBuckets("")).toEqual(before)
    expect(map.delete("zzz")).toBe(false)
    expect(map.merkle.getBuckets("")).toEqual(before)
  })
})

describe("values stored encoded", () => {
  it("read back equal but never the writer's object; a snapshot is unaffected by later writes", () => {
    const map = new LWWMap()
    const value = { title: "x", tags: ["a", "b"], n: 1.5, deep: { ok: true, none: null } }
    map.merge("k", { value, timestamp: ts(10, 1, "client") }, ts(11, 0, "srv"))
    const stored = map.get("k")!
    expect(stored.record.value).toEqual(value)
    expect(stored.record.value).not.toBe(value)
    expect(stored.storedAt).toEqual(ts(11, 0, "srv"))
    expect(Object.keys(stored.record)).toEqual(["value", "timestamp"]) // no ttlMs key when there is none
    map.merge("k", { value: { title: "y" }, timestamp: ts(12, 0, "client") }, ts(12, 1, "srv"))
    expect(stored.record.value).toEqual(value)
    expect(map.get("k")!.record).toEqual({ value: { title: "y" }, timestamp: ts(12, 0, "client") })
    expect(map.merkle.itemHash("k")).toBe(lwwItemHash("k", ts(12, 0, "client")))
  })

  it("drops undefined object fields (as the wire and the store do) and keeps a bare undefined", () => {
    const map = new LWWMap()
    map.merge("a", { value: { keep: 1, drop: undefined }, timestamp: ts(1) }, ts(1))
    expect(map.visibleValue("a", 0)).toEqual({ keep: 1 })
    expect(Object.keys(map.visibleValue("a", 0) as object)).toEqual(["keep"])
    // -0 reads back as 0, as MessagePack integers and the JSON store give it
    map.merge("z", { value: -0, timestamp: ts(1) }, ts(1))
    expect(Object.is(map.visibleValue("z", 0), 0)).toBe(true)
    map.merge("u", { value: undefined, timestamp: ts(1) }, ts(1))
    expect(map.get("u")!.record.value).toBeUndefined()
    expect(map.tombstoneCount).toBe(0)
  })

  it("keeps counters that do not fit the 32-bit column exact (timestamps, storage times, order, hashes)", () => {
    const map = new LWWMap()
    const big = 2 ** 40 + 3
    map.merge("a", { value: 1, timestamp: ts(5, big) }, ts(6, 2 ** 32 - 1, "srv"))
    map.merge("b", { value: 2, timestamp: ts(5, 0xfffffffe) }, ts(6, 1, "srv"))
    expect(map.get("a")).toEqual({ record: { value: 1, timestamp: ts(5, big) }, storedAt: ts(6, 2 ** 32 - 1, "srv") })
    expect(map.get("b")!.record.timestamp.counter).toBe(0xfffffffe)
    expect(map.merkle.itemHash("a")).toBe(lwwItemHash("a", ts(5, big)))
    expect(map.merge("a", { value: 9, timestamp: ts(5, big - 1) }, ts(7))).toBe(false) // older counter loses
    expect(map.merge("a", { value: 3, timestamp: ts(5, 7) }, ts(7))).toBe(false)
    expect(map.merge("a", { value: 4, timestamp: ts(5, big + 1) }, ts(7))).toBe(true)
    expect(map.get("a")!.record.timestamp.counter).toBe(big + 1)
    map.merge("a", { value: 5, timestamp: ts(6, 1) }, ts(8)) // back to a small counter
    expect(map.get("a")).toEqual({ record: { value: 5, timestamp: ts(6, 1) }, storedAt: ts(8) })
  })

  it("mergeReplacing decodes the previous value only when asked", () => {
    const map = new LWWMap()
    map.merge("k", { value: { v: 1 }, timestamp: ts(1) }, ts(1))
    expect(map.mergeReplacing("k", { value: { v: 2 }, timestamp: ts(2) }, ts(2), 0)).toEqual({ v: 1 })
    expect(map.mergeReplacing("k", { value: { v: 3 }, timestamp: ts(3) }, ts(3), 0, 0)).toBeUndefined()
    expect(map.mergeReplacing("k", { value: { v: 0 }, timestamp: ts(2) }, ts(4), 0)).toBe(MERGE_LOST)
    expect(map.visibleValue("k", 0)).toEqual({ v: 3 })
  })

  it("reclaims the arena under rewrites of growing and shrinking values; every value stays readable", () => {
    const map = new LWWMap()
    const keys = 2_000
    const model = new Map<string, unknown>()
    let t = 1
    for (let round = 0; round < 30; round++) {
      for (let i = 0; i < keys; i++) {
        // sizes vary by round and key: some rewrites fit in place, others move the blob
        const value = { i, round, pad: "p".repeat(((i * 7 + round * 13) % 50) * 4) }
        map.merge(`key-${i}`, { value, timestamp: ts(t++) }, ts(t))
        model.set(`key-${i}`, value)
      }
      if (round % 10 === 9) for (let i = 0; i < keys; i += 3) {
        map.delete(`key-${i}`)
        model.delete(`key-${i}`)
      }
    }
    expect(map.size).toBe(model.size)
    for (const [key, value] of model) expect(map.visibleValue(key, 0)).toEqual(value)
    expect(new Map(map.visibleEntries(0))).toEqual(model)
    // live data is ~2,000 × ≤ 250 bytes; 30 rounds wrote ~30× that (~15 chunks): the arena must have
    // reclaimed (a chunk or two in use, the current one, two spares)
    expect(map.merkle.arenaBytes).toBeLessThanOrEqual(6 * ARENA_CHUNK_BYTES)
  })

  it("keeps every value readable while deletes empty whole chunks (a delete may move the chunk's other blobs)", () => {
    const map = new LWWMap()
    const value = (i: number) => ({ i, pad: "q".repeat(100 + (i % 7)) })
    const n = 30_000 // ~4 MB of blobs: several full chunks
    for (let i = 0; i < n; i++) map.merge(`key-${i}`, { value: value(i), timestamp: ts(1, i) }, ts(1, i))
    const alive = new Set(Array.from({ length: n }, (_, i) => i))
    // delete in an order that drains chunks unevenly, checking neighbours as chunks fall under a quarter live
    for (let i = 0; i < n; i++) {
      if (i % 5 === 4) continue
      map.delete(`key-${i}`)
      alive.delete(i)
      if (i % 997 === 0) for (const j of [...alive].slice(0, 50)) expect(map.visibleValue(`key-${j}`, 0)).toEqual(value(j))
    }
    expect(map.size).toBe(alive.size)
    for (const j of alive) expect(map.visibleValue(`key-${j}`, 0)).toEqual(value(j))
    expect(map.merkle.arenaBytes).toBeLessThanOrEqual(4 * ARENA_CHUNK_BYTES)
  })

  it("matches a model under a long random mix of growing, shrinking, tombstoning and deleting writes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), (seed) => {
        let x = seed
        const rand = (n: number) => {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0
          return x % n
        }
        const map = new LWWMap()
        const model = new Map<string, unknown>()
        for (let t = 1; t <= 40_000; t++) {
          const key = `k${rand(3_000)}`
          const r = rand(10)
          if (r === 0) {
            map.delete(key)
            model.delete(key)
          } else {
            // now and then a value bigger than a quarter chunk (a chunk of its own)
            const size = r === 9 && rand(40) === 0 ? 300_000 : rand(r < 5 ? 40 : 3_000)
            const value = r === 1 ? null : { t, pad: "z".repeat(size) }
            map.merge(key, { value, timestamp: ts(t) }, ts(t))
            model.set(key, value)
          }
        }
        expect(map.size).toBe(model.size)
        for (const [key, value] of model) expect(map.get(key)!.record.value).toEqual(value)
      }),
      { numRuns: 3 }
    )
  })

  it("rows loaded as JSON text read back parsed, and later writes replace them in place or elsewhere", () => {
    const map = new LWWMap()
    const page = JSON.stringify(Array.from({ length: 3_000 }, (_, i) => ({ i, name: `naïve ${i}`, tags: ["a", i % 3] })))
    // load from ranges of one text, as the SQLite page scanner does (values of varying length, non-ASCII)
    let at = 1
    for (let i = 0; i < 3_000; i++) {
      const end = page.indexOf("]}", at) + 2
      map.loadJson(`key-${i}`, page, at, end, 1, i, "loader", undefined, 1, i, "loader")
      at = end + 1
    }
    map.loadJson("gone", "", -1, 0, 1, 0, "loader", undefined, 1, 0, "loader")
    expect(map.tombstoneCount).toBe(1)
    for (let i = 0; i < 3_000; i += 7) expect(map.visibleValue(`key-${i}`, 0)).toEqual({ i, name: `naïve ${i}`, tags: ["a", i % 3] })
    const model = new Map<string, unknown>()
    for (let i = 0; i < 3_000; i++) model.set(`key-${i}`, { i, name: `naïve ${i}`, tags: ["a", i % 3] })
    for (let round = 0; round < 5; round++) {
      for (let i = round; i < 3_000; i += 3) {
        const value = round % 2 === 0 ? { i, short: true } : { i, long: "x".repeat(200 + round) }
        map.merge(`key-${i}`, { value, timestamp: ts(2 + round, i) }, ts(2 + round, i))
        model.set(`key-${i}`, value)
      }
      for (let i = round; i < 3_000; i += 11) {
        map.delete(`key-${i}`)
        model.delete(`key-${i}`)
      }
    }
    expect(new Map(map.visibleEntries(0))).toEqual(model)
  })

  it("finds every key after random inserts and deletes (open addressing with backward-shift deletion)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 300 })), { maxLength: 800 }), (ops) => {
        const map = new LWWMap()
        const present = new Set<number>()
        let t = 1
        for (const [add, k] of ops) {
          if (add) {
            map.merge(`k${k}`, { value: k, timestamp: ts(t++) }, ts(t))
            present.add(k)
          } else expect(map.delete(`k${k}`)).toBe(present.delete(k))
        }
        expect(map.size).toBe(present.size)
        for (let k = 0; k <= 300; k++) expect(map.visibleValue(`k${k}`, 0)).toBe(present.has(k) ? k : undefined)
      }),
      { numRuns: 100 }
    )
  })
})

describe("written entries", () => {
  it("report visibility, TTL expiry and the index sets from their flattened fields", () => {
    const map = new LWWMap()
    map.merge("t", { value: "v", timestamp: ts(100, 0, "c"), ttlMs: 50 }, ts(100, 1, "srv"))
    expect(map.visibleValue("t", 150)).toBe("v")
    expect(map.visibleValue("t", 151)).toBeUndefined()
    expect(map.expiredEntries(150)).toEqual([])
    expect(map.expiredEntries(151).map(([k, s]) => [k, s.record])).toEqual([["t", { value: "v", timestamp: ts(100, 0, "c"), ttlMs: 50 }]])
    // Replaced by a tombstone: no longer a TTL candidate, now a GC candidate.
    map.merge("t", { value: null, timestamp: ts(101, 0, "c") }, ts(101, 1, "srv"))
    expect(map.expiredEntries(1_000)).toEqual([])
    expect([...map.tombstoneKeys()]).toEqual(["t"])
    expect(map.visibleValue("t", 0)).toBeUndefined()
    expect([...map.visibleEntries(0)]).toEqual([])
    // Back to a live value without TTL.
    map.merge("t", { value: 1, timestamp: ts(102, 0, "c") }, ts(102, 1, "srv"))
    expect(map.tombstoneCount).toBe(0)
    expect([...map.visibleEntries(10_000)]).toEqual([["t", 1]])
    expect(map.pruneTombstones(ts(1_000, 0, "srv"))).toEqual([])
  })
})

describe("lwwItemHash", () => {
  it("equals FNV-1a of the joined string for any timestamp numbers", () => {
    const arbNumber = fc.oneof(
      fc.integer(),
      fc.nat(),
      fc.maxSafeNat(),
      fc.constantFrom(0, -0, 9, 10, 99_999_999, 1e8, 1e8 + 1, 1_700_000_000_000, 1_700_000_000_007, 2 ** 53, Number.MAX_SAFE_INTEGER, 1e21, Infinity, NaN),
      fc.integer({ min: 0, max: 1e6 }).map((k) => k * 1e8 + (k % 3) - 1),
      fc.double()
    )
    fc.assert(
      fc.property(fc.string(), arbNumber, arbNumber, fc.string(), (key, millis, counter, nodeId) => {
        expect(lwwItemHash(key, { millis, counter, nodeId })).toBe(fnv1a(`${key}:${millis}:${counter}:${nodeId}`))
      }),
      { numRuns: 500 }
    )
  })
})

describe("entriesStoredAfter", () => {
  it("yields exactly the entries stored after the bound (storage time, not record time)", () => {
    const map = new LWWMap()
    map.merge("old", { value: 1, timestamp: ts(50) }, ts(5, 0, "srv"))
    map.merge("new", { value: 2, timestamp: ts(1) }, ts(7, 0, "srv")) // an old record stored late
    map.merge("tomb", { value: null, timestamp: ts(2) }, ts(8, 0, "srv"))
    map.merge("edge", { value: 3, timestamp: ts(9) }, ts(6, 0, "srv"))
    const after = (bound: Timestamp) => new Map([...map.entriesStoredAfter(bound)].map(([k, s]) => [k, s.record.value]))
    expect(after(ts(6, 0, "srv"))).toEqual(new Map<string, unknown>([["new", 2], ["tomb", null]]))
    expect(after(ts(0))).toEqual(new Map<string, unknown>([["old", 1], ["new", 2], ["tomb", null], ["edge", 3]]))
    expect(after(ts(8, 0, "srv")).size).toBe(0)
  })
})
