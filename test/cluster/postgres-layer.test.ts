/**
 * The PostgreSQL cluster layer in-process: two nodes (each its own Maps, Storage and Cluster) on one
 * throwaway database. Covers what the process-level tests cannot observe directly: the change feed
 * applies remote changes exactly once and never re-applies a node's own rows; a stale leader's GC commit
 * is refused by the database; a gap left by trimmed rows is healed from the stored state; counter states
 * merge in the database like the PN-counter CRDT.
 */
import { Context, Effect, Exit, Layer, Logger, LogLevel, Option, Scope } from "effect"
import fc from "fast-check"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { mergeCounter, normalizeCounterState } from "../../src/crdt/pn-counter.js"
import type { Timestamp } from "../../src/crdt/types.js"
import { type Change, Changes } from "../../src/layers/Changes.js"
import { Cluster } from "../../src/layers/Cluster.js"
import { PostgresClusterInfo, layerPostgresCluster } from "../../src/layers/cluster/postgres.js"
import { ClusterDirectory } from "../../src/layers/cluster/partition-map.js"
import { Hlc } from "../../src/layers/Hlc.js"
import { Maps } from "../../src/layers/Maps.js"
import { ServerInfo } from "../../src/layers/Partitions.js"
import { defaultSettings, ServerConfig, type ServerSettings } from "../../src/layers/ServerConfig.js"
import { Storage } from "../../src/layers/Storage.js"
import { makePostgresLayer } from "../../src/layers/storage/postgres.js"
import { WriteBehind, WriteBehindConfig } from "../../src/layers/storage/write-behind.js"
import { findPostgresBin, startTestPostgres, type TestPostgres } from "../support/postgres.js"
import { eventually } from "./support.js"

const hasPostgres = findPostgresBin() !== undefined

const nodeLayer = (url: string, nodeId: string) => {
  const settings: ServerSettings = {
    ...defaultSettings,
    nodeId,
    storage: "postgres",
    databaseUrl: url,
    cluster: "postgres",
    clusterHeartbeatMs: 50,
    clusterHeartbeatTimeoutMs: 1000,
    publicUrl: `ws://127.0.0.1:1/${nodeId}`
  }
  return layerPostgresCluster(settings, { changeRetentionMs: 0, trimEveryBeats: 2 }).pipe(
    Layer.provideMerge(Maps.Default),
    Layer.provideMerge(WriteBehind.Default),
    Layer.provideMerge(Layer.mergeAll(makePostgresLayer(Storage, { url, changeFeed: { nodeId } }), WriteBehindConfig.layer())),
    Layer.provideMerge(Layer.mergeAll(Hlc.Default, Changes.Default, ServerInfo.Default)),
    Layer.provideMerge(ServerConfig.layer(settings)),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
  )
}

interface TestNode {
  readonly run: <A, E>(effect: Effect.Effect<A, E, any>) => Promise<A>
  readonly changes: Array<Change>
  readonly close: () => Promise<void>
}

