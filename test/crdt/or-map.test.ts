import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compareTimestamps } from "../../src/crdt/hlc.js"
import { MerkleTree, orEntryHash } from "../../src/crdt/merkle.js"
import { ORMap } from "../../src/crdt/or-map.js"
import type { ORMapRecord, Timestamp } from "../../src/crdt/types.js"

const ts = (millis: number, counter = 0, nodeId = "n1"): Timestamp => ({ millis, counter, nodeId })
const at = (millis: number): Timestamp => ts(millis, 0, "srv")
const rec = (tag: string, value: unknown, timestamp: Timestamp, ttlMs?: number): ORMapRecord =>
  ttlMs === undefined ? { tag, value, timestamp } : { tag, value, timestamp, ttlMs }

type Op =
  | { readonly kind: "apply"; readonly key: string; readonly record: ORMapRecord }
  | { readonly kind: "tombstone"; readonly tag: string }
  | { readonly kind: "merge"; readonly key: string; readonly records: ORMapRecord[]; readonly tombstones: string[] }

const arbTag = fc.constantFrom("t1", "t2", "t3", "t4", "t5", "T6")
const arbKey = fc.constantFrom("k1", "k2", "list-1")
/** A record version is a function of (tag, timestamp): the same version always carries the same content. */
const arbRecord = fc
  .record({ tag: arbTag, millis: fc.integer({ min: 1, max: 3 }), nodeId: fc.constantFrom("a", "B") })
  .map(({ tag, millis, nodeId }) =>
    rec(tag, millis === 2 ? { v: tag, n: millis } : `${tag}@${millis}${nodeId}`, ts(millis, 0, nodeId), millis === 3 ? 50 : undefined)
  )
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("apply" as const), key: arbKey, record: arbRecord }),
  fc.record({ kind: fc.constant("tombstone" as const), tag: arbTag }),
  fc.record({
    kind: fc.constant("merge" as const),
    key: arbKey,
    records: fc.array(arbRecord, { maxLength: 3 }),
    tombstones: fc.array(arbTag, { maxLength: 2 })
  })
)

const run = (ops: ReadonlyArray<Op>, map = new ORMap()) => {
  ops.forEach((op, i) => {
    if (op.kind === "apply") map.apply(op.key, op.record, at(i))
    else if (op.kind === "tombstone") map.applyTombstone(op.tag, at(i))
    else map.mergeKey(op.key, op.records, op.tombstones, at(i))
  })
  return map
}

const byTag = (a: ORMapRecord, b: ORMapRecord) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0)

/** Order-insensitive view of the CRDT state (records per key sorted by tag, tombstones sorted). */
const snapshot = (map: ORMap) => ({
  items: Object.fromEntries(
    [...map.keys()].sort().map((k) => [k, [...map.getRecords(k)].sort(byTag)])
  ),
  tombstones: map.tombstoneTags().sort()
})

/** Reference semantics: union of tombstones; per (key, tag) the newest record unless the tag is tombstoned. */
const model = (ops: ReadonlyArray<Op>) => {
  const tombstones = new Set<string>()
  const items = new Map<string, Map<string, ORMapRecord>>()
  const add = (key: string, r: ORMapRecord) => {
    const tags = items.get(key) ?? new Map<string, ORMapRecord>()
    items.set(key, tags)
    const cur = tags.get(r.tag)
    if (cur === undefined || compareTimestamps(r.timestamp, cur.timestamp) > 0) tags.set(r.tag, r)
  }
  for (const op of ops) {
    if (op.kind === "apply") add(op.key, op.record)
    else if (op.kind === "tombstone") tombstones.add(op.tag)
    else {
      op.tombstones.forEach((t) => tombstones.add(t))
      op.records.forEach((r) => add(op.key, r))
    }
  }
  const out: Record<string, ORMapRecord[]> = {}
  for (const k of [...items.keys()].sort()) {
    const live = [...items.get(k)!.values()].filter((r) => !tombstones.has(r.tag)).sort(byTag)
    if (live.length > 0) out[k] = live
  }
  return { items: out, tombstones: [...tombstones].sort() }
}

const freshRoot = (map: ORMap) => {
  const tree = new MerkleTree()
  for (const k of map.keys()) tree.update(k, orEntryHash(k, map.getRecords(k)))
  return tree.rootHash
}

