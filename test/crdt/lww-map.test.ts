import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compareTimestamps } from "../../src/crdt/hlc.js"
import { isExpired, isVisible, LWWMap } from "../../src/crdt/lww-map.js"
import { lwwItemHash, MerkleTree } from "../../src/crdt/merkle.js"
import type { LWWRecord, Timestamp } from "../../src/crdt/types.js"

const ts = (millis: number, counter = 0, nodeId = "n1"): Timestamp => ({ millis, counter, nodeId })
const at = ts(0, 0, "srv") // storage time when it does not matter

/** Records whose content is a function of (key, timestamp), as for real writers: same version ⇒ same record. */
const arbWrite = fc
  .record({
    key: fc.constantFrom("a", "b", "zzz", "todo:001:title"),
    millis: fc.integer({ min: 1, max: 4 }),
    counter: fc.integer({ min: 0, max: 2 }),
    nodeId: fc.constantFrom("a", "B", "n1")
  })
  .map(({ key, millis, counter, nodeId }) => {
    const timestamp = ts(millis, counter, nodeId)
    const kind = (["value", "tombstone", "ttl"] as const)[(millis + counter + nodeId.length) % 3]
    const record: LWWRecord =
      kind === "tombstone"
        ? { value: null, timestamp }
        : kind === "ttl"
          ? { value: { key, millis, counter, nodeId }, timestamp, ttlMs: 10 }
          : { value: `${key}@${millis}:${counter}:${nodeId}`, timestamp }
    return { key, record }
  })

const mergeAll = (writes: ReadonlyArray<{ key: string; record: LWWRecord }>) => {
  const map = new LWWMap()
  for (const w of writes) map.merge(w.key, w.record, at)
  return map
}

const snapshot = (map: LWWMap) =>
  Object.fromEntries([...map.entries()].map(([k, s]) => [k, s.record]).sort(([a], [b]) => ((a as string) < (b as string) ? -1 : 1)))

describe("LWWMap.merge", () => {
  it("stores only strictly newer records and reports changes", () => {
    const map = new LWWMap()
    expect(map.merge("k", { value: 1, timestamp: ts(10) }, ts(100, 0, "srv"))).toBe(true)
    expect(map.merge("k", { value: 2, timestamp: ts(10) }, at)).toBe(false) // equal timestamp keeps local
    expect(map.merge("k", { value: 3, timestamp: ts(9, 5) }, at)).toBe(false)
    expect(map.get("k")).toEqual({ record: { value: 1, timestamp: ts(10) }, storedAt: ts(100, 0, "srv") })
    expect(map.merge("k", { value: null, timestamp: ts(10, 1) }, ts(101, 0, "srv"))).toBe(true)
    expect(map.get("k")?.record.value).toBeNull()
    expect(map.get("k")?.storedAt).toEqual(ts(101, 0, "srv"))
    expect(map.size).toBe(1)
    expect(map.tombstoneCount).toBe(1)
    expect(map.merkle.rootHash).toBe(lwwItemHash("k", ts(10, 1)))
  })

  it("breaks equal millis/counter by node id with localeCompare (\"B\" beats \"a\")", () => {
    const map = new LWWMap()
    map.merge("k", { value: "from-a", timestamp: ts(5, 0, "a") }, at)
    expect(map.merge("k", { value: "from-B", timestamp: ts(5, 0, "B") }, at)).toBe(true)
    expect(map.merge("k", { value: "from-a", timestamp: ts(5, 0, "a") }, at)).toBe(false)
    expect(map.get("k")?.record.value).toBe("from-B")
  })

  it("reproduces the §4.6 Merkle vector", () => {
    const map = new LWWMap()
    map.merge("a", { value: 1, timestamp: ts(1700000000000, 0, "n1") }, at)
    map.merge("zzz", { value: null, timestamp: ts(1700000000001, 2, "n2") }, at)
    map.merge("todo:001:title", { value: "x", timestamp: ts(1700000000002, 0, "n1") }, at)
    expect(map.merkle.rootHash).toBe(225920386)
  })

  it("is commutative, associative and idempotent: any order of any multiset gives the same map and root", () => {
    fc.assert(
      fc.property(
        fc.array(arbWrite, { maxLength: 25 }).chain((writes) =>
          fc.tuple(fc.constant(writes), fc.shuffledSubarray(writes, { minLength: writes.length, maxLength: writes.length }))
        ),
        fc.array(fc.nat(), { maxLength: 5 }),
        ([writes, shuffled], dupIdx) => {
          const a = mergeAll(writes)
          // permutation plus re-delivered duplicates
          const dups = writes.length === 0 ? [] : dupIdx.map((i) => writes[i % writes.length]!)
          const b = mergeAll([...shuffled, ...dups])
          expect(snapshot(b)).toEqual(snapshot(a))
          expect(b.merkle.rootHash).toBe(a.merkle.rootHash)
          // associativity: merging two halves' results equals merging everything
          const mid = Math.floor(writes.length / 2)
          const left = mergeAll(writes.slice(0, mid))
          const right = mergeAll(writes.slice(mid))
          for (const [k, s] of right.entries()) left.merge(k, s.record, at)
          expect(snapshot(left)).toEqual(snapshot(a))
          expect(left.merkle.rootHash).toBe(a.merkle.rootHash)
          // the winner per key is the maximum timestamp
          for (const [k, s] of a.entries()) {
            for (const w of writes) if (w.key === k) expect(compareTimestamps(w.record.timestamp, s.record.timestamp)).toBeLessThanOrEqual(0)
          }
          // root equals a tree built fresh from the final content
          const fresh = new MerkleTree()
          for (const [k, s] of a.entries()) fresh.update(k, lwwItemHash(k, s.record.timestamp))
          expect(a.merkle.rootHash).toBe(fresh.rootHash)
        }
      )
    )
  })

  it("load() applies the merge rule", () => {
    const map = new LWWMap()
    map.load("k", { value: 2, timestamp: ts(2) }, at)
    map.load("k", { value: 1, timestamp: ts(1) }, at)
    expect(map.get("k")?.record.value).toBe(2)
    expect(map.merkle.rootHash).toBe(lwwItemHash("k", ts(2)))
  })
})