const startNode = async (url: string, nodeId: string): Promise<TestNode> => {
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(nodeLayer(url, nodeId), scope))
  const changes: Array<Change> = []
  Context.get(context, Changes).subscribe(0, "test", (c) => changes.push(c))
  return {
    run: (effect) => Effect.runPromise(Effect.provide(effect, context) as Effect.Effect<any, any, never>),
    changes,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const ts = (millis: number, counter = 0, nodeId = "client"): Timestamp => ({ millis, counter, nodeId })

/** A client-style write on `node`: apply, then wait for the commit that persists and publishes it. */
const write = (node: TestNode, mapName: string, key: string, value: unknown, at: Timestamp) =>
  node.run(Effect.gen(function*() {
    const maps = yield* Maps
    const state = yield* maps.get(mapName)
    maps.applyLww(state, key, { value, timestamp: at }, { origin: "client" })
    yield* maps.flushPersistence()
  }))

const valueOn = (node: TestNode, mapName: string, key: string) =>
  node.run(Effect.gen(function*() {
    const maps = yield* Maps
    return maps.visibleValue(yield* maps.get(mapName), key)
  }))

describe.skipIf(!hasPostgres)("PostgreSQL cluster layer (in-process nodes)", () => {
  let postgres: TestPostgres
  let url: string
  let db: pg.Client
  let a: TestNode
  let b: TestNode

  beforeAll(async () => {
    postgres = await startTestPostgres()
    url = postgres.url
    a = await startNode(url, "node-a") // migrates, and is the first to take the leader lock
    b = await startNode(url, "node-b")
    db = new pg.Client({ connectionString: url })
    await db.connect()
  }, 90_000)

  afterAll(async () => {
    await db?.end()
    await b?.close()
    await a?.close()
    await postgres?.stop()
  }, 30_000)

  it("both nodes see the same member directory, with one cluster-wide version", async () => {
    const dirOf = (n: TestNode) => n.run(Effect.flatMap(ClusterDirectory, (d) => d.current))
    await eventually("same directory on A and B", async () => {
      const [da, db2] = [await dirOf(a), await dirOf(b)]
      return da.members.length === 2 && da.version > 0 && JSON.stringify(da) === JSON.stringify(db2)
    })
    const d = await dirOf(a)
    expect(d.members).toEqual([
      { nodeId: "node-a", url: "ws://127.0.0.1:1/node-a" },
      { nodeId: "node-b", url: "ws://127.0.0.1:1/node-b" }
    ])
  })

  it("a change committed on A is applied on B once, and A never re-applies its own row", async () => {
    await valueOn(b, "feed", "k") // B has the map loaded before the write
    const t = Date.now()
    await write(a, "feed", "k", "v1", ts(t))
    await eventually("B sees v1", async () => (await valueOn(b, "feed", "k")) === "v1")
    await write(a, "feed", "k", "v2", ts(t + 1))
    await eventually("B sees v2", async () => (await valueOn(b, "feed", "k")) === "v2")
    const onB = b.changes.filter((c) => c.mapName === "feed")
    expect(onB.map((c) => [c.origin, c.after])).toEqual([["remote", "v1"], ["remote", "v2"]])
    const onA = a.changes.filter((c) => c.mapName === "feed")
    expect(onA.map((c) => c.origin)).toEqual(["client", "client"])
    // A write that loses the merge in the database publishes nothing.
    const rowsBefore = (await db.query("SELECT count(*)::int AS n FROM tessera_changes WHERE partition_id < 271")).rows[0].n
    await write(b, "feed", "k", "stale", ts(t - 1000))
    const rowsAfter = (await db.query("SELECT count(*)::int AS n FROM tessera_changes WHERE partition_id < 271")).rows[0].n
    expect(rowsAfter).toBe(rowsBefore)
  })

  it("a leader whose epoch was superseded cannot publish a GC commit", async () => {
    await eventually("A leads", async () => (await a.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))).isLeader)
    const oldEpoch = (await a.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))).epoch
    // A "hangs": its leader session is ended (what the others do to a silent leader), B takes over.
    await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tessera-leader:node-a'")
    await db.query("UPDATE tessera_cluster_nodes SET heartbeat_at = 0 WHERE node_id = 'node-a'")
    await eventually("B leads with a newer epoch", async () => {
      const s = await b.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))
      return s.isLeader && s.epoch > oldEpoch
    })
    const newEpoch = (await b.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))).epoch
    const safe = ts(1)
    // The old leader resumes and acts with its old epoch: refused by the database.
    await a.run(Effect.flatMap(Cluster, (c) => c.broadcast({ _tag: "GcCommit", epoch: oldEpoch, safeTimestamp: safe })))
    await b.run(Effect.flatMap(Cluster, (c) => c.broadcast({ _tag: "GcCommit", epoch: newEpoch, safeTimestamp: safe })))
    const byNode = (await db.query("SELECT node_id, count(*)::int AS n FROM tessera_changes WHERE partition_id = 271 GROUP BY node_id")).rows
    expect(byNode.find((r) => r.node_id === "node-a")).toBeUndefined()
    expect(byNode.find((r) => r.node_id === "node-b")?.n).toBe(1)
  })

  it("a gap left by trimmed change rows is healed from the stored state", async () => {
    await valueOn(b, "gappy", "x")
    const resyncsBefore = (await b.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))).resyncs
    // Another writer commits two changes whose first row is gone before B reads it (as if trimmed).
    const t = Date.now()
    await write(a, "gappy", "x", "first", ts(t))
    await write(a, "gappy", "y", "second", ts(t))
    // Pretend a third node wrote a newer value straight to the store and its change row was trimmed.
    await db.query(
      "UPDATE tessera_lww SET value = '\"healed\"', ts_millis = $1 WHERE map_name = 'gappy' AND key = 'x'",
      [t + 5000]
    )
    const p = (await db.query("UPDATE tessera_change_seq SET seq = seq + 1 WHERE partition_id = 5 RETURNING seq")).rows[0].seq
    // The row after the hole, from "node-z": B must notice seq p is missing and re-sync.
    await db.query("UPDATE tessera_change_seq SET seq = seq + 1 WHERE partition_id = 5")
    await db.query(
      "INSERT INTO tessera_changes (partition_id, seq, node_id, target, payload, created_at) VALUES (5, $1, 'node-z', 'nobody', $2, 0)",
      [Number(p) + 1, Buffer.from([0x80])] // an empty msgpack map addressed to nobody
    )
    await db.query("NOTIFY tessera_changes, '5'")
    await eventually("B re-synced", async () =>
      (await b.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))).resyncs > resyncsBefore, 8000)
    expect(await valueOn(b, "gappy", "x")).toBe("healed")
    const cursor = (await b.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))).cursors[5]
    expect(cursor).toBe(Number(p) + 1)
  }, 20_000)

  it("the leader trims change rows once every live member has read them", async () => {
    const t = Date.now()
    await write(b, "trim", "k", "v", ts(t))
    await eventually("change rows read by every member are trimmed", async () => {
      const rows = (await db.query(
        "SELECT c.partition_id, c.seq FROM tessera_changes c JOIN tessera_change_seq s USING (partition_id) WHERE c.partition_id < 271"
      )).rows
      return rows.length === 0
    }, 8000)
    // Trimming never loses the sequence: the counters still hold the last numbers.
    const total = (await db.query("SELECT sum(seq)::int AS n FROM tessera_change_seq WHERE partition_id < 271")).rows[0].n
    expect(total).toBeGreaterThan(0)
  })

  it("counter states merge in the database by per-entry max (the PN-counter law)", async () => {
    const entries = fc.dictionary(fc.constantFrom("n1", "n2", "n3"), fc.nat({ max: 1000 }))
    const state = fc.record({ p: entries, n: entries })
    let i = 0
    await fc.assert(fc.asyncProperty(state, state, async (s1, s2) => {
      const key = `counter:prop-${i++}`
      await a.run(Effect.flatMap(Storage, (s) => s.write([{ _tag: "Meta", key, value: JSON.stringify(s1) }])))
      await b.run(Effect.flatMap(Storage, (s) => s.write([{ _tag: "Meta", key, value: JSON.stringify(s2) }])))
      const stored = await a.run(Effect.flatMap(Storage, (s) => s.getMeta(key)))
      const merged = normalizeCounterState(JSON.parse(Option.getOrThrow(stored)))
      expect(merged).toEqual(mergeCounter(normalizeCounterState(s1)!, normalizeCounterState(s2)!))
    }), { numRuns: 25 })
  })

  it("a batch publishes exactly the rows that won their merge, numbered gap-free per partition (a batch of puts, and puts with a meta row)", async () => {
    const t = Date.now()
    const keys = Array.from({ length: 60 }, (_, i) => `key-${i}`)
    // Ten keys already hold newer values in the database: their puts lose and must not be published.
    for (const key of keys.slice(0, 10)) {
      await db.query(
        "INSERT INTO tessera_lww (map_name,key,value,ts_millis,ts_counter,ts_node_id,ttl_ms,stored_millis,stored_counter,stored_node_id) " +
          "VALUES ('numbered', $1, '\"newer\"', $2, 0, 'z', NULL, $2, 0, 'z')",
        [key, t + 10_000]
      )
    }
    const puts = (value: string, from: number, to: number) =>
      keys.slice(from, to).map((key) => ({ _tag: "LwwPut" as const, mapName: "numbered", key, record: { value, timestamp: ts(t) }, storedAt: ts(t) }))
    await valueOn(b, "numbered", "none") // B has the map loaded, so it applies what A publishes
    const resyncsBefore = (await b.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))).resyncs
    const numbered = async () => (await db.query("SELECT sum(seq)::int AS n FROM tessera_change_seq WHERE partition_id < 271")).rows[0].n as number
    const numberedBefore = await numbered()
    // A batch of puts only, then puts with a meta row (one more statement in the transaction).
    await a.run(Effect.flatMap(Storage, (s) => s.write(puts("one", 0, 40))))
    await a.run(Effect.flatMap(Storage, (s) => s.write([...puts("two", 40, 60), { _tag: "Meta", key: "numbered-meta", value: "x" }])))
    // Exactly the 50 winners got numbers (counters are never trimmed, unlike the rows).
    expect(await numbered()).toBe(numberedBefore + 50)
    const applied = () => b.changes.filter((c) => c.mapName === "numbered")
    await eventually("B applied A's published rows", () => applied().length >= 50)
    expect(applied().map((c) => c.key).sort()).toEqual(keys.slice(10).sort())
    expect(applied().every((c) => c.after === (keys.indexOf(c.key) < 40 ? "one" : "two"))).toBe(true)
    // Read in order without a gap (a gap would have made B re-sync from the stored state).
    expect((await b.run(Effect.flatMap(PostgresClusterInfo, (i) => i.status))).resyncs).toBe(resyncsBefore)
    // Every partition's rows, whoever wrote them, are 1..n up to its counter (nothing trimmed in between).
    const all = (await db.query("SELECT partition_id, min(seq)::int AS lo, max(seq)::int AS hi, count(*)::int AS n FROM tessera_changes WHERE partition_id < 271 GROUP BY partition_id")).rows
    const counters = new Map((await db.query("SELECT partition_id, seq::int AS seq FROM tessera_change_seq")).rows.map((r) => [r.partition_id, r.seq]))
    for (const r of all) {
      expect(r.hi - r.lo + 1).toBe(r.n)
      expect(counters.get(r.partition_id)).toBe(r.hi)
    }
  })
})
