import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Message, TestClient } from "../support/client.js"
import { type RunningServer, startServer } from "../support/server.js"

/** Σp − Σn of a wire state (reads the client's `positive`/`negative` keys, as the TopGun client does). */
const valueOf = (state: { positive: Record<string, number>; negative: Record<string, number> }): number =>
  Object.values(state.positive).reduce((a, b) => a + b, 0) - Object.values(state.negative).reduce((a, b) => a + b, 0)

describe("coordination over real WebSockets", () => {
  let server: RunningServer
  const clients: Array<TestClient> = []
  const client = async (sub = "user-1"): Promise<TestClient> => {
    const c = await TestClient.authed(server.url, { sub })
    clients.push(c)
    return c
  }

  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(async () => {
    for (const c of clients) c.close()
    await server.close()
  })

  describe("topics", () => {
    it("fans out to every subscriber in publish order, never to the publisher", async () => {
      const [pub, s1, s2, s3, outsider] = await Promise.all([client(), client(), client(), client(), client()])
      for (const c of [pub, s1, s2, s3]) c.send({ type: "TOPIC_SUB", payload: { topic: "room/1" } })
      outsider.send({ type: "TOPIC_SUB", payload: { topic: "room/2" } })
      await Promise.all([pub, s1, s2, s3, outsider].map((c) => c.sync()))

      const payloads: Array<unknown> = [{ n: 0 }, null, "text", [1, { deep: [true, null] }], 3.5, { n: 5, nested: { a: null } }]
      for (let i = 6; i < 40; i++) payloads.push({ n: i })
      for (const data of payloads) pub.send({ type: "TOPIC_PUB", payload: { topic: "room/1", data } })
      pub.send({ type: "TOPIC_PUB", payload: { topic: "room/1" } }) // data absent → null
      await pub.sync()

      for (const s of [s1, s2, s3]) {
        await s.next("TOPIC_MESSAGE", (m) => m.payload.data === null && s.ofType("TOPIC_MESSAGE").length === payloads.length + 1)
        const got = s.ofType("TOPIC_MESSAGE")
        expect(got.map((m) => m.payload.data)).toEqual([...payloads, null])
        for (const m of got) {
          expect(m.payload.topic).toBe("room/1")
          expect(typeof m.payload.publisherId).toBe("string")
          expect(typeof m.payload.timestamp).toBe("number")
          expect(Math.abs(m.payload.timestamp - Date.now())).toBeLessThan(60_000)
        }
        expect(new Set(got.map((m) => m.payload.publisherId)).size).toBe(1)
      }
      await outsider.sync()
      expect(pub.ofType("TOPIC_MESSAGE")).toEqual([])
      expect(outsider.ofType("TOPIC_MESSAGE")).toEqual([])
      expect(pub.ofType("ERROR").filter((m: Message) => !String(m.payload.message).includes("__SYNC_"))).toEqual([])
    })

    it("stops delivering after TOPIC_UNSUB and after the subscriber disconnects", async () => {
      const [pub, a, b] = await Promise.all([client(), client(), client()])
      a.send({ type: "TOPIC_SUB", payload: { topic: "t.unsub" } })
      b.send({ type: "TOPIC_SUB", payload: { topic: "t.unsub" } })
      await Promise.all([a.sync(), b.sync()])
      pub.send({ type: "TOPIC_PUB", payload: { topic: "t.unsub", data: 1 } })
      await a.next("TOPIC_MESSAGE")
      await b.next("TOPIC_MESSAGE")

      a.send({ type: "TOPIC_UNSUB", payload: { topic: "t.unsub" } })
      await a.sync()
      pub.send({ type: "TOPIC_PUB", payload: { topic: "t.unsub", data: 2 } })
      expect((await b.next("TOPIC_MESSAGE")).payload.data).toBe(2)
      await a.sync()
      expect(a.ofType("TOPIC_MESSAGE").map((m) => m.payload.data)).toEqual([1])

      // A later subscriber only sees what is published after it subscribed.
      a.send({ type: "TOPIC_SUB", payload: { topic: "t.unsub" } })
      await a.sync()
      pub.send({ type: "TOPIC_PUB", payload: { topic: "t.unsub", data: 3 } })
      expect((await a.next("TOPIC_MESSAGE")).payload.data).toBe(3)

      b.close()
      await b.closed()
      pub.send({ type: "TOPIC_PUB", payload: { topic: "t.unsub", data: 4 } })
      expect((await a.next("TOPIC_MESSAGE")).payload.data).toBe(4)
    })

    it("refuses invalid names and more than 100 subscriptions; subscribing twice is idempotent", async () => {
      const c = await client()
      const errors = () => c.ofType("ERROR").filter((m) => !String(m.payload.message).includes("__SYNC_")).map((m) => m.payload)
      for (const topic of ["", "has space", "x".repeat(257), "emoji-☃"]) c.send({ type: "TOPIC_SUB", payload: { topic } })
      c.send({ type: "TOPIC_PUB", payload: { topic: "bad topic", data: 1 } })
      await c.sync()
      expect(errors()).toEqual(Array.from({ length: 5 }, () => ({ code: 400, message: "Invalid topic name" })))

      for (let i = 0; i < 100; i++) c.send({ type: "TOPIC_SUB", payload: { topic: `limit:${i}` } })
      c.send({ type: "TOPIC_SUB", payload: { topic: "limit:0" } })
      await c.sync()
      expect(errors()).toHaveLength(5)
      c.send({ type: "TOPIC_SUB", payload: { topic: "limit:100" } })
      await c.sync()
      expect(errors().at(-1)).toEqual({ code: 400, message: "Subscription limit reached" })
      expect(errors()).toHaveLength(6)

      // The 100 subscriptions are live (and the refused one is not).
      const pub = await client()
      pub.send({ type: "TOPIC_PUB", payload: { topic: "limit:99", data: "hit" } })
      pub.send({ type: "TOPIC_PUB", payload: { topic: "limit:100", data: "miss" } })
      pub.send({ type: "TOPIC_PUB", payload: { topic: "limit:0", data: "hit0" } })
      await c.next("TOPIC_MESSAGE", (m) => m.payload.data === "hit0")
      expect(c.ofType("TOPIC_MESSAGE").map((m) => m.payload.data)).toEqual(["hit", "hit0"])
    })

    it("ERROR 403 when the policies deny the topic", async () => {
      const secured = await startServer({
        securityPolicies: [{ role: "USER", mapNamePattern: "topic:public/*", actions: ["READ", "PUT"] }]
      })
      try {
        const c = await TestClient.authed(secured.url, { sub: "u" })
        c.send({ type: "TOPIC_SUB", payload: { topic: "private/x" } })
        c.send({ type: "TOPIC_PUB", payload: { topic: "private/x", data: 1 } })
        c.send({ type: "TOPIC_SUB", payload: { topic: "public/x" } })
        await c.sync()
        expect(c.ofType("ERROR").filter((m) => !String(m.payload.message).includes("__SYNC_")).map((m) => m.payload)).toEqual([
          { code: 403, message: "Access Denied for topic private/x" },
          { code: 403, message: "Access Denied for topic private/x" }
        ])
        c.close()
      } finally {
        await secured.close()
      }
    })
  })

  describe("locks", () => {
    it("serves contending clients in FIFO order with increasing fencing tokens", async () => {
      const [a, b, c] = await Promise.all([client(), client(), client()])
      a.send({ type: "LOCK_REQUEST", payload: { requestId: "a-1", name: "job-lock", ttl: 60_000 } })
      const ga = await a.next("LOCK_GRANTED")
      expect(ga.payload).toEqual({ requestId: "a-1", name: "job-lock", fencingToken: expect.any(Number) })

      b.send({ type: "LOCK_REQUEST", payload: { requestId: "b-1", name: "job-lock" } })
      await b.sync() // b is queued before c asks
      c.send({ type: "LOCK_REQUEST", payload: { requestId: "c-1", name: "job-lock" } })
      await c.sync()
      expect(b.ofType("LOCK_GRANTED")).toEqual([])
      expect(c.ofType("LOCK_GRANTED")).toEqual([])

      a.send({ type: "LOCK_RELEASE", payload: { requestId: "a-rel", name: "job-lock", fencingToken: ga.payload.fencingToken } })
      expect((await a.next("LOCK_RELEASED")).payload).toEqual({ requestId: "a-rel", name: "job-lock", success: true })
      const gb = await b.next("LOCK_GRANTED")
      expect(gb.payload.requestId).toBe("b-1")
      expect(gb.payload.fencingToken).toBeGreaterThan(ga.payload.fencingToken)
      await c.sync()
      expect(c.ofType("LOCK_GRANTED")).toEqual([])

      // A stale token cannot release b's lock; the reply omits an absent requestId.
      a.send({ type: "LOCK_RELEASE", payload: { name: "job-lock", fencingToken: ga.payload.fencingToken } })
      expect((await a.next("LOCK_RELEASED")).payload).toEqual({ name: "job-lock", success: false })

      b.send({ type: "LOCK_RELEASE", payload: { requestId: "b-rel", name: "job-lock", fencingToken: gb.payload.fencingToken } })
      expect((await b.next("LOCK_RELEASED")).payload.success).toBe(true)
      const gc = await c.next("LOCK_GRANTED")
      expect(gc.payload.requestId).toBe("c-1")
      expect(gc.payload.fencingToken).toBeGreaterThan(gb.payload.fencingToken)
    })

    it("a holder that disconnects hands the lock to the next waiter; its queued requests vanish", async () => {
      const [a, b, c] = await Promise.all([client(), client(), client()])
      a.send({ type: "LOCK_REQUEST", payload: { requestId: "a-1", name: "dc-lock" } })
      const ga = await a.next("LOCK_GRANTED")
      c.send({ type: "LOCK_REQUEST", payload: { requestId: "c-x", name: "dc-other" } })
      await c.next("LOCK_GRANTED")
      b.send({ type: "LOCK_REQUEST", payload: { requestId: "b-1", name: "dc-lock" } })
      await b.sync()
      c.send({ type: "LOCK_REQUEST", payload: { requestId: "c-1", name: "dc-lock" } })
      await c.sync()

      b.close() // queued, then gone
      await b.closed()
      a.close() // holder gone: c (not b) gets it
      await a.closed()
      const gc = await c.next("LOCK_GRANTED", (m) => m.payload.name === "dc-lock")
      expect(gc.payload.requestId).toBe("c-1")
      expect(gc.payload.fencingToken).toBeGreaterThan(ga.payload.fencingToken)
    })

    it("ERROR 403 without PUT on the lock name", async () => {
      const secured = await startServer({ securityPolicies: [{ role: "USER", mapNamePattern: "open-*", actions: ["PUT"] }] })
      try {
        const c = await TestClient.authed(secured.url, { sub: "u" })
        c.send({ type: "LOCK_REQUEST", payload: { requestId: "r", name: "closed-lock" } })
        expect((await c.next("ERROR")).payload).toEqual({ code: 403, message: "Access Denied for lock closed-lock" })
        c.send({ type: "LOCK_REQUEST", payload: { requestId: "r2", name: "open-lock" } })
        expect((await c.next("LOCK_GRANTED")).payload.requestId).toBe("r2")
        c.close()
      } finally {
        await secured.close()
      }
    })
  })

  describe("PN counters", () => {
    it("concurrent increments from several clients converge to the exact sum on every subscriber", async () => {
      const writers = await Promise.all([client("w0"), client("w1"), client("w2"), client("w3")])
      const perWriter = 25
      // Each writer behaves like the TopGun client: it grows its own entry and sends its whole state.
      await Promise.all(
        writers.map(async (w, i) => {
          const positive: Record<string, number> = {}
          const negative: Record<string, number> = {}
          for (let k = 1; k <= perWriter; k++) {
            positive[`client-${i}`] = k
            if (k % 5 === 0) negative[`client-${i}`] = k / 5 // some decrements too
            w.send({ type: "COUNTER_SYNC", payload: { name: "hits", state: { positive: { ...positive }, negative: { ...negative } } } })
            if (k % 7 === 0) await new Promise((r) => setImmediate(r)) // interleave the writers
          }
        })
      )
      const expected = writers.length * (perWriter - perWriter / 5)
      for (const w of writers) {
        const last = await w.next("COUNTER_UPDATE", (m) => valueOf(m.payload.state) === expected)
        expect(last.payload.state.p).toEqual(last.payload.state.positive)
        expect(last.payload.state.n).toEqual(last.payload.state.negative)
      }
      const reader = await client("reader")
      reader.send({ type: "COUNTER_REQUEST", payload: { name: "hits" } })
      const resp = await reader.next("COUNTER_RESPONSE")
      expect(resp.payload.name).toBe("hits")
      expect(valueOf(resp.payload.state)).toBe(expected)
      expect(resp.payload.state.positive).toEqual({ "client-0": 25, "client-1": 25, "client-2": 25, "client-3": 25 })
      expect(resp.payload.state.negative).toEqual({ "client-0": 5, "client-1": 5, "client-2": 5, "client-3": 5 })
    })

    it("offline-style COUNTER_SYNC resends are idempotent and both state shapes merge", async () => {
      const [watcher, offline] = await Promise.all([client(), client()])
      watcher.send({ type: "COUNTER_REQUEST", payload: { name: "offline" } })
      const first = await watcher.next("COUNTER_RESPONSE")
      expect(first.payload.state).toEqual({ p: {}, n: {}, positive: {}, negative: {} })

      const state = { positive: { dev: 10 }, negative: { dev: 3 } }
      for (let i = 0; i < 3; i++) offline.send({ type: "COUNTER_SYNC", payload: { name: "offline", state } })
      offline.send({ type: "COUNTER_SYNC", payload: { name: "offline", state: { positive: { dev: 4 } } } }) // an older state
      offline.send({ type: "COUNTER_SYNC", payload: { name: "offline", state: { p: { dev: 10, srv: 2 }, n: { dev: 3 } } } }) // schema shape
      await offline.sync()
      const updates = offline.ofType("COUNTER_UPDATE").map((m) => m.payload.state)
      expect(updates.slice(0, 4).map(valueOf)).toEqual([7, 7, 7, 7])
      expect(updates[4]).toEqual({ p: { dev: 10, srv: 2 }, n: { dev: 3 }, positive: { dev: 10, srv: 2 }, negative: { dev: 3 } })
      const seen = await watcher.next("COUNTER_UPDATE", (m) => valueOf(m.payload.state) === 9)
      expect(seen.payload.name).toBe("offline")

      offline.send({ type: "COUNTER_SYNC", payload: { name: "offline", state: { p: "nope" } } })
      expect((await offline.next("ERROR", (m) => m.payload.code === 400)).payload.code).toBe(400)
    })
  })
})
