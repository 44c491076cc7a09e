import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { LWWMap } from "../../src/crdt/lww-map.js"
import { ORMap } from "../../src/crdt/or-map.js"
import { PARTITION_COUNT } from "../../src/crdt/hash.js"
import type { LWWRecord, ORMapRecord, Timestamp } from "../../src/crdt/types.js"
import { TestClient } from "../support/client.js"
import { type RunningServer, startServer } from "../support/server.js"

const ts = (millis: number, counter: number, nodeId: string): Timestamp => ({ millis, counter, nodeId })
const storedAt = ts(0, 0, "client")

/** Writes LWW records through CLIENT_OPs and waits for the last ack. */
const writeAll = async (c: TestClient, mapName: string, records: Array<[string, LWWRecord]>) => {
  const ops = records.map(([key, record], i) => ({ id: `s${i}`, mapName, key, opType: record.value === null ? "REMOVE" : "PUT", record }))
  c.send({ type: "OP_BATCH", payload: { ops } })
  await c.next("OP_ACK", (m) => m.payload.lastId === `s${records.length - 1}`)
}

/**
 * Walks the server's LWW Merkle tree the way the TopGun client does: request the root, descend into every
 * bucket whose hash differs from the local one, merge the leaves. Returns the number of round trips.
 */
const walkLww = async (c: TestClient, mapName: string, local: LWWMap): Promise<number> => {
  let roundTrips = 1
  c.send({ type: "SYNC_INIT", mapName, lastSyncTimestamp: 0 })
  const root = await c.next("SYNC_RESP_ROOT", (m) => m.payload.mapName === mapName)
  if (root.payload.rootHash === local.merkle.rootHash) return roundTrips
  let frontier = [""]
  while (frontier.length > 0) {
    roundTrips++
    // One level per round trip: all requests pipelined, replies arrive in request order (one FIFO).
    for (const path of frontier) c.send({ type: "MERKLE_REQ_BUCKET", payload: { mapName, path } })
    const next: string[] = []
    for (const path of frontier) {
      const reply = await c.next(path.length === 3 ? "SYNC_RESP_LEAF" : "SYNC_RESP_BUCKETS", (m) => m.payload.mapName === mapName && m.payload.path === path)
      if (reply.type === "SYNC_RESP_LEAF") {
        for (const { key, record } of reply.payload.records) local.merge(key, record, storedAt)
      } else {
        const mine = local.merkle.getBuckets(path)
        for (const [char, hash] of Object.entries(reply.payload.buckets)) if (mine[char] !== hash) next.push(path + char)
      }
    }
    frontier = next
  }
  return roundTrips
}

