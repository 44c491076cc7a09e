import { Effect, Layer, Option, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { compareTimestamps } from "../../src/crdt/hlc.js"
import { LWWMap } from "../../src/crdt/lww-map.js"
import { ORMap } from "../../src/crdt/or-map.js"
import type { MapType, ORMapRecord, Timestamp } from "../../src/crdt/types.js"
import { Hlc } from "../../src/layers/Hlc.js"
import { Maps } from "../../src/layers/Maps.js"
import { type LoadedChunk, type LoadedLww, Storage, StorageError } from "../../src/layers/Storage.js"
import { makeMemoryStorage } from "../../src/layers/storage/memory.js"
import { startServer } from "../support/server.js"

const future = Date.now() + 10 * 60_000 // ahead of the wall clock: only observing the rows moves the HLC there
const ts = (millis: number, counter = 0, nodeId = "n1"): Timestamp => ({ millis, counter, nodeId })

/**
 * A durable store whose maps come only from `streamMap` (`loadMap` must not be used: it holds the
 * whole map at once); everything else is the memory store.
 */
const streamingStore = (maps: Record<string, { type: MapType; chunks: ReadonlyArray<LoadedChunk> | "fail" }>) => {
  const memory = makeMemoryStorage()
  return Layer.succeed(Storage, {
    ...memory,
    durable: true,
    loadMap: () => Effect.die("loadMap must not be used to load a map"),
    getMapType: (name) => Effect.succeed(Option.fromNullable(maps[name]?.type)),
    streamMap: (name): Stream.Stream<LoadedChunk, StorageError> => {
      const chunks = maps[name]?.chunks ?? []
      return chunks === "fail"
        ? Stream.concat(Stream.make({ _tag: "Lww", rows: [] } as LoadedChunk), Stream.fail(new StorageError({ message: "disk on fire" })))
        : Stream.fromIterable(chunks)
    }
  })
}

const lwwRow = (key: string, value: unknown, t: Timestamp, storedAt: Timestamp = t): LoadedLww => ({ key, record: { value, timestamp: t }, storedAt })

describe("Maps.load streams the stored map chunk by chunk", () => {
  it("LWW: same content, Merkle root and HLC as merging every row; duplicates resolve by the merge rule", async () => {
    const chunks: LoadedChunk[] = [
      { _tag: "Lww", rows: [lwwRow("a", 1, ts(future, 5)), lwwRow("b", null, ts(5), ts(6, 0, "srv")), lwwRow("c", "x", ts(7))] },
      { _tag: "Lww", rows: [lwwRow("a", 0, ts(future, 4)), lwwRow("d", { n: 1 }, ts(future, 9, "n2"))] },
      { _tag: "Lww", rows: [lwwRow("c", "y", ts(8))] }
    ]
    const server = await startServer({}, { storage: streamingStore({ m: { type: "LWW", chunks } }) })
    try {
      const { state, after } = await server.run(Effect.gen(function* () {
        const state = yield* (yield* Maps).get("m")
        return { state, after: (yield* Hlc).clock.now() }
      }))
      const expected = new LWWMap()
      for (const chunk of chunks) if (chunk._tag === "Lww") for (const r of chunk.rows) expected.merge(r.key, r.record, r.storedAt)
      expect(state.type).toBe("LWW")
      expect(Object.fromEntries([...state.lww.entries()])).toEqual(Object.fromEntries([...expected.entries()]))
      expect(state.lww.get("a")?.record.value).toBe(1)
      expect(state.lww.get("c")?.record.value).toBe("y")
      expect(state.lww.get("b")?.storedAt).toEqual(ts(6, 0, "srv"))
      expect(state.lww.merkle.rootHash).toBe(expected.merkle.rootHash)
      expect(state.lww.tombstoneCount).toBe(1)
      // the clock passed the newest loaded timestamp (future, 9), which is in the last-but-one chunk
      expect(compareTimestamps(after, ts(future, 9, "n2"))).toBeGreaterThan(0)
    } finally {
      await server.close()
    }
  })

  it("OR: tombstones then records, as the stream delivers them", async () => {
    const rec = (tag: string, value: unknown, t: Timestamp): ORMapRecord => ({ tag, value, timestamp: t })
    const chunks: LoadedChunk[] = [
      { _tag: "OrTombstones", rows: [{ tag: "dead", storedAt: ts(3) }] },
      { _tag: "OrRecords", rows: [{ key: "k", record: rec("t1", 1, ts(1)), storedAt: ts(1) }] },
      { _tag: "OrRecords", rows: [{ key: "k", record: rec("dead", 2, ts(2)), storedAt: ts(2) }, { key: "j", record: rec("t3", 3, ts(3)), storedAt: ts(3) }] }
    ]
    const server = await startServer({}, { storage: streamingStore({ o: { type: "OR", chunks } }) })
    try {
      const state = await server.run(Effect.flatMap(Maps, (maps) => maps.get("o")))
      const expected = new ORMap()
      expected.loadTombstone("dead", ts(3))
      expected.loadRecord("k", rec("t1", 1, ts(1)), ts(1))
      expected.loadRecord("k", rec("dead", 2, ts(2)), ts(2))
      expected.loadRecord("j", rec("t3", 3, ts(3)), ts(3))
      expect(state.type).toBe("OR")
      expect(state.or.getRecords("k")).toEqual(expected.getRecords("k"))
      expect(state.or.getRecords("k").map((r) => r.tag)).toEqual(["t1"])
      expect(state.or.getRecords("j")).toEqual(expected.getRecords("j"))
      expect(state.or.merkle.rootHash).toBe(expected.merkle.rootHash)
      expect(state.lww.size).toBe(0)
    } finally {
      await server.close()
    }
  })

  it("a failing stream fails the load with MapLoadFailed (and a later get retries)", async () => {
    const server = await startServer({}, { storage: streamingStore({ bad: { type: "LWW", chunks: "fail" } }) })
    try {
      const exit = await server.run(Effect.flatMap(Maps, (maps) => Effect.either(maps.get("bad"))))
      expect(exit._tag).toBe("Left")
      if (exit._tag === "Left") {
        expect(exit.left._tag).toBe("MapLoadFailed")
        expect(exit.left.mapName).toBe("bad")
        expect(exit.left.message).toContain("disk on fire")
      }
      expect(await server.run(Effect.map(Maps, (maps) => maps.peek("bad")))).toBeUndefined()
    } finally {
      await server.close()
    }
  })
})