describe("ORMap basics", () => {
  it("apply adds records in tag-insertion order and ignores duplicates and older versions", () => {
    const map = new ORMap()
    expect(map.apply("k", rec("t2", "b", ts(2)), at(1))).toBe(true)
    expect(map.apply("k", rec("t1", "a", ts(1)), at(2))).toBe(true)
    expect(map.apply("k", rec("t1", "a", ts(1)), at(3))).toBe(false)
    expect(map.apply("k", rec("t1", "old", ts(0)), at(3))).toBe(false)
    expect(map.getRecords("k").map((r) => r.tag)).toEqual(["t2", "t1"])
    expect(map.recordStoredAt("k", "t1")).toEqual(at(2))
    expect(map.apply("k", rec("t2", "b2", ts(5)), at(4))).toBe(true) // newer version of the same tag
    expect(map.getRecords("k").map((r) => r.value)).toEqual(["b2", "a"]) // keeps its position
    expect(map.recordStoredAt("k", "t2")).toEqual(at(4))
    expect(map.findKeyOfTag("t1")).toBe("k")
    expect(map.findKeyOfTag("nope")).toBeUndefined()
    expect(map.merkle.rootHash).toBe(orEntryHash("k", map.getRecords("k")))
  })

  it("reproduces the §4.6 OR vector", () => {
    const map = new ORMap()
    map.apply("list-1", rec("1700000000000:1:n1", "hello", ts(1700000000000, 1, "n1"), 5000), at(1))
    map.apply("list-1", rec("1700000000000:0:n1", { b: 1, a: { x: 1, a: 2 } }, ts(1700000000000, 0, "n1")), at(2))
    expect(map.merkle.rootHash).toBe(107491507)
  })

  it("applyTombstone removes the record, drops an emptied key, and blocks a late add", () => {
    const map = new ORMap()
    map.apply("k", rec("t1", "a", ts(1)), at(1))
    map.apply("j", rec("t2", "b", ts(1)), at(1))
    expect(map.applyTombstone("t1", at(5))).toEqual({ changed: true, key: "k", removed: rec("t1", "a", ts(1)) })
    expect([...map.keys()]).toEqual(["j"])
    expect(map.getRecords("k")).toEqual([])
    expect(map.merkle.itemHash("k")).toBeUndefined()
    expect(map.merkle.rootHash).toBe(orEntryHash("j", map.getRecords("j")))
    expect(map.applyTombstone("t1", at(9))).toEqual({ changed: false })
    expect(map.tombstoneEntries().next().value).toEqual(["t1", at(5)]) // first storage time kept
    expect(map.apply("k", rec("t1", "a", ts(1)), at(10))).toBe(false)
    expect(map.findKeyOfTag("t1")).toBeUndefined()
  })

  it("a tombstone for an unknown tag is a change and is remembered", () => {
    const map = new ORMap()
    expect(map.applyTombstone("ghost", at(1))).toEqual({ changed: true })
    expect(map.isTombstoned("ghost")).toBe(true)
    expect(map.apply("k", rec("ghost", 1, ts(1)), at(2))).toBe(false)
    expect(map.merkle.rootHash).toBe(0)
  })

  it("a tag used under two keys is removed from both", () => {
    const map = new ORMap()
    map.apply("k", rec("t", 1, ts(1)), at(1))
    map.apply("j", rec("t", 1, ts(1)), at(1))
    const result = map.applyTombstone("t", at(2))
    expect(result.changed).toBe(true)
    expect([result.key, ...(result.others ?? []).map((o) => o.key)].sort()).toEqual(["j", "k"])
    expect(map.size).toBe(0)
    expect(map.merkle.rootHash).toBe(0)
  })

  it("mergeKey learns tombstones map-wide and reports added, updated, removed", () => {
    const map = new ORMap()
    map.apply("k", rec("t1", "a", ts(1)), at(1))
    map.apply("k", rec("t2", "b", ts(1)), at(1))
    map.apply("other", rec("t9", "z", ts(1)), at(1))
    map.applyTombstone("known", at(1))
    const result = map.mergeKey(
      "k",
      [rec("t2", "b2", ts(2)), rec("t3", "c", ts(1)), rec("t1", "stale", ts(0)), rec("t4", "dead", ts(1))],
      ["t4", "t9", "known"],
      at(7)
    )
    expect(result).toEqual({
      added: [rec("t3", "c", ts(1))],
      updated: [rec("t2", "b2", ts(2))],
      removed: [{ key: "other", tag: "t9", record: rec("t9", "z", ts(1)) }],
      newTombstones: ["t4", "t9"]
    })
    expect([...map.keys()]).toEqual(["k"])
    expect(map.getRecords("k").map((r) => r.value)).toEqual(["a", "b2", "c"])
    expect(map.recordStoredAt("k", "t3")).toEqual(at(7))
    expect(map.merkle.rootHash).toBe(freshRoot(map))
  })

  it("TTL: liveValues hides expired records; expiredRecords lists them until tombstoned", () => {
    const map = new ORMap()
    map.apply("k", rec("t1", "short", ts(1000), 100), at(1))
    map.apply("k", rec("t2", "long", ts(1000), 1000), at(1))
    map.apply("k", rec("t3", "forever", ts(1000)), at(1))
    expect(map.liveValues("k", 1100)).toEqual(["short", "long", "forever"])
    expect(map.liveValues("k", 1101)).toEqual(["long", "forever"])
    expect(map.liveRecords("k", 1101).map((r) => r.tag)).toEqual(["t2", "t3"])
    expect(map.expiredRecords(1101).map((s) => s.record.tag)).toEqual(["t1"])
    map.applyTombstone("t1", at(2))
    expect(map.expiredRecords(1101)).toEqual([])
    expect(map.expiredRecords(5000).map((s) => s.record.tag)).toEqual(["t2"])
  })

  it("loadKey / loadRecord / loadTombstone rebuild the same state as live operations", () => {
    const live = new ORMap()
    live.apply("k", rec("t1", "a", ts(1)), at(1))
    live.apply("k", rec("t2", "b", ts(2)), at(2))
    live.applyTombstone("x", at(3))
    const loaded = new ORMap()
    loaded.loadTombstone("x", at(3))
    loaded.loadKey("k", [
      { record: rec("t1", "a", ts(1)), storedAt: at(1) },
      { record: rec("x", "dead", ts(1)), storedAt: at(1) }
    ])
    loaded.loadRecord("k", rec("t2", "b", ts(2)), at(2))
    expect(snapshot(loaded)).toEqual(snapshot(live))
    expect(loaded.merkle.rootHash).toBe(live.merkle.rootHash)
    expect(loaded.recordStoredAt("k", "t2")).toEqual(at(2))
  })
})

