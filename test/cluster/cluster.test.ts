/**
 * Three `tessera serve --cluster postgres` processes on loopback sharing one throwaway PostgreSQL
 * (behavior.md §3.26): cross-node SERVER_EVENT / QUERY_UPDATE / SEARCH_UPDATE, convergence of concurrent
 * writes in memory and in the database, topics and counters across nodes, catch-up after a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TestClient } from "../support/client.js"
import { findPostgresBin, NO_POSTGRES_MESSAGE } from "../support/postgres.js"
import { eventually, put, readMap, startCluster, type TestCluster } from "./support.js"

const hasPostgres = findPostgresBin() !== undefined
if (!hasPostgres) console.warn(NO_POSTGRES_MESSAGE)

const NODES = ["node-a", "node-b", "node-c"] as const

describe.skipIf(!hasPostgres)("cluster on PostgreSQL: three processes", () => {
  let cluster: TestCluster
  const clients: Array<TestClient> = []
  const client = async (nodeId: string) => {
    const c = await TestClient.authed(cluster.nodes.get(nodeId)!.url)
    clients.push(c)
    return c
  }

  beforeAll(async () => {
    cluster = await startCluster("cluster3", NODES)
  }, 90_000)

  afterAll(async () => {
    for (const c of clients) c.close()
    await cluster?.stop()
  }, 30_000)

  it("every node sees the same membership with one leader", async () => {
    await eventually("three fresh members and a leader", async () => {
      const rows = await cluster.query<{ n: string }>(
        "SELECT count(*) AS n FROM tessera_cluster_nodes WHERE heartbeat_at > (extract(epoch from clock_timestamp()) * 1000)::bigint - 1500"
      )
      const leader = await cluster.query<{ node_id: string | null; epoch: string }>("SELECT node_id, epoch FROM tessera_cluster_leader")
      return Number(rows[0]!.n) === 3 && leader[0]!.node_id !== null && Number(leader[0]!.epoch) >= 1
    })
    const leader = await cluster.query<{ node_id: string }>("SELECT node_id FROM tessera_cluster_leader")
    expect(NODES).toContain(leader[0]!.node_id)
  })

  it("a write on A reaches subscribers on B and C as SERVER_EVENT, QUERY_UPDATE and SEARCH_UPDATE", async () => {
    const writer = await client("node-a")
    const b = await client("node-b")
    const c = await client("node-c")
    for (const sub of [b, c]) {
      sub.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "notes", query: {} } })
      sub.send({ type: "SEARCH_SUB", payload: { subscriptionId: "s", mapName: "notes", query: "cluster" } })
      await sub.next("QUERY_RESP")
      await sub.next("SEARCH_RESP")
    }
    put(writer, "w1", "notes", "n1", { text: "a cluster of nodes" }, { millis: Date.now(), counter: 0, nodeId: "client-a" }, "REPLICATED")
    const ack = await writer.next("OP_ACK")
    // The commit that publishes the change also persists it: REPLICATED is reached as PERSISTED.
    expect(ack.payload.results[0]).toMatchObject({ success: true })
    expect(["REPLICATED", "PERSISTED"]).toContain(ack.payload.results[0].achievedLevel)
    for (const sub of [b, c]) {
      const ev = await sub.next("SERVER_EVENT", (m) => m.payload.key === "n1")
      expect(ev.payload).toMatchObject({ mapName: "notes", eventType: "PUT", key: "n1" })
      const qu = await sub.next("QUERY_UPDATE", (m) => m.payload.key === "n1")
      expect(qu.payload).toMatchObject({ queryId: "q", changeType: "ENTER", value: { text: "a cluster of nodes" } })
      const su = await sub.next("SEARCH_UPDATE", (m) => m.payload.key === "n1")
      expect(su.payload).toMatchObject({ subscriptionId: "s", changeType: "ENTER" })
    }
    // Exactly once: one more write, then each subscriber holds exactly two SERVER_EVENTs for the map.
    put(writer, "w2", "notes", "n1", { text: "still a cluster" }, { millis: Date.now(), counter: 1, nodeId: "client-a" }, "REPLICATED")
    await writer.next("OP_ACK", (m) => m.payload.results[0].opId === "w2")
    for (const sub of [b, c]) {
      await sub.next("QUERY_UPDATE", (m) => m.payload.changeType === "UPDATE")
      await sub.sync()
      expect(sub.ofType("SERVER_EVENT").filter((m) => m.payload.mapName === "notes")).toHaveLength(2)
    }
  })

  it("concurrent writes to one key from clients on all three nodes converge everywhere and in the database", async () => {
    const writers = await Promise.all(NODES.map((n) => client(n)))
    const t = Date.now()
    // Each writer sends several versions; the largest HLC overall must win on every node and in the database.
    const rounds = 20
    for (let i = 0; i < rounds; i++) {
      writers.forEach((w, j) => put(w, `c-${j}-${i}`, "race", "k", `from-${j}-${i}`, { millis: t + i, counter: j, nodeId: `client-${j}` }, "PERSISTED"))
    }
    await Promise.all(writers.map((w, j) => w.next("OP_ACK", (m) => m.payload.results.some((r: any) => r.opId === `c-${j}-${rounds - 1}`), 15_000)))
    const winner = `from-2-${rounds - 1}`
    const db = await cluster.query<{ value: string }>("SELECT value FROM tessera_lww WHERE map_name = 'race' AND key = 'k'")
    expect(JSON.parse(db[0]!.value)).toBe(winner)
    for (const n of NODES) {
      await eventually(`${n} converges`, async () => (await readMap(cluster.nodes.get(n)!.url, "race")).get("k") === winner)
    }
  })

  it("topics published on one node reach subscribers on the others in publish order, never the publisher", async () => {
    const pub = await client("node-b")
    const subs = await Promise.all([client("node-a"), client("node-c"), client("node-b")])
    for (const s of [pub, ...subs]) s.send({ type: "TOPIC_SUB", payload: { topic: "room/x" } })
    await Promise.all([pub, ...subs].map((s) => s.sync()))
    const n = 30
    for (let i = 0; i < n; i++) pub.send({ type: "TOPIC_PUB", payload: { topic: "room/x", data: { i } } })
    for (const s of subs) {
      await s.next("TOPIC_MESSAGE", (m) => m.payload.data?.i === n - 1, 10_000)
      expect(s.ofType("TOPIC_MESSAGE").map((m) => m.payload.data.i)).toEqual(Array.from({ length: n }, (_, i) => i))
    }
    await pub.sync()
    expect(pub.ofType("TOPIC_MESSAGE")).toEqual([])
  })

  it("counters merged on different nodes converge on every node and in the database", async () => {
    const [a, b, c] = await Promise.all(NODES.map((n) => client(n)))
    c.send({ type: "COUNTER_REQUEST", payload: { name: "likes" } })
    await c.next("COUNTER_RESPONSE")
    a.send({ type: "COUNTER_SYNC", payload: { name: "likes", state: { p: { "client-a": 3 }, n: {} } } })
    b.send({ type: "COUNTER_SYNC", payload: { name: "likes", state: { p: { "client-b": 5 }, n: { "client-b": 1 } } } })
    const total = (m: any) => Object.values(m.payload.state.p as Record<string, number>).reduce((x, y) => x + y, 0) -
      Object.values(m.payload.state.n as Record<string, number>).reduce((x, y) => x + y, 0)
    await c.next("COUNTER_UPDATE", (m) => total(m) === 7, 10_000)
    await eventually("counter row merged in the database", async () => {
      const rows = await cluster.query<{ value: string }>("SELECT value FROM tessera_meta WHERE key = 'counter:likes'")
      if (rows.length === 0) return false
      const s = JSON.parse(rows[0]!.value)
      return s.p["client-a"] === 3 && s.p["client-b"] === 5 && s.n["client-b"] === 1
    })
  })

  it("one lock is never held by two clients on different nodes (randomized contention, fencing tokens grow)", async () => {
    const contenders = await Promise.all(NODES.flatMap((n) => [client(n), client(n)]))
    let holder: number | undefined
    const grantTokens: Array<number> = []
    const overlaps: Array<string> = []
    const rounds = 6
    await Promise.all(contenders.map(async (c, i) => {
      for (let r = 0; r < rounds; r++) {
        const requestId = `r-${i}-${r}`
        c.send({ type: "LOCK_REQUEST", payload: { requestId, name: "shared-resource", ttl: 30_000 } })
        const granted = await c.next("LOCK_GRANTED", (m) => m.payload.requestId === requestId, 20_000)
        if (holder !== undefined) overlaps.push(`client ${i} granted while client ${holder} holds the lock`)
        holder = i
        grantTokens.push(granted.payload.fencingToken)
        await new Promise((res) => setTimeout(res, Math.random() * 5))
        if (holder !== i) overlaps.push(`client ${i} lost the lock to ${holder} while holding it`)
        holder = undefined
        c.send({ type: "LOCK_RELEASE", payload: { requestId: `rel-${requestId}`, name: "shared-resource", fencingToken: granted.payload.fencingToken } })
        const released = await c.next("LOCK_RELEASED", (m) => m.payload.requestId === `rel-${requestId}`, 10_000)
        expect(released.payload.success).toBe(true)
      }
    }))
    expect(overlaps).toEqual([])
    expect(grantTokens).toHaveLength(contenders.length * rounds)
    // Fencing: every grant carries a larger token than the grant before it.
    for (let i = 1; i < grantTokens.length; i++) expect(grantTokens[i]).toBeGreaterThan(grantTokens[i - 1]!)
  }, 60_000)

  it("a lock held by a client on A passes to a waiter on B when the A client disconnects", async () => {
    const a = await client("node-a")
    const b = await client("node-b")
    a.send({ type: "LOCK_REQUEST", payload: { requestId: "a1", name: "handover", ttl: 60_000 } })
    const ga = await a.next("LOCK_GRANTED")
    b.send({ type: "LOCK_REQUEST", payload: { requestId: "b1", name: "handover", ttl: 60_000 } })
    await b.sync()
    expect(b.ofType("LOCK_GRANTED").filter((m) => m.payload.name === "handover")).toEqual([])
    a.close()
    const gb = await b.next("LOCK_GRANTED", (m) => m.payload.requestId === "b1", 10_000)
    expect(gb.payload.fencingToken).toBeGreaterThan(ga.payload.fencingToken)
  })

  it("locks held by clients of a node that dies pass to waiters elsewhere once it leaves the membership", async () => {
    const holder = await client("node-c")
    const waiter = await client("node-a")
    holder.send({ type: "LOCK_REQUEST", payload: { requestId: "h1", name: "orphaned", ttl: 300_000 } })
    const granted = await holder.next("LOCK_GRANTED")
    waiter.send({ type: "LOCK_REQUEST", payload: { requestId: "w1", name: "orphaned", ttl: 60_000 } })
    await waiter.sync()
    const old = cluster.nodes.get("node-c")!
    old.child.kill("SIGKILL")
    await old.exited
    // Heartbeat timeout (1.5 s) plus a lock sweep (1 s), far below the 300 s lease.
    const next = await waiter.next("LOCK_GRANTED", (m) => m.payload.requestId === "w1", 10_000)
    expect(next.payload.fencingToken).toBeGreaterThan(granted.payload.fencingToken)
  }, 30_000)

  it("a node restarted after missing writes serves them as soon as it listens", async () => {
    const writer = await client("node-a")
    for (let i = 0; i < 20; i++) put(writer, `m-${i}`, "missed", `k${i}`, i, { millis: Date.now(), counter: i, nodeId: "client-a" }, "REPLICATED")
    await writer.next("OP_ACK", (m) => m.payload.results.some((r: any) => r.opId === "m-19"), 10_000)
    const restarted = await cluster.start("node-c")
    const map = await readMap(restarted.url, "missed")
    expect([...map.keys()].sort()).toEqual(Array.from({ length: 20 }, (_, i) => `k${i}`).sort())
    // … and it is live again: a write on B reaches a subscriber on the restarted C.
    const sub = await client("node-c")
    sub.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "missed", query: {} } })
    await sub.next("QUERY_RESP")
    const b = await client("node-b")
    put(b, "after", "missed", "late", "x", { millis: Date.now(), counter: 0, nodeId: "client-b" })
    await sub.next("SERVER_EVENT", (m) => m.payload.key === "late", 10_000)
  }, 60_000)

  it("each node keeps its own journal sequence reservation in the shared database, and continues after it on restart", async () => {
    const reservations = async () =>
      new Map((await cluster.query<{ key: string; value: string }>("SELECT key, value FROM tessera_meta WHERE key LIKE 'journal:reservedSequence%'"))
        .map((r) => [r.key, Number(r.value)]))
    // Written by each node at start; no node overwrites another's (they all number their own events).
    const before = await reservations()
    expect([...before.keys()].sort()).toEqual(NODES.map((n) => `journal:reservedSequence:${n}`))
    // Node C restarts with a reservation far above the others': its events continue after its own.
    const old = cluster.nodes.get("node-c")!
    old.child.kill("SIGKILL")
    await old.exited
    await cluster.query("UPDATE tessera_meta SET value = '50000' WHERE key = 'journal:reservedSequence:node-c'")
    const restarted = await cluster.start("node-c")
    const c = await TestClient.authed(restarted.url)
    clients.push(c)
    c.send({ type: "JOURNAL_SUBSCRIBE", requestId: "j", mapName: "journaled" })
    await c.sync()
    put(c, "j1", "journaled", "k", 1, { millis: Date.now(), counter: 0, nodeId: "client-c" })
    const event = await c.next("JOURNAL_EVENT", (m) => m.event.key === "k", 10_000)
    expect(event.event).toMatchObject({ nodeId: "node-c", sequence: "50001" })
    await eventually("C's next block is reserved", async () => (await reservations()).get("journal:reservedSequence:node-c") === 51_000)
  }, 60_000)
})
