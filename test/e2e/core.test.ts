import { Effect } from "effect"
import { Packr } from "msgpackr"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Maps } from "../../src/layers/Maps.js"
import { packClientBatch } from "../../src/protocol/batch.js"
import { TestClient } from "../support/client.js"
import { type RunningServer, signToken, startServer } from "../support/server.js"

const packr = new Packr({ useRecords: false })
const ts = (millis: number, counter = 0, nodeId = "client-a") => ({ millis, counter, nodeId })
const put = (id: string | undefined, mapName: string, key: string, value: unknown, millis = Date.now(), extra: object = {}) => ({
  ...(id !== undefined ? { id } : {}),
  mapName,
  key,
  opType: "PUT",
  record: { value, timestamp: ts(millis, 0, "client-a") },
  ...extra
})

/** The stored LWW record of a key, read from the server's own map store. */
const storedRecord = (server: RunningServer, mapName: string, key: string) =>
  server.run(Effect.gen(function* () {
    const maps = yield* Maps
    const state = yield* maps.get(mapName)
    return state.lww.get(key)?.record
  }))

describe("core server over real WebSockets", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await startServer({ maxDriftMs: 60_000 })
  })
  afterAll(async () => {
    await server.close()
  })

  describe("authentication", () => {
    it("sends AUTH_REQUIRED, accepts a valid token and reports the userId", async () => {
      const c = await TestClient.connect(server.url)
      await c.next("AUTH_REQUIRED")
      c.send({ type: "AUTH", token: await signToken({ sub: "alice", roles: ["USER"] }) })
      const ack = await c.next("AUTH_ACK")
      expect(ack).toEqual({ type: "AUTH_ACK", protocolVersion: 1, userId: "alice" })
      c.close()
    })

    it("omits userId when the token has no sub", async () => {
      const c = await TestClient.connect(server.url)
      c.send({ type: "AUTH", token: await signToken({ roles: ["USER"] }) })
      const ack = await c.next("AUTH_ACK")
      expect(ack).toEqual({ type: "AUTH_ACK", protocolVersion: 1 })
      expect("userId" in ack).toBe(false)
      c.close()
    })

    it("answers a bad signature with AUTH_FAIL and closes 4001 Unauthorized", async () => {
      const c = await TestClient.connect(server.url)
      c.send({ type: "AUTH", token: await signToken({ sub: "mallory" }, "some-other-secret-that-is-long-enough") })
      const fail = await c.next("AUTH_FAIL")
      expect(fail.error).toBe("invalid signature")
      expect(await c.closed()).toEqual({ code: 4001, reason: "Unauthorized" })
    })

    it("rejects an expired token with 'jwt expired'", async () => {
      const c = await TestClient.connect(server.url)
      const token = await signToken({ sub: "bob", exp: Math.floor(Date.now() / 1000) - 60 })
      c.send({ type: "AUTH", token })
      expect((await c.next("AUTH_FAIL")).error).toBe("jwt expired")
      expect((await c.closed()).code).toBe(4001)
    })

    it("rejects a malformed token", async () => {
      const c = await TestClient.connect(server.url)
      c.send({ type: "AUTH", token: "not-a-jwt" })
      expect((await c.next("AUTH_FAIL")).error).toBe("jwt malformed")
      expect((await c.closed()).code).toBe(4001)
    })

    it("drops every non-AUTH frame before authentication silently, then authenticates", async () => {
      const c = await TestClient.connect(server.url)
      await c.next("AUTH_REQUIRED")
      c.send({ type: "OP_BATCH", payload: { ops: [put("1", "pre-auth", "k", { a: 1 })] } })
      c.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "pre-auth", query: {} } })
      c.send({ type: "NOT_A_TYPE" })
      c.sendRaw(Buffer.from([0xc1, 0xff, 0x00]))
      c.send({ type: "AUTH", token: await signToken() })
      await c.next("AUTH_ACK")
      await c.sync()
      expect(c.received.map((m) => m.type).filter((t) => t !== "ERROR")).toEqual(["AUTH_REQUIRED", "AUTH_ACK"])
      expect(await storedRecord(server, "pre-auth", "k")).toBeUndefined()
      c.close()
    })

    it("ignores a repeated AUTH after success (no second AUTH_ACK)", async () => {
      const c = await TestClient.authed(server.url)
      c.send({ type: "AUTH", token: await signToken() })
      await c.sync()
      expect(c.ofType("AUTH_ACK")).toHaveLength(1)
      c.close()
    })
  })

  describe("heartbeat", () => {
    it("answers PING before and after authentication", async () => {
      const c = await TestClient.connect(server.url)
      c.send({ type: "PING", timestamp: 1234 })
      const before = await c.next("PONG")
      expect(before.timestamp).toBe(1234)
      expect(typeof before.serverTime).toBe("number")
      c.send({ type: "AUTH", token: await signToken() })
      await c.next("AUTH_ACK")
      c.send({ type: "PING", timestamp: 1700000000000 })
      const after = await c.next("PONG", (m) => m.timestamp === 1700000000000)
      expect(Math.abs(after.serverTime - Date.now())).toBeLessThan(5000)
      c.close()
    })
  })

  describe("writes", () => {
    it("CLIENT_OP with an id gets exactly one OP_ACK with results", async () => {
      const c = await TestClient.authed(server.url)
      c.send({ type: "CLIENT_OP", payload: put("op-1", "todos", "t1", { title: "milk" }) })
      const ack = await c.next("OP_ACK")
      expect(ack.payload).toEqual({
        lastId: "op-1",
        achievedLevel: "REPLICATED",
        results: [{ opId: "op-1", success: true, achievedLevel: "REPLICATED" }]
      })
      await c.sync()
      expect(c.ofType("OP_ACK")).toHaveLength(1)
      expect((await storedRecord(server, "todos", "t1"))?.value).toEqual({ title: "milk" })
      c.close()
    })

    it("CLIENT_OP without an id is applied and not acknowledged", async () => {
      const c = await TestClient.authed(server.url)
      c.send({ type: "CLIENT_OP", payload: put(undefined, "todos", "no-id", 1) })
      await c.sync()
      expect(c.ofType("OP_ACK")).toHaveLength(0)
      expect((await storedRecord(server, "todos", "no-id"))?.value).toBe(1)
      c.close()
    })

    it("OP_BATCH gets exactly one OP_ACK with lastId and per-op results (numeric-string ids)", async () => {
      const c = await TestClient.authed(server.url)
      const ops = ["9", "10", "11", "12"].map((id, i) => ({ ...put(id, "batch-map", `k${i}`, { i }), timestamp: ts(Date.now()), synced: false }))
      c.send({ type: "OP_BATCH", payload: { ops } })
      const ack = await c.next("OP_ACK")
      expect(ack.payload.lastId).toBe("12")
      expect(ack.payload.results.map((r: any) => r.opId)).toEqual(["9", "10", "11", "12"])
      expect(ack.payload.results.every((r: any) => r.success)).toBe(true)
      await c.sync()
      expect(c.ofType("OP_ACK")).toHaveLength(1)
      c.close()
    })

    it("an empty OP_BATCH is not acknowledged; a batch whose ops have no ids acks with lastId ''", async () => {
      const c = await TestClient.authed(server.url)
      c.send({ type: "OP_BATCH", payload: { ops: [] } })
      c.send({ type: "OP_BATCH", payload: { ops: [put(undefined, "batch-map", "x", 1)] } })
      const ack = await c.next("OP_ACK")
      expect(ack.payload).toEqual({ lastId: "", achievedLevel: "FIRE_AND_FORGET", results: [] })
      await c.sync()
      expect(c.ofType("OP_ACK")).toHaveLength(1)
      c.close()
    })

    it("acknowledges each write concern level as specified", async () => {
      const c = await TestClient.authed(server.url)
      const levels = ["FIRE_AND_FORGET", "MEMORY", "APPLIED", "REPLICATED", "PERSISTED"] as const
      c.send({
        type: "OP_BATCH",
        payload: { ops: levels.map((level, i) => put(`wc-${i}`, "wc", `k${i}`, i, Date.now(), { writeConcern: level })) }
      })
      const ack = await c.next("OP_ACK")
      const byId = Object.fromEntries(ack.payload.results.map((r: any) => [r.opId, r]))
      expect(byId["wc-0"]).toEqual({ opId: "wc-0", success: true, achievedLevel: "FIRE_AND_FORGET" })
      expect(byId["wc-1"]).toEqual({ opId: "wc-1", success: true, achievedLevel: "REPLICATED" })
      expect(byId["wc-2"]).toEqual({ opId: "wc-2", success: true, achievedLevel: "REPLICATED" })
      expect(byId["wc-3"]).toEqual({ opId: "wc-3", success: true, achievedLevel: "REPLICATED" })
      // Memory storage: PERSISTED is refused at once, not after the timeout.
      expect(byId["wc-4"]).toEqual({
        opId: "wc-4",
        success: false,
        achievedLevel: "REPLICATED",
        error: "PERSISTED not available: no durable storage configured"
      })
      expect(ack.payload.achievedLevel).toBe("FIRE_AND_FORGET")
      // The batch-level default applies when an op has none.
      c.send({ type: "OP_BATCH", payload: { writeConcern: "PERSISTED", ops: [put("wc-5", "wc", "k5", 5)] } })
      const ack2 = await c.next("OP_ACK", (m) => m.payload.lastId === "wc-5")
      expect(ack2.payload.results[0].success).toBe(false)
      c.close()
    })

    it("rejects a timestamp too far ahead (drift) with OP_REJECTED and a failure result", async () => {
      const c = await TestClient.authed(server.url)
      const future = Date.now() + 10 * 60_000
      c.send({ type: "OP_BATCH", payload: { ops: [put("d1", "drift", "k", 1, future), put("d2", "drift", "k2", 2)] } })
      const rejected = await c.next("OP_REJECTED")
      expect(rejected.payload.opId).toBe("d1")
      expect(rejected.payload.code).toBe(400)
      expect(rejected.payload.reason).toMatch(/^Timestamp drift: \d+ ms ahead of server time \(max 60000 ms\)$/)
      const ack = await c.next("OP_ACK")
      expect(ack.payload.results[0]).toMatchObject({ opId: "d1", success: false, achievedLevel: "FIRE_AND_FORGET" })
      expect(ack.payload.results[1]).toMatchObject({ opId: "d2", success: true })
      expect(await storedRecord(server, "drift", "k")).toBeUndefined()
      expect((await storedRecord(server, "drift", "k2"))?.value).toBe(2)
      c.close()
    })

    it("refuses invalid ops and map type mismatches per op", async () => {
      const c = await TestClient.authed(server.url)
      c.send({ type: "CLIENT_OP", payload: { id: "bad-1", mapName: "typed", key: "k", opType: "PUT", record: { value: 1, timestamp: { millis: -1, counter: 0, nodeId: "x" } } } })
      const r1 = await c.next("OP_REJECTED")
      expect(r1.payload.code).toBe(400)
      expect(r1.payload.reason).toMatch(/^Invalid operation: /)
      c.send({ type: "CLIENT_OP", payload: put("lww-1", "typed", "k", 1) })
      await c.next("OP_ACK")
      c.send({ type: "CLIENT_OP", payload: { id: "or-1", mapName: "typed", key: "k", opType: "OR_ADD", orRecord: { value: 1, timestamp: ts(Date.now()), tag: "t1" } } })
      const r2 = await c.next("OP_REJECTED", (m) => m.payload.opId === "or-1")
      expect(r2.payload).toEqual({ opId: "or-1", code: 409, reason: "Map type mismatch: LWWMap but received OR op" })
      c.close()
    })

    it("two clients writing the same LWW key converge on the later HLC timestamp", async () => {
      const a = await TestClient.authed(server.url, { sub: "a" })
      const b = await TestClient.authed(server.url, { sub: "b" })
      const t = Date.now()
      // b's write carries the later timestamp but arrives first; a's older write must lose.
      b.send({ type: "CLIENT_OP", payload: { id: "b1", mapName: "conv", key: "k", opType: "PUT", record: { value: "from-b", timestamp: ts(t, 5, "b") } } })
      await b.next("OP_ACK")
      a.send({ type: "CLIENT_OP", payload: { id: "a1", mapName: "conv", key: "k", opType: "PUT", record: { value: "from-a", timestamp: ts(t, 1, "a") } } })
      const ackA = await a.next("OP_ACK")
      expect(ackA.payload.results[0].success).toBe(true) // losing the merge is still a success
      expect(await storedRecord(server, "conv", "k")).toEqual({ value: "from-b", timestamp: ts(t, 5, "b") })
      // Equal millis and counter: nodeId decides ("a" < "b").
      a.send({ type: "CLIENT_OP", payload: { id: "a2", mapName: "conv", key: "k2", opType: "PUT", record: { value: "a", timestamp: ts(t, 0, "a") } } })
      b.send({ type: "CLIENT_OP", payload: { id: "b2", mapName: "conv", key: "k2", opType: "PUT", record: { value: "b", timestamp: ts(t, 0, "b") } } })
      await a.next("OP_ACK", (m) => m.payload.lastId === "a2")
      await b.next("OP_ACK", (m) => m.payload.lastId === "b2")
      expect((await storedRecord(server, "conv", "k2"))?.value).toBe("b")
      a.close()
      b.close()
    })

    it("OR add and remove across clients (tombstones, unknown tags)", async () => {
      const a = await TestClient.authed(server.url)
      const b = await TestClient.authed(server.url)
      const t = Date.now()
      const orAdd = (id: string, tag: string, value: unknown) => ({
        type: "CLIENT_OP",
        payload: { id, mapName: "tags", key: "list", opType: "OR_ADD", orRecord: { value, timestamp: ts(t), tag } }
      })
      a.send(orAdd("1", `${t}:0:a`, "x"))
      a.send(orAdd("2", `${t}:1:a`, "y"))
      await a.next("OP_ACK", (m) => m.payload.lastId === "2")
      b.send({ type: "CLIENT_OP", payload: { id: "3", mapName: "tags", key: "list", opType: "OR_REMOVE", orTag: `${t}:0:a` } })
      await b.next("OP_ACK")
      // A late re-add of the tombstoned tag is ignored; removing an unknown tag is recorded.
      a.send(orAdd("4", `${t}:0:a`, "x"))
      b.send({ type: "CLIENT_OP", payload: { id: "5", mapName: "tags", key: "list", opType: "OR_REMOVE", orTag: "never-seen" } })
      await a.next("OP_ACK", (m) => m.payload.lastId === "4")
      await b.next("OP_ACK", (m) => m.payload.lastId === "5")
      const values = await server.run(Effect.gen(function* () {
        const maps = yield* Maps
        const state = yield* maps.get("tags")
        return { values: state.or.liveValues("list", Date.now()), dead: state.or.isTombstoned("never-seen") }
      }))
      expect(values).toEqual({ values: ["y"], dead: true })
      a.close()
      b.close()
    })

    it("refuses writes without permission with OP_REJECTED 403 (policies configured)", async () => {
      const secured = await startServer({
        securityPolicies: [
          { role: "USER", mapNamePattern: "public*", actions: ["READ", "PUT"] },
          { role: "USER", mapNamePattern: "own/{userId}", actions: ["ALL"] }
        ]
      })
      try {
        const c = await TestClient.authed(secured.url, { sub: "u1" })
        c.send({
          type: "OP_BATCH",
          payload: {
            ops: [
              put("p1", "public-notes", "k", 1),
              put("p2", "private", "k", 1),
              put("p3", "own/u1", "k", 1),
              put("p4", "own/u2", "k", 1),
              { id: "p5", mapName: "public-notes", key: "k", opType: "REMOVE", record: null },
              put("p6", "$sys/config", "k", 1)
            ]
          }
        })
        const ack = await c.next("OP_ACK")
        const ok = Object.fromEntries(ack.payload.results.map((r: any) => [r.opId, r.success]))
        expect(ok).toEqual({ p1: true, p2: false, p3: true, p4: false, p5: false, p6: false })
        const rejected = c.ofType("OP_REJECTED").map((m) => [m.payload.opId, m.payload.code, m.payload.reason])
        expect(rejected).toEqual([
          ["p2", 403, "Access Denied"],
          ["p4", 403, "Access Denied"],
          ["p5", 403, "Access Denied"],
          ["p6", 403, "Access Denied"]
        ])
        const admin = await TestClient.authed(secured.url, { sub: "root", roles: ["ADMIN"] })
        admin.send({ type: "CLIENT_OP", payload: put("s1", "$sys/config", "k", 1) })
        expect((await admin.next("OP_ACK")).payload.results[0].success).toBe(true)
        c.close()
        admin.close()
      } finally {
        await secured.close()
      }
    })

    it("preserves per-connection order for 1,000 pipelined writes", async () => {
      const c = await TestClient.authed(server.url)
      const t = Date.now()
      for (let i = 1; i <= 1000; i++) {
        c.send({ type: "CLIENT_OP", payload: { id: String(i), mapName: "order", key: "k", opType: "PUT", record: { value: i, timestamp: ts(t, i, "client-a") } } })
      }
      await c.next("OP_ACK", (m) => m.payload.lastId === "1000", 20_000)
      const ids = c.ofType("OP_ACK").map((m) => Number(m.payload.lastId))
      expect(ids).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1))
      expect((await storedRecord(server, "order", "k"))?.value).toBe(1000)
      c.close()
    })
  })

  describe("bad input", () => {
    it("survives garbage, deep nesting, unknown types and schema-invalid messages, and keeps serving", async () => {
      const victim = await TestClient.authed(server.url)
      const other = await TestClient.authed(server.url)
      other.send({ type: "CLIENT_OP", payload: put("keep-1", "survive", "k", "kept") })
      await other.next("OP_ACK")

      victim.sendRaw(Buffer.from("this is not msgpack \u0000\u0001", "latin1"))
      const e1 = await victim.next("ERROR")
      expect(e1.payload.code).toBe(400)

      // 2,000-deep nested frame: a map holding 1,999 nested arrays.
      const depth = 2000
      const nested = Buffer.concat([Buffer.from([0x82, 0xa4]), Buffer.from("type"), Buffer.from([0xa9]), Buffer.from("CLIENT_OP"), Buffer.from([0xa1, 0x78]), Buffer.alloc(depth - 1, 0x91), Buffer.from([0xc0])])
      victim.sendRaw(nested)
      const e2 = await victim.next("ERROR")
      expect(e2.payload).toEqual({ code: 400, message: "Message nesting exceeds the maximum depth" })

      victim.send({ type: "DEFINITELY_UNKNOWN" })
      const e3 = await victim.next("ERROR")
      expect(e3.payload.code).toBe(400)
      expect(e3.payload.message).toContain("DEFINITELY_UNKNOWN")

      victim.send({ type: "OP_BATCH", payload: { ops: "not-an-array" } })
      const e4 = await victim.next("ERROR")
      expect(e4.payload.code).toBe(400)
      expect(e4.payload.message).toBe("Invalid message format")
      expect(e4.payload.details).toBeDefined()

      // A JSON text frame is accepted like msgpack.
      victim.sendRaw(JSON.stringify({ type: "CLIENT_OP", payload: put("json-1", "survive", "json", 1) }), false)
      expect((await victim.next("OP_ACK")).payload.lastId).toBe("json-1")

      // The other connection is unaffected and no acknowledged write was lost.
      other.send({ type: "CLIENT_OP", payload: put("keep-2", "survive", "k2", "kept2") })
      await other.next("OP_ACK", (m) => m.payload.lastId === "keep-2")
      expect((await storedRecord(server, "survive", "k"))?.value).toBe("kept")
      expect(victim.closeInfo).toBeUndefined()
      victim.close()
      other.close()
    })

    it("closes an oversize frame with 1009 and keeps serving others", async () => {
      const small = await startServer({ maxMessageBytes: 2 * 1024 * 1024 })
      try {
        const big = await TestClient.authed(small.url)
        const other = await TestClient.authed(small.url)
        big.send({ type: "CLIENT_OP", payload: put("big", "m", "k", "x".repeat(3 * 1024 * 1024)) })
        expect((await big.closed()).code).toBe(1009)
        other.send({ type: "CLIENT_OP", payload: put("small", "m", "k", "fine") })
        expect((await other.next("OP_ACK")).payload.lastId).toBe("small")
        other.close()
      } finally {
        await small.close()
      }
    })

    it("unpacks an inbound BATCH, skipping malformed and too-deep inner records", async () => {
      const c = await TestClient.authed(server.url)
      const good1 = packr.pack({ type: "CLIENT_OP", payload: put("b-1", "inbatch", "a", 1) })
      const garbage = Buffer.from([0xc1, 0xc1, 0xc1])
      const tooDeep = Buffer.concat([Buffer.from([0x81, 0xa4]), Buffer.from("type"), Buffer.alloc(300, 0x91), Buffer.from([0xc0])])
      const good2 = packr.pack({ type: "CLIENT_OP", payload: put("b-2", "inbatch", "b", 2) })
      const data = packClientBatch([good1, garbage, tooDeep, good2])
      c.send({ type: "BATCH", count: 4, data })
      const acks = [await c.next("OP_ACK"), await c.next("OP_ACK")]
      expect(acks.map((m) => m.payload.lastId)).toEqual(["b-1", "b-2"])
      expect((await storedRecord(server, "inbatch", "b"))?.value).toBe(2)

      // More than 8192 records: dropped as a whole with ERROR 413.
      const many = packClientBatch(Array.from({ length: 8193 }, () => Buffer.from(packr.pack({ type: "X" }))))
      c.send({ type: "BATCH", count: 8193, data: many })
      const e = await c.next("ERROR", (m) => m.payload.code === 413)
      expect(e.payload.message).toBe("batch exceeds maximum inner item count")
      c.close()
    })

    it("never sends BATCH and never emits nil for absent optional fields", async () => {
      const c = await TestClient.authed(server.url)
      c.send({ type: "CLIENT_OP", payload: put("n-1", "nil", "k", 1) })
      const ack = await c.next("OP_ACK")
      expect("error" in ack.payload.results[0]).toBe(false)
      expect(c.ofType("BATCH")).toHaveLength(0)
      c.close()
    })
  })
})
