import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TestClient } from "../support/client.js"
import { type RunningServer, startServer } from "../support/server.js"

let n = 0
const put = (c: TestClient, mapName: string, key: string, value: unknown) => {
  const id = `j${++n}`
  c.send({ type: "CLIENT_OP", payload: { id, mapName, key, opType: "PUT", record: { value, timestamp: { millis: Date.now(), counter: n, nodeId: "jw" } } } })
  return c.next("OP_ACK", (m) => m.payload.lastId === id)
}
const del = (c: TestClient, mapName: string, key: string) => {
  const id = `j${++n}`
  c.send({ type: "CLIENT_OP", payload: { id, mapName, key, opType: "REMOVE", record: null } })
  return c.next("OP_ACK", (m) => m.payload.lastId === id)
}
const events = (c: TestClient) => c.ofType("JOURNAL_EVENT").map((m) => m.event)

describe("event journal over real WebSockets", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await startServer({ journalCapacity: 50 })
  })
  afterAll(async () => {
    await server.close()
  })

  it("streams PUT / UPDATE / DELETE events with increasing sequences, filtered by map and type", async () => {
    const w = await TestClient.authed(server.url)
    const all = await TestClient.authed(server.url)
    const onlyA = await TestClient.authed(server.url)
    all.send({ type: "JOURNAL_SUBSCRIBE", requestId: "all" })
    onlyA.send({ type: "JOURNAL_SUBSCRIBE", requestId: "a-deletes", mapName: "ja", types: ["DELETE"] })
    await all.sync()
    await onlyA.sync()
    await put(w, "ja", "k", { v: 1 })
    await put(w, "ja", "k", { v: 2 })
    await put(w, "jb", "k", { v: 3 })
    await del(w, "ja", "k")
    await all.next("JOURNAL_EVENT", (m) => m.event.type === "DELETE")
    const seen = events(all)
    expect(seen.map((e) => [e.type, e.mapName, e.key])).toEqual([
      ["PUT", "ja", "k"],
      ["UPDATE", "ja", "k"],
      ["PUT", "jb", "k"],
      ["DELETE", "ja", "k"]
    ])
    expect(seen[1]).toMatchObject({ value: { v: 2 }, previousValue: { v: 1 }, nodeId: "test-node" })
    expect(seen[3].previousValue).toEqual({ v: 2 })
    expect("value" in seen[3]).toBe(false)
    const seqs = seen.map((e) => Number(e.sequence))
    expect(seqs.every((s, i) => i === 0 || s === seqs[i - 1]! + 1)).toBe(true)
    expect(typeof seen[0].sequence).toBe("string")
    await onlyA.sync()
    expect(events(onlyA).map((e) => e.type)).toEqual(["DELETE"])
    w.close()
    all.close()
    onlyA.close()
  })

  it("stops delivery at once on JOURNAL_UNSUBSCRIBE", async () => {
    const w = await TestClient.authed(server.url)
    const s = await TestClient.authed(server.url)
    s.send({ type: "JOURNAL_SUBSCRIBE", requestId: "sub" })
    await s.sync()
    await put(w, "unsub-j", "a", 1)
    await s.next("JOURNAL_EVENT")
    s.send({ type: "JOURNAL_UNSUBSCRIBE", subscriptionId: "sub" })
    await s.sync()
    await put(w, "unsub-j", "b", 2)
    await s.sync()
    expect(events(s)).toHaveLength(1)
    w.close()
    s.close()
  })

  it("replays from a sequence and pages through JOURNAL_READ with hasMore", async () => {
    const w = await TestClient.authed(server.url)
    for (let i = 0; i < 5; i++) await put(w, "paged", `k${i}`, i)
    const r = await TestClient.authed(server.url)
    r.send({ type: "JOURNAL_READ", requestId: "r1", fromSequence: "1", limit: 3, mapName: "paged" })
    const page1 = await r.next("JOURNAL_READ_RESPONSE")
    expect(page1.events.map((e: any) => e.key)).toEqual(["k0", "k1", "k2"])
    expect(page1.hasMore).toBe(true)
    const next = String(Number(page1.events[2].sequence) + 1)
    r.send({ type: "JOURNAL_READ", requestId: "r2", fromSequence: next, limit: 3, mapName: "paged" })
    const page2 = await r.next("JOURNAL_READ_RESPONSE", (m) => m.requestId === "r2")
    expect(page2.events.map((e: any) => e.key)).toEqual(["k3", "k4"])
    expect(page2.hasMore).toBe(false)
    // Subscribe with replay from the first paged event: the retained events come first, then live ones.
    r.send({ type: "JOURNAL_SUBSCRIBE", requestId: "replay", fromSequence: page1.events[0].sequence, mapName: "paged" })
    await r.sync()
    await put(w, "paged", "k5", 5)
    await r.next("JOURNAL_EVENT", (m) => m.event.key === "k5")
    expect(events(r).map((e) => e.key)).toEqual(["k0", "k1", "k2", "k3", "k4", "k5"])
    w.close()
    r.close()
  })

  it("tells a subscriber asking for events older than the ring holds", async () => {
    const w = await TestClient.authed(server.url)
    for (let i = 0; i < 60; i++) await put(w, "overflow", `k${i}`, i) // capacity 50
    const r = await TestClient.authed(server.url)
    r.send({ type: "JOURNAL_SUBSCRIBE", requestId: "old", fromSequence: "1" })
    const err = await r.next("ERROR")
    expect(err.payload.code).toBe(410)
    expect(err.payload.details.subscriptionId).toBe("old")
    await r.sync()
    expect(events(r)).toHaveLength(50)
    w.close()
    r.close()
  })

  it("keeps keys, values and previous values exact through ring turnover (kept as bytes, not objects)", async () => {
    const w = await TestClient.authed(server.url)
    const keys = ["plain", "ünï", "日本語", "emoji-😀", "long-".repeat(30)]
    const valueOf = (round: number, i: number) =>
      round % 3 === 0 ? { round, i, pad: "x".repeat((round * 37 + i * 11) % 300), nested: [i, { ok: round % 2 === 0 }] } : round * 100 + i
    for (let round = 0; round < 30; round++) {
      for (let i = 0; i < keys.length; i++) await put(w, "bytes", keys[i]!, valueOf(round, i)) // 150 events, capacity 50
    }
    const r = await TestClient.authed(server.url)
    r.send({ type: "JOURNAL_READ", requestId: "exact", fromSequence: "1", limit: 100, mapName: "bytes" })
    const got = (await r.next("JOURNAL_READ_RESPONSE", (m) => m.requestId === "exact")).events
    expect(got).toHaveLength(50)
    got.forEach((e: any, j: number) => {
      const n = 100 + j // the last 50 of 150 writes, in order
      const round = Math.floor(n / keys.length)
      const i = n % keys.length
      expect(e.key).toBe(keys[i])
      expect(e.type).toBe("UPDATE")
      expect(e.value).toEqual(valueOf(round, i))
      expect(e.previousValue).toEqual(valueOf(round - 1, i))
    })
    w.close()
    r.close()
  })

  it("answers 503 when the journal is disabled", async () => {
    const off = await startServer({ journalEnabled: false })
    try {
      const c = await TestClient.authed(off.url)
      c.send({ type: "JOURNAL_READ", requestId: "x", fromSequence: "1" })
      expect((await c.next("ERROR")).payload).toEqual({ code: 503, message: "Event journal not enabled" })
      c.close()
    } finally {
      await off.close()
    }
  })

  it("filters events by READ permission and applies FLS", async () => {
    const secured = await startServer({
      securityPolicies: [
        { role: "WRITER", mapNamePattern: "*", actions: ["ALL"] },
        { role: "USER", mapNamePattern: "public", actions: ["READ"], allowedFields: ["title"] }
      ]
    })
    try {
      const w = await TestClient.authed(secured.url, { sub: "w", roles: ["WRITER"] })
      const u = await TestClient.authed(secured.url, { sub: "u", roles: ["USER"] })
      u.send({ type: "JOURNAL_SUBSCRIBE", requestId: "j" })
      await u.sync()
      await put(w, "secret", "s", { title: "hidden" })
      await put(w, "public", "p", { title: "shown", body: "filtered" })
      const e = await u.next("JOURNAL_EVENT")
      expect(e.event.mapName).toBe("public")
      expect(e.event.value).toEqual({ title: "shown" })
      await u.sync()
      expect(events(u)).toHaveLength(1)
      w.close()
      u.close()
    } finally {
      await secured.close()
    }
  })
})