describe("LWWMap GC", () => {
  it("delete() removes the key from the map and the tree", () => {
    const map = new LWWMap()
    map.merge("k", { value: null, timestamp: ts(1) }, at)
    map.merge("j", { value: 1, timestamp: ts(1) }, at)
    expect(map.delete("k")).toBe(true)
    expect(map.delete("k")).toBe(false)
    expect(map.get("k")).toBeUndefined()
    expect(map.tombstoneCount).toBe(0)
    expect(map.merkle.rootHash).toBe(lwwItemHash("j", ts(1)))
  })

  it("pruneTombstones ages by storage time, not record time", () => {
    const map = new LWWMap()
    // old record time but stored late: must survive
    map.merge("late", { value: null, timestamp: ts(1) }, ts(500, 0, "srv"))
    // recent record time but stored early: pruned
    map.merge("early", { value: null, timestamp: ts(400) }, ts(100, 0, "srv"))
    map.merge("live", { value: 1, timestamp: ts(1) }, ts(1, 0, "srv"))
    expect(map.pruneTombstones(ts(300, 0, "srv"))).toEqual(["early"])
    expect([...map.keys()].sort()).toEqual(["late", "live"])
    expect(map.merkle.rootHash).toBe((lwwItemHash("late", ts(1)) + lwwItemHash("live", ts(1))) % 2 ** 32)
  })

  it("pruneTombstones removes exactly the tombstones stored before the bound", () => {
    const arbEntry = fc.record({
      key: fc.string({ maxLength: 3 }),
      tombstone: fc.boolean(),
      millis: fc.integer({ min: 1, max: 20 }),
      storedMillis: fc.integer({ min: 1, max: 20 })
    })
    fc.assert(
      fc.property(fc.array(arbEntry, { maxLength: 20 }), fc.integer({ min: 0, max: 21 }), (entries, bound) => {
        const map = new LWWMap()
        for (const e of entries) {
          map.merge(e.key, { value: e.tombstone ? null : 1, timestamp: ts(e.millis) }, ts(e.storedMillis, 0, "srv"))
        }
        const before = new Map(map.entries())
        const olderThan = ts(bound, 0, "srv")
        const pruned = new Set(map.pruneTombstones(olderThan))
        for (const [k, s] of before) {
          const shouldPrune = s.record.value === null && compareTimestamps(s.storedAt, olderThan) < 0
          expect(pruned.has(k)).toBe(shouldPrune)
          expect(map.get(k)).toEqual(shouldPrune ? undefined : s)
        }
        const fresh = new MerkleTree()
        for (const [k, s] of map.entries()) fresh.update(k, lwwItemHash(k, s.record.timestamp))
        expect(map.merkle.rootHash).toBe(fresh.rootHash)
        expect(map.tombstoneCount).toBe([...map.entries()].filter(([, s]) => s.record.value === null).length)
      })
    )
  })
})

describe("TTL", () => {
  it("isExpired / isVisible", () => {
    const rec: LWWRecord = { value: 1, timestamp: ts(1000), ttlMs: 100 }
    expect(isExpired(rec, 1100)).toBe(false)
    expect(isExpired(rec, 1101)).toBe(true)
    expect(isVisible(rec, 1100)).toBe(true)
    expect(isVisible(rec, 1101)).toBe(false)
    expect(isExpired({ value: 1, timestamp: ts(0) }, Number.MAX_SAFE_INTEGER)).toBe(false)
    expect(isVisible({ value: null, timestamp: ts(0) }, 0)).toBe(false)
  })

  it("expiredEntries lists live records past their TTL only", () => {
    const map = new LWWMap()
    map.merge("ttl", { value: 1, timestamp: ts(1000), ttlMs: 100 }, at)
    map.merge("later", { value: 1, timestamp: ts(1000), ttlMs: 500 }, at)
    map.merge("plain", { value: 1, timestamp: ts(1000) }, at)
    expect(map.expiredEntries(1200).map(([k]) => k)).toEqual(["ttl"])
    map.merge("ttl", { value: null, timestamp: ts(1100, 0, "srv") }, at) // the sweep's tombstone
    expect(map.expiredEntries(1200)).toEqual([])
    expect(map.expiredEntries(2000).map(([k]) => k)).toEqual(["later"])
  })
})
