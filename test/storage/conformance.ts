/**
 * The one conformance suite every `Storage` layer must pass (architecture.md "Seams").
 * `makeStore` returns a layer over a FRESH, empty store; building that same layer again must reopen the
 * same store (for durable layers), which is how the reopen test checks persistence.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Layer, Option, Stream } from "effect"
import * as fc from "fast-check"
import type { LWWRecord, ORMapRecord, Timestamp } from "../../src/crdt/types.js"
import { type LoadedMap, Storage, type StorageError, type StorageMutation, type StorageService } from "../../src/layers/Storage.js"
import { loadedLwwOf } from "../../src/layers/storage/load.js"

export interface StoreUnderTest {
  readonly layer: Layer.Layer<Storage, StorageError>
}

const ts = (millis: number, counter = 0, nodeId = "node-a"): Timestamp => ({ millis, counter, nodeId })
const lww = (value: unknown, timestamp: Timestamp, ttlMs?: number): LWWRecord =>
  ttlMs === undefined ? { value, timestamp } : { value, timestamp, ttlMs }
const orRec = (value: unknown, timestamp: Timestamp, tag: string, ttlMs?: number): ORMapRecord =>
  ttlMs === undefined ? { value, timestamp, tag } : { value, timestamp, tag, ttlMs }
const put = (mapName: string, key: string, record: LWWRecord, storedAt: Timestamp = record.timestamp): StorageMutation => ({
  _tag: "LwwPut",
  mapName,
  key,
  record,
  storedAt
})
const orPut = (mapName: string, key: string, record: ORMapRecord, storedAt: Timestamp = record.timestamp): StorageMutation => ({
  _tag: "OrPut",
  mapName,
  key,
  record,
  storedAt
})

const byKey = <A extends { readonly key: string }>(rows: ReadonlyArray<A>): Record<string, A> =>
  Object.fromEntries(rows.map((r) => [r.key, r]))
const sortedTags = (m: LoadedMap): Array<string> => m.orRecords.map((r) => r.record.tag).sort()

export const storageConformance = (
  name: string,
  makeStore: () => Promise<StoreUnderTest>,
  options: { readonly durable: boolean }
) => {
  /** Builds the layer in its own scope and runs `f` against the service. */
  const using = <A>(layer: Layer.Layer<Storage, StorageError>, f: (s: StorageService) => Effect.Effect<A, StorageError>) =>
    Effect.scoped(Effect.flatMap(Layer.build(layer), (ctx) => f(Context.get(ctx, Storage))))
  const withStore = <A>(f: (s: StorageService) => Effect.Effect<A, StorageError>) =>
    Effect.flatMap(Effect.promise(makeStore), (store) => using(store.layer, f))

  describe(`Storage conformance: ${name}`, () => {
    it.live("reports its kind and durability", () =>
      withStore((s) =>
        Effect.gen(function*() {
          expect(s.durable).toBe(options.durable)
          expect(s.kind).toBe(name)
          yield* s.ping
        })
      ))

    it.live("applies a batch in order, including several versions of one row", () =>
      withStore((s) =>
        Effect.gen(function*() {
          yield* s.write([
            put("m", "k", lww("v1", ts(10))),
            put("m", "k", lww("v2", ts(20))),
            { _tag: "LwwDelete", mapName: "m", key: "k" },
            put("m", "k", lww("v3", ts(5))), // older than v2, but v2 was pruned: it lands
            put("m", "j", lww("j1", ts(1))),
            { _tag: "Meta", key: "seq", value: "1" },
            { _tag: "Meta", key: "seq", value: "2" }
          ])
          const m = byKey((yield* s.loadMap("m")).lww)
          expect(m["k"]!.record).toEqual(lww("v3", ts(5)))
          expect(m["j"]!.record.value).toBe("j1")
          expect(yield* s.getMeta("seq")).toEqual(Option.some("2"))
        })
      ))

    it.live("applies batches in order", () =>
      withStore((s) =>
        Effect.gen(function*() {
          yield* s.write([put("m", "k", lww("v1", ts(10)))])
          yield* s.write([put("m", "k", lww("v2", ts(20)))])
          expect((yield* s.loadMap("m")).lww.map((r) => r.record.value)).toEqual(["v2"])
          yield* s.write([{ _tag: "LwwDelete", mapName: "m", key: "k" }])
          expect((yield* s.loadMap("m")).lww).toEqual([])
          yield* s.write([put("m", "k", lww("v3", ts(1)))])
          expect((yield* s.loadMap("m")).lww.map((r) => r.record.value)).toEqual(["v3"])
        })
      ))

    it.live("replaces an LWW row with a newer version, with every field", () =>
      withStore((s) =>
        Effect.gen(function*() {
          yield* s.write([put("m", "k", lww({ a: 1 }, ts(10, 0, "node-a"), 1000), ts(11, 0, "srv"))])
          yield* s.write([put("m", "k", lww({ b: 2 }, ts(10, 1, "node-b")), ts(12, 3, "srv"))])
          const [row] = (yield* s.loadMap("m")).lww
          expect(row).toEqual({ key: "k", record: lww({ b: 2 }, ts(10, 1, "node-b")), storedAt: ts(12, 3, "srv") })
          expect("ttlMs" in row!.record).toBe(false)
        })
      ))

    it.live("is merge-aware: an older or equal HLC never replaces a row", () =>
      withStore((s) =>
        Effect.gen(function*() {
          yield* s.write([put("m", "k", lww("new", ts(100, 5, "node-b")))])
          yield* s.write([
            put("m", "k", lww("older-millis", ts(99, 9, "node-z"))),
            put("m", "k", lww("older-counter", ts(100, 4, "node-z"))),
            put("m", "k", lww("older-node", ts(100, 5, "node-a"))),
            put("m", "k", lww("same", ts(100, 5, "node-b")))
          ])
          expect((yield* s.loadMap("m")).lww[0]!.record.value).toBe("new")
          // Node id breaks a (millis, counter) tie.
          yield* s.write([put("m", "k", lww("node-tie", ts(100, 5, "node-c")))])
          expect((yield* s.loadMap("m")).lww[0]!.record.value).toBe("node-tie")
          // A tombstone is a version like any other.
          yield* s.write([put("m", "k", lww(null, ts(101)))])
          yield* s.write([put("m", "k", lww("resurrect?", ts(100, 9)))])
          expect((yield* s.loadMap("m")).lww[0]!.record).toEqual(lww(null, ts(101)))
        })
      ))

    it.live("round-trips tombstones, ttlMs, storedAt and value shapes", () =>
      withStore((s) =>
        Effect.gen(function*() {
          const rows: Array<StorageMutation> = [
            put("m", "tomb", lww(null, ts(5)), ts(6, 1, "srv")),
            put("m", "ttl", lww("x", ts(7), 30_000), ts(8, 0, "srv")),
            put("m", "big-ts", lww(0, ts(Number.MAX_SAFE_INTEGER - 1, 2 ** 31 - 1, "node-zz"), 2 ** 40), ts(2 ** 52, 7, "srv")),
            put("m", "shapes", lww({ z: 1, a: [1, "two", { three: null }], n: -1.5e-7, b: false, s: "\u0000\ud800" }, ts(9))),
            put("m", "empty-string", lww("", ts(9))),
            put("m", "zero", lww(0, ts(9))),
            put("m", "", lww("empty key", ts(9)))
          ]
          yield* s.write(rows)
          const m = byKey((yield* s.loadMap("m")).lww)
          for (const mut of rows) {
            if (mut._tag !== "LwwPut") continue
            expect(m[mut.key]).toEqual({ key: mut.key, record: mut.record, storedAt: mut.storedAt })
          }
          // Key order inside objects survives (no JSON normalisation).
          expect(Object.keys(m["shapes"]!.record.value as object)).toEqual(["z", "a", "n", "b", "s"])
          expect(m["tomb"]!.record.value).toBeNull()
        })
      ))

    it.live("stores OR records, removes, tombstones and prunes", () =>
      withStore((s) =>
        Effect.gen(function*() {
          yield* s.write([
            { _tag: "MapType", mapName: "o", mapType: "OR" },
            orPut("o", "k1", orRec({ v: 1 }, ts(1), "t1"), ts(2, 0, "srv")),
            orPut("o", "k1", orRec({ v: 2 }, ts(3), "t2", 500)),
            orPut("o", "k2", orRec("x", ts(4), "t3"))
          ])
          let m = yield* s.loadMap("o")
          expect(m.mapType).toBe("OR")
          expect(sortedTags(m)).toEqual(["t1", "t2", "t3"])
          expect(m.orRecords.find((r) => r.record.tag === "t1")).toEqual({ key: "k1", record: orRec({ v: 1 }, ts(1), "t1"), storedAt: ts(2, 0, "srv") })
          expect(m.orRecords.find((r) => r.record.tag === "t2")!.record.ttlMs).toBe(500)

          yield* s.write([
            { _tag: "OrRemove", mapName: "o", key: "k1", tag: "t1" },
            { _tag: "OrTombstone", mapName: "o", tag: "t1", storedAt: ts(10, 0, "srv") },
            { _tag: "OrTombstone", mapName: "o", tag: "t3", storedAt: ts(11, 0, "srv") }, // removes k2's record by tag
            orPut("o", "k2", orRec("again", ts(12), "t3")) // a tombstoned tag is not re-added
          ])
          m = yield* s.loadMap("o")
          expect(sortedTags(m)).toEqual(["t2"])
          expect([...m.orTombstones].sort((a, b) => a.tag.localeCompare(b.tag))).toEqual([
            { tag: "t1", storedAt: ts(10, 0, "srv") },
            { tag: "t3", storedAt: ts(11, 0, "srv") }
          ])
          // A tombstone keeps the time it was first stored.
          yield* s.write([{ _tag: "OrTombstone", mapName: "o", tag: "t1", storedAt: ts(99, 0, "srv") }])
          expect((yield* s.loadMap("o")).orTombstones.find((t) => t.tag === "t1")!.storedAt).toEqual(ts(10, 0, "srv"))

          yield* s.write([{ _tag: "OrPruneTombstone", mapName: "o", tag: "t1" }])
          m = yield* s.loadMap("o")
          expect(m.orTombstones.map((t) => t.tag)).toEqual(["t3"])
          // After the prune the tag is unknown again.
          yield* s.write([orPut("o", "k1", orRec("back", ts(13), "t1"))])
          expect(sortedTags(yield* s.loadMap("o"))).toEqual(["t1", "t2"])
        })
      ))

    it.live("keeps the first map type and lists typed maps", () =>
      withStore((s) =>
        Effect.gen(function*() {
          expect(yield* s.listMaps).toEqual([])
          expect(yield* s.getMapType("a")).toEqual(Option.none())
          expect((yield* s.loadMap("nothing")).mapType).toBeUndefined()
          yield* s.write([
            { _tag: "MapType", mapName: "b", mapType: "OR" },
            { _tag: "MapType", mapName: "a", mapType: "LWW" },
            { _tag: "MapType", mapName: "a", mapType: "OR" }
          ])
          yield* s.write([{ _tag: "MapType", mapName: "b", mapType: "LWW" }])
          expect(yield* s.listMaps).toEqual([{ name: "a", mapType: "LWW" }, { name: "b", mapType: "OR" }])
          expect(yield* s.getMapType("b")).toEqual(Option.some("OR"))
          expect((yield* s.loadMap("a")).mapType).toBe("LWW")
        })
      ))

    it.live("gets, overwrites and lists node metadata by prefix", () =>
      withStore((s) =>
        Effect.gen(function*() {
          expect(yield* s.getMeta("journal.seq")).toEqual(Option.none())
          yield* s.write([
            { _tag: "Meta", key: "journal.seq", value: "41" },
            { _tag: "Meta", key: "lock.b", value: JSON.stringify({ fence: 2 }) },
            { _tag: "Meta", key: "lock.a", value: JSON.stringify({ fence: 1 }) },
            { _tag: "Meta", key: "lockless", value: "x" }
          ])
          yield* s.write([{ _tag: "Meta", key: "journal.seq", value: "42" }])
          expect(yield* s.getMeta("journal.seq")).toEqual(Option.some("42"))
          expect(yield* s.metaByPrefix("lock.")).toEqual([["lock.a", "{\"fence\":1}"], ["lock.b", "{\"fence\":2}"]])
          expect((yield* s.metaByPrefix("")).length).toBe(4)
          expect(yield* s.metaByPrefix("nope")).toEqual([])
        })
      ))

    it.live("round-trips 1 MB values", () =>
      withStore((s) =>
        Effect.gen(function*() {
          const big = "é😀x".repeat(350_000) // > 1 MB of UTF-8
          const obj = { rows: Array.from({ length: 20_000 }, (_, i) => ({ i, s: `row-${i}` })) }
          yield* s.write([
            put("big", "s", lww(big, ts(1))),
            put("big", "o", lww(obj, ts(1))),
            orPut("bigor", "k", orRec(big, ts(1), "t"))
          ])
          const m = byKey((yield* s.loadMap("big")).lww)
          expect(m["s"]!.record.value).toBe(big)
          expect(m["o"]!.record.value).toEqual(obj)
          expect((yield* s.loadMap("bigor")).orRecords[0]!.record.value).toBe(big)
        })
      ))

    it.live("loads a map of many large values in memory-bounded pages", () =>
      withStore((s) =>
        Effect.gen(function*() {
          const value = (i: number) => `${i}:`.padEnd(900_000, "v")
          for (let i = 0; i < 24; i += 8) {
            yield* s.write(Array.from({ length: 8 }, (_, j) => put("large", `k${String(i + j).padStart(2, "0")}`, lww(value(i + j), ts(1)))))
          }
          const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(s.streamMap("large")))
          const rows = chunks.flatMap((c) => loadedLwwOf(c))
          expect(rows.length).toBe(24)
          for (const r of rows) expect(r.record.value).toBe(value(Number(r.key.slice(1))))
          if (options.durable) {
            // ~8 MB per page: nowhere near 24 values of 0.9 MB in one page.
            expect(Math.max(...chunks.map((c) => c.rows.length))).toBeLessThanOrEqual(16)
            expect(chunks.length).toBeGreaterThan(1)
          }
        })
      ))

    it.live("round-trips unicode keys, map names, tags and node ids", () =>
      withStore((s) =>
        Effect.gen(function*() {
          const keys = ["😀", "👩‍👩‍👧‍👦", "東京", "한국어", "e\u0301", "é", "Ω≈ç√", "key with spaces", "a/b:c", "\uffff", "𝔘𝔫𝔦"]
          const map = "карта-🗺️"
          yield* s.write(keys.map((k, i) => put(map, k, lww(`${k}!`, ts(i, 0, "ノード")))))
          yield* s.write([orPut("o-ü", "ключ", orRec(1, ts(1), "标签-😀"))])
          const m = byKey((yield* s.loadMap(map)).lww)
          expect(Object.keys(m).sort()).toEqual([...keys].sort())
          for (const k of keys) expect(m[k]!.record.value).toBe(`${k}!`)
          expect(m["e\u0301"]!.key).not.toBe(m["é"]!.key) // no unicode normalisation
          expect((yield* s.loadMap("o-ü")).orRecords[0]!.record.tag).toBe("标签-😀")
        })
      ))

    it.live("round-trips arbitrary JSON values and unicode keys (property)", () =>
      withStore((s) =>
        Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(
              fc.uniqueArray(fc.tuple(fc.string({ unit: "grapheme", maxLength: 12 }).filter((k) => !k.includes("\u0000")), fc.jsonValue()), {
                selector: ([k]) => k,
                maxLength: 20
              }),
              fc.integer({ min: 0, max: 1e9 }),
              async (entries, run) => {
                const map = `prop-${run}-${Math.random()}`
                await Effect.runPromise(s.write(entries.map(([k, v]) => put(map, k, lww(v, ts(1))))))
                const loaded = byKey((await Effect.runPromise(s.loadMap(map))).lww)
                expect(Object.keys(loaded).length).toBe(entries.length)
                // Compared as JSON text: key order must survive; -0 may come back as 0 (JSON has no -0).
                for (const [k, v] of entries) expect(JSON.stringify(loaded[k]!.record.value)).toBe(JSON.stringify(v))
              }
            ),
            { numRuns: 25 }
          )
        )
      ))

    it.live("streams a map in bounded chunks: tombstones, then OR records, then LWW rows", () =>
      withStore((s) =>
        Effect.gen(function*() {
          const batch: Array<StorageMutation> = []
          for (let i = 0; i < 23; i++) batch.push(put("st", `k${String(i).padStart(2, "0")}`, lww(i, ts(i))))
          for (let i = 0; i < 17; i++) batch.push(orPut("st", `o${i % 5}`, orRec(i, ts(i), `tag${i}`)))
          for (let i = 0; i < 9; i++) batch.push({ _tag: "OrTombstone", mapName: "st", tag: `dead${i}`, storedAt: ts(i) })
          yield* s.write(batch)
          const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(s.streamMap("st", 4)))
          for (const c of chunks) {
            expect(c.rows.length).toBeGreaterThan(0)
            expect(c.rows.length).toBeLessThanOrEqual(4)
          }
          // LWW rows come as records (memory), flat rows (PostgreSQL) or JSON pages (SQLite): one phase either way
          const tags = chunks.map((c) => (c._tag === "LwwRows" || c._tag === "LwwPage" ? "Lww" : c._tag))
          expect(tags).toEqual([...tags].sort((a, b) => ["OrTombstones", "OrRecords", "Lww"].indexOf(a) - ["OrTombstones", "OrRecords", "Lww"].indexOf(b)))
          const count = (tag: string) => chunks.filter((c) => (c._tag === "LwwRows" || c._tag === "LwwPage" ? "Lww" : c._tag) === tag).reduce((n, c) => n + c.rows.length, 0)
          expect([count("OrTombstones"), count("OrRecords"), count("Lww")]).toEqual([9, 17, 23])
          const lwwKeys = chunks.flatMap((c) => loadedLwwOf(c).map((r) => r.key))
          expect(new Set(lwwKeys).size).toBe(23)
        })
      ))

    it.live("serves many maps written concurrently", () =>
      withStore((s) =>
        Effect.gen(function*() {
          const names = Array.from({ length: 40 }, (_, i) => `map-${i}`)
          yield* Effect.forEach(
            names,
            (n, i) =>
              s.write([
                { _tag: "MapType", mapName: n, mapType: i % 2 === 0 ? "LWW" : "OR" },
                ...Array.from({ length: 10 }, (_, j) =>
                  i % 2 === 0 ? put(n, `k${j}`, lww(`${n}/${j}`, ts(j))) : orPut(n, `k${j}`, orRec(`${n}/${j}`, ts(j), `${n}-t${j}`)))
              ]),
            { concurrency: 8, discard: true }
          )
          expect((yield* s.listMaps).length).toBe(40)
          const loaded = yield* Effect.forEach(names, (n) => s.loadMap(n), { concurrency: 8 })
          loaded.forEach((m, i) => {
            const values = (i % 2 === 0 ? m.lww.map((r) => r.record.value) : m.orRecords.map((r) => r.record.value)) as Array<string>
            expect(values.sort()).toEqual(Array.from({ length: 10 }, (_, j) => `${names[i]}/${j}`).sort())
          })
        })
      ))

    if (options.durable) {
      it.live("keeps everything after the store is closed and reopened", () =>
        Effect.gen(function*() {
          const store = yield* Effect.promise(makeStore)
          yield* using(store.layer, (s) =>
            s.write([
              { _tag: "MapType", mapName: "keep", mapType: "LWW" },
              put("keep", "k", lww({ n: 1 }, ts(5), 60_000), ts(6, 2, "srv")),
              { _tag: "MapType", mapName: "keep-or", mapType: "OR" },
              orPut("keep-or", "k", orRec("r", ts(1), "t1")),
              { _tag: "OrTombstone", mapName: "keep-or", tag: "t0", storedAt: ts(2) },
              { _tag: "Meta", key: "journal.seq", value: "7" }
            ]))
          yield* using(store.layer, (s) =>
            Effect.gen(function*() {
              expect(yield* s.listMaps).toEqual([{ name: "keep", mapType: "LWW" }, { name: "keep-or", mapType: "OR" }])
              expect((yield* s.loadMap("keep")).lww).toEqual([{ key: "k", record: lww({ n: 1 }, ts(5), 60_000), storedAt: ts(6, 2, "srv") }])
              const or = yield* s.loadMap("keep-or")
              expect(or.orRecords.map((r) => r.record)).toEqual([orRec("r", ts(1), "t1")])
              expect(or.orTombstones).toEqual([{ tag: "t0", storedAt: ts(2) }])
              expect(yield* s.getMeta("journal.seq")).toEqual(Option.some("7"))
            }))
        }))
    }
  })
}