describe("ORMap convergence", () => {
  it("any order of apply / applyTombstone / mergeKey ops converges to the reference state and Merkle root", () => {
    fc.assert(
      fc.property(
        fc.array(arbOp, { maxLength: 25 }).chain((ops) =>
          fc.tuple(fc.constant(ops), fc.shuffledSubarray(ops, { minLength: ops.length, maxLength: ops.length }))
        ),
        ([ops, shuffled]) => {
          const a = run(ops)
          const b = run([...shuffled, ...shuffled.slice(0, 3)]) // re-delivery is harmless
          const expected = model(ops)
          expect(snapshot(a)).toEqual(expected)
          expect(snapshot(b)).toEqual(expected)
          expect(b.merkle.rootHash).toBe(a.merkle.rootHash)
          expect(a.merkle.rootHash).toBe(freshRoot(a))
          expect(a.merkle.size).toBe(a.size)
          for (const k of a.keys()) for (const r of a.getRecords(k)) expect(a.findKeyOfTag(r.tag)).toBeDefined()
        }
      )
    )
  })

  it("change reports match the actual state change; the Merkle root is right after every op", () => {
    fc.assert(
      fc.property(fc.array(arbOp, { maxLength: 20 }), (ops) => {
        const map = new ORMap()
        ops.forEach((op, i) => {
          const before = snapshot(map)
          if (op.kind === "apply") {
            const changed = map.apply(op.key, op.record, at(i))
            expect(changed).toBe(JSON.stringify(snapshot(map)) !== JSON.stringify(before))
          } else if (op.kind === "tombstone") {
            const wasKnown = before.tombstones.includes(op.tag)
            const result = map.applyTombstone(op.tag, at(i))
            expect(result.changed).toBe(!wasKnown)
            const holders = Object.entries(before.items).filter(([, rs]) => rs.some((r) => r.tag === op.tag))
            expect(result.key === undefined ? 0 : 1 + (result.others?.length ?? 0)).toBe(wasKnown ? 0 : holders.length)
          } else {
            const result = map.mergeKey(op.key, op.records, op.tombstones, at(i))
            const after = snapshot(map)
            const stateChanged = JSON.stringify(after) !== JSON.stringify(before)
            const reported =
              result.added.length + result.updated.length + result.removed.length + result.newTombstones.length > 0
            expect(reported).toBe(stateChanged)
            for (const t of result.newTombstones) expect(before.tombstones).not.toContain(t)
            for (const r of result.removed) expect(after.items[r.key]?.some((x) => x.tag === r.tag) ?? false).toBe(false)
          }
          // the incrementally maintained tree matches a full recomputation after every step
          expect(map.merkle.rootHash).toBe(freshRoot(map))
        })
      })
    )
  })

  it("pruneTombstones removes exactly the tombstones stored before the bound and nothing else", () => {
    fc.assert(
      fc.property(fc.array(arbOp, { maxLength: 20 }), fc.integer({ min: 0, max: 21 }), (ops, bound) => {
        const map = run(ops)
        const tombstonesBefore = new Map(map.tombstoneEntries())
        const itemsBefore = snapshot(map).items
        const rootBefore = map.merkle.rootHash
        const pruned = new Set(map.pruneTombstones(at(bound)))
        for (const [tag, storedAt] of tombstonesBefore) {
          const old = compareTimestamps(storedAt, at(bound)) < 0
          expect(pruned.has(tag)).toBe(old)
          expect(map.isTombstoned(tag)).toBe(!old)
        }
        expect(pruned.size).toBeLessThanOrEqual(tombstonesBefore.size)
        expect(snapshot(map).items).toEqual(itemsBefore)
        expect(map.merkle.rootHash).toBe(rootBefore)
      })
    )
  })
})