describe("Merkle delta sync over real WebSockets", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await startServer({ gcAgeMs: 60_000 })
  })
  afterAll(async () => {
    await server.close()
  })

  it("brings a client that missed writes (and deletions) to the identical LWW root", async () => {
    const writer = await TestClient.authed(server.url)
    const base = Date.now() - 10_000
    const records: Array<[string, LWWRecord]> = []
    for (let i = 0; i < 300; i++) records.push([`key-${i}`, { value: { i }, timestamp: ts(base, i, "w") }])
    await writeAll(writer, "lww-sync", records)
    // The client saw the first 200 writes before going offline.
    const local = new LWWMap()
    for (const [key, record] of records.slice(0, 200)) local.merge(key, record, storedAt)
    // Meanwhile: updates, a deletion (tombstone) and new keys.
    const later: Array<[string, LWWRecord]> = [
      ["key-5", { value: { i: 5, v: 2 }, timestamp: ts(base + 1, 0, "w") }],
      ["key-6", { value: null, timestamp: ts(base + 1, 1, "w") }],
      ["new-key", { value: "fresh", timestamp: ts(base + 1, 2, "w") }]
    ]
    await writeAll(writer, "lww-sync", later)

    const c = await TestClient.authed(server.url)
    const roundTrips = await walkLww(c, "lww-sync", local)
    c.send({ type: "SYNC_INIT", mapName: "lww-sync", lastSyncTimestamp: 0 })
    const root = await c.next("SYNC_RESP_ROOT", (m) => m.payload.mapName === "lww-sync")
    expect(local.merkle.rootHash).toBe(root.payload.rootHash)
    expect(local.get("key-6")?.record.value).toBeNull()
    expect(local.get("key-5")?.record.value).toEqual({ i: 5, v: 2 })
    expect(local.get("key-250")?.record.value).toEqual({ i: 250 })
    expect(roundTrips).toBeLessThanOrEqual(5) // root + 3 levels of buckets/leaves
    expect(root.payload.timestamp.nodeId).toBe("test-node")
    writer.close()
    c.close()
  })

  it("answers every bucket request exactly once, echoing mapName and path", async () => {
    const c = await TestClient.authed(server.url)
    c.send({ type: "MERKLE_REQ_BUCKET", payload: { mapName: "never-written", path: "" } })
    c.send({ type: "MERKLE_REQ_BUCKET", payload: { mapName: "never-written", path: "zz" } })
    const a = await c.next("SYNC_RESP_BUCKETS")
    const b = await c.next("SYNC_RESP_BUCKETS")
    expect(a.payload).toEqual({ mapName: "never-written", path: "", buckets: {} })
    expect(b.payload).toEqual({ mapName: "never-written", path: "zz", buckets: {} })
    c.send({ type: "SYNC_INIT", mapName: "never-written" })
    expect((await c.next("SYNC_RESP_ROOT")).payload.rootHash).toBe(0)
    c.close()
  })

  it("requires a reset for a client whose last sync is older than the GC age", async () => {
    const c = await TestClient.authed(server.url)
    c.send({ type: "SYNC_INIT", mapName: "stale", lastSyncTimestamp: Date.now() - 120_000 })
    expect((await c.next("SYNC_RESET_REQUIRED")).payload).toEqual({ mapName: "stale", reason: "GC_AGE_EXCEEDED" })
    c.send({ type: "ORMAP_SYNC_INIT", mapName: "stale-or", rootHash: 0, bucketHashes: {}, lastSyncTimestamp: Date.now() - 120_000 })
    expect((await c.next("SYNC_RESET_REQUIRED", (m) => m.payload.mapName === "stale-or")).payload.reason).toBe("GC_AGE_EXCEEDED")
    // A recent sync is fine.
    c.send({ type: "SYNC_INIT", mapName: "stale", lastSyncTimestamp: Date.now() - 1000 })
    await c.next("SYNC_RESP_ROOT")
    c.close()
  })

  it("converges OR maps including removals, and merges pushed diffs through the normal apply path", async () => {
    const writer = await TestClient.authed(server.url)
    const t = Date.now() - 5000
    const add = (id: string, key: string, value: unknown, counter: number) => {
      const orRecord: ORMapRecord = { value, timestamp: ts(t, counter, "w"), tag: `${t}:${counter}:w` }
      writer.send({ type: "CLIENT_OP", payload: { id, mapName: "or-sync", key, opType: "OR_ADD", orRecord } })
      return orRecord
    }
    const records: ORMapRecord[] = []
    for (let i = 0; i < 40; i++) records.push(add(`a${i}`, `list-${i % 10}`, { n: i }, i))
    writer.send({ type: "CLIENT_OP", payload: { id: "rm", mapName: "or-sync", key: "list-3", opType: "OR_REMOVE", orTag: records[3]!.tag } })
    await writer.next("OP_ACK", (m) => m.payload.lastId === "rm")

    // A subscriber that must see the pushed record.
    const watcher = await TestClient.authed(server.url)
    watcher.send({ type: "QUERY_SUB", payload: { queryId: "w", mapName: "or-sync", query: {} } })
    await watcher.next("QUERY_RESP")

    const c = await TestClient.authed(server.url)
    const local = new ORMap()
    // The client holds an older view: record 3 still alive, plus one record the server has never seen.
    local.apply("list-3", records[3]!, storedAt)
    const mine: ORMapRecord = { value: "client-only", timestamp: ts(t, 999, "c"), tag: `${t}:999:c` }
    local.apply("list-9", mine, storedAt)

    c.send({ type: "ORMAP_SYNC_INIT", mapName: "or-sync", rootHash: local.merkle.rootHash, bucketHashes: {} })
    const root = await c.next("ORMAP_SYNC_RESP_ROOT")
    expect(root.payload.rootHash).not.toBe(local.merkle.rootHash)
    // Walk the tree; merge each leaf, then push our state for the same keys (as the client does).
    let frontier = [""]
    while (frontier.length > 0) {
      const next: string[] = []
      for (const path of frontier) {
        c.send({ type: "ORMAP_MERKLE_REQ_BUCKET", payload: { mapName: "or-sync", path } })
        const reply = await c.next(path.length === 3 ? "ORMAP_SYNC_RESP_LEAF" : "ORMAP_SYNC_RESP_BUCKETS", (m) => m.payload.path === path)
        expect(reply.payload.mapName).toBe("or-sync")
        if (reply.type === "ORMAP_SYNC_RESP_LEAF") {
          const pushed = []
          for (const entry of reply.payload.entries) {
            local.mergeKey(entry.key, entry.records, entry.tombstones, storedAt)
            pushed.push({ key: entry.key, records: local.getRecords(entry.key), tombstones: local.tombstoneTags() })
          }
          c.send({ type: "ORMAP_PUSH_DIFF", payload: { mapName: "or-sync", entries: pushed } })
        } else {
          const mineBuckets = local.merkle.getBuckets(path)
          for (const [char, hash] of Object.entries(reply.payload.buckets)) if (mineBuckets[char] !== hash) next.push(path + char)
        }
      }
      frontier = next
    }
    expect(local.isTombstoned(records[3]!.tag)).toBe(true)
    expect(local.liveValues("list-3", Date.now())).not.toContainEqual({ n: 3 })
    // The pushed client-only record reached the server and, through the apply path, the live query.
    const upd = await watcher.next("QUERY_UPDATE", (m) => m.payload.key === "list-9")
    expect(upd.payload.value).toContainEqual("client-only")
    c.send({ type: "ORMAP_SYNC_INIT", mapName: "or-sync", rootHash: 0, bucketHashes: {} })
    const after = await c.next("ORMAP_SYNC_RESP_ROOT", (m) => m !== root)
    expect(after.payload.rootHash).toBe(local.merkle.rootHash)
    writer.close()
    watcher.close()
    c.close()
  })

  it("answers ORMAP_DIFF_REQUEST per key and refuses OR sync on an LWW map", async () => {
    const c = await TestClient.authed(server.url)
    c.send({ type: "CLIENT_OP", payload: { id: "x", mapName: "lww-only", key: "k", opType: "PUT", record: { value: 1, timestamp: ts(Date.now(), 0, "c") } } })
    await c.next("OP_ACK")
    c.send({ type: "ORMAP_SYNC_INIT", mapName: "lww-only", rootHash: 0, bucketHashes: {} })
    expect((await c.next("ERROR")).payload).toEqual({ code: 400, message: "Map lww-only is not an ORMap" })
    c.send({ type: "ORMAP_DIFF_REQUEST", payload: { mapName: "or-diff", keys: ["a", "b"] } })
    const diff = await c.next("ORMAP_DIFF_RESPONSE")
    expect(diff.payload).toEqual({ mapName: "or-diff", entries: [{ key: "a", records: [], tombstones: [] }, { key: "b", records: [], tombstones: [] }] })
    c.close()
  })

  it("sends the partition map (this node owns all 271 partitions)", async () => {
    const c = await TestClient.authed(server.url)
    c.send({ type: "PARTITION_MAP_REQUEST" })
    const pm = await c.next("PARTITION_MAP")
    expect(pm.payload.partitionCount).toBe(PARTITION_COUNT)
    expect(pm.payload.partitions).toHaveLength(271)
    expect(pm.payload.partitions.every((p: any) => p.ownerNodeId === "test-node")).toBe(true)
    expect(pm.payload.nodes[0].endpoints.websocket).toBe(`ws://127.0.0.1:${server.port}/ws`)
    // Up to date: no reply.
    c.send({ type: "PARTITION_MAP_REQUEST", payload: { currentVersion: pm.payload.version } })
    await c.sync()
    expect(c.ofType("PARTITION_MAP")).toHaveLength(1)
    c.close()
  })
})
