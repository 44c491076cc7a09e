/**
 * Every admission limit of behavior.md §3.4 / §3.9 against a live server. Limits already covered
 * elsewhere are referenced, not repeated:
 *  - frame size above maxMessageBytes → close 1009: test/e2e/core.test.ts "closes an oversize frame with 1009"
 *  - 2,000-deep frame dropped with ERROR 400, connection kept: test/e2e/core.test.ts "survives garbage, deep nesting…"
 *  - inbound BATCH above 8192 records → ERROR 413; too-deep inner records skipped: core.test.ts "unpacks an inbound BATCH…"
 *  - HTTP body above the limit → 413: test/ops/http-sync.test.ts
 */
import { Effect } from "effect"
import { Packr } from "msgpackr"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Sessions } from "../../src/layers/Sessions.js"
import type { CloseRequest } from "../../src/layers/Connections.js"
import { packClientBatch } from "../../src/protocol/batch.js"
import { TestClient } from "../support/client.js"
import { type RunningServer, signToken, startServer } from "../support/server.js"
import { putOp, storedValue, waitUntil, write } from "./support.js"

const packr = new Packr({ useRecords: false })

const withServer = async (overrides: Parameters<typeof startServer>[0], body: (server: RunningServer) => Promise<void>) => {
  const server = await startServer(overrides)
  try {
    await body(server)
  } finally {
    await server.close()
  }
}

/** `depth` nested arrays around a nil. */
const nestedArrays = (depth: number): unknown => {
  let v: unknown = null
  for (let i = 0; i < depth; i++) v = [v]
  return v
}

/** `depth` nested `not` predicates around an `eq`. */
const nestedNot = (depth: number): unknown => {
  let p: unknown = { op: "eq", attribute: "s", value: 1 }
  for (let i = 0; i < depth; i++) p = { op: "not", children: [p] }
  return p
}

describe("admission limits over real WebSockets", () => {
  describe("per-connection token bucket", () => {
    it("charges 1 per message, ops.length per OP_BATCH and records per inbound BATCH; over budget → ERROR 429, dropped, no OP_ACK", () =>
      // 10 tokens, refilled at 1/s: the test runs in far less than a second per token.
      withServer({ rateLimitPerSecond: 1, rateLimitBurst: 10 }, async (server) => {
        const c = await TestClient.authed(server.url) // AUTH costs 1 → 9 left
        const ops = Array.from({ length: 9 }, (_, i) => putOp(`b${i}`, "rl", `k${i}`, i))
        c.send({ type: "OP_BATCH", payload: { ops } }) // costs 9 → bucket empty
        c.send({ type: "CLIENT_OP", payload: putOp("over", "rl", "over", 1) })
        const inner = packr.pack({ type: "CLIENT_OP", payload: putOp("inner", "rl", "inner", 1) })
        c.send({ type: "BATCH", count: 2, data: packClientBatch([inner, inner]) })
        await waitUntil(c, (r) => r.filter((m) => m.type === "ERROR").length === 2, "two 429s")
        const errors = c.ofType("ERROR").map((m) => m.payload)
        expect(errors).toEqual([
          { code: 429, message: "rate limit exceeded, slow down" },
          { code: 429, message: "rate limit exceeded, slow down" }
        ])
        expect(c.ofType("OP_ACK").map((m) => m.payload.lastId)).toEqual(["b8"])
        expect(await storedValue(server, "rl", "over")).toBeUndefined()
        expect(await storedValue(server, "rl", "inner")).toBeUndefined()
        expect(await storedValue(server, "rl", "k8")).toBe(8)
        expect(c.closeInfo).toBeUndefined()
        c.close()
      }))

    it("drops over-budget frames silently before authentication", () =>
      withServer({ rateLimitPerSecond: 1, rateLimitBurst: 3 }, async (server) => {
        const c = await TestClient.connect(server.url)
        await c.next("AUTH_REQUIRED")
        for (let i = 0; i < 3; i++) c.send({ type: "PING", timestamp: i })
        c.send({ type: "PING", timestamp: 99 }) // over budget: no PONG, no ERROR
        await c.next("PONG", (m) => m.timestamp === 2)
        expect(c.ofType("ERROR")).toHaveLength(0)
        expect(c.ofType("PONG").map((m) => m.timestamp)).toEqual([0, 1, 2])
        c.close()
      }))
  })

  describe("decode safety", () => {
    it("accepts nesting of exactly maxDepth (256) and drops 257 with ERROR 400, keeping the connection", () =>
      withServer({}, async (server) => {
        const c = await TestClient.authed(server.url)
        // type map (1) → payload (2) → record (3) → value arrays from depth 4.
        c.send({ type: "CLIENT_OP", payload: putOp("d256", "deep", "k", nestedArrays(253)) })
        expect((await c.next("OP_ACK")).payload.lastId).toBe("d256")
        c.send({ type: "CLIENT_OP", payload: putOp("d257", "deep", "k2", nestedArrays(254)) })
        expect((await c.next("ERROR")).payload).toEqual({ code: 400, message: "Message nesting exceeds the maximum depth" })
        expect(await storedValue(server, "deep", "k2")).toBeUndefined()
        await write(c, "after", "deep", "k3", 1)
        c.close()
      }))

    it("refuses msgpack extension types other than ext-0 (msgpackr records, dates)", () =>
      withServer({}, async (server) => {
        const c = await TestClient.authed(server.url)
        // fixext4 type -1 (msgpack timestamp → Date) as the last value of a frame (replacing the fixint 0)
        const frame = Buffer.concat([
          Buffer.from(packr.pack({ type: "CLIENT_OP", v: 0 })).subarray(0, -1),
          Buffer.from([0xd6, 0xff, 0, 0, 0, 1])
        ])
        c.sendRaw(frame)
        const e = await c.next("ERROR")
        expect(e.payload).toMatchObject({ code: 400, message: "Invalid message format", details: "msgpack extension type not allowed" })
        // msgpackr record extension (0x72) as the whole frame
        c.sendRaw(Buffer.from([0xd4, 0x72, 0x00]))
        expect((await c.next("ERROR")).payload.details).toBe("msgpack extension type not allowed")
        await write(c, "ok", "ext", "k", 1)
        c.close()
      }))

    it("honours a configured inbound BATCH item cap (413, nothing applied)", () =>
      withServer({ maxBatchItems: 3 }, async (server) => {
        const c = await TestClient.authed(server.url)
        const records = Array.from({ length: 4 }, (_, i) => packr.pack({ type: "CLIENT_OP", payload: putOp(`i${i}`, "cap", `k${i}`, i) }))
        c.send({ type: "BATCH", count: 4, data: packClientBatch(records) })
        expect((await c.next("ERROR")).payload).toEqual({ code: 413, message: "batch exceeds maximum inner item count" })
        c.send({ type: "BATCH", count: 3, data: packClientBatch(records.slice(0, 3)) })
        await c.next("OP_ACK", (m) => m.payload.lastId === "i2")
        expect(await storedValue(server, "cap", "k0")).toBe(0)
        expect(await storedValue(server, "cap", "k3")).toBeUndefined()
        c.close()
      }))

    it("closes a connection whose frames repeatedly exceed the decode budget with 1008; others keep working", () =>
      withServer({ decodeBudgetMs: 2, decodeStrikeLimit: 3 }, async (server) => {
        const other = await TestClient.authed(server.url)
        const heavy = await TestClient.authed(server.url)
        // ~200k small maps: tens of milliseconds of msgpack decoding per frame, far over 2 ms.
        const items = Array.from({ length: 200_000 }, (_, i) => ({ a: i }))
        const frame = packr.pack({ type: "HEAVY", items })
        for (let i = 0; i < 3; i++) heavy.sendRaw(frame)
        expect(await heavy.closed()).toEqual({ code: 1008, reason: "Policy violation" })
        await write(other, "still-ok", "budget", "k", 1)
        other.close()
      }))
  })

  describe("user-supplied queries (limits in src/query/match.ts)", () => {
    it("answers an over-limit QUERY_SUB with a clear QUERY_RESP error and keeps serving; a catastrophic regex is linear", () =>
      withServer({}, async (server) => {
        const c = await TestClient.authed(server.url)
        await write(c, "r1", "q", "k", { s: "a".repeat(50_000) + "!" })
        const ask = async (queryId: string, query: unknown) => {
          c.send({ type: "QUERY_SUB", payload: { queryId, mapName: "q", query } })
          return (await c.next("QUERY_RESP", (m) => m.payload.queryId === queryId)).payload
        }
        const many = { predicate: { op: "or", children: Array.from({ length: 1_001 }, (_, i) => ({ op: "eq", attribute: "s", value: i })) } }
        expect(await ask("nodes", many)).toEqual({ queryId: "nodes", results: [], error: expect.stringContaining("more than 1000 predicate nodes"), code: "INVALID_QUERY" })
        const deep = { predicate: nestedNot(40) }
        expect(await ask("depth", deep)).toMatchObject({ results: [], code: "INVALID_QUERY" })
        const longPattern = { predicate: { op: "regex", attribute: "s", value: "a".repeat(1_001) } }
        expect(await ask("pattern", longPattern)).toMatchObject({ results: [], code: "INVALID_QUERY" })
        // (a+)+$ on 50,000 'a's followed by '!' backtracks for ages in JavaScript's RegExp; re2js is linear.
        const evil = await ask("evil", { predicate: { op: "regex", attribute: "s", value: "(a+)+$" } })
        expect(evil.results).toEqual([])
        expect(evil.error).toBeUndefined()
        await write(c, "r2", "q", "k2", 1)
        c.close()
      }))
  })

  describe("connection lifecycle", () => {
    it("closes a socket that does not authenticate within authDeadlineMs with 4001 'Auth timeout'", () =>
      withServer({ authDeadlineMs: 300 }, async (server) => {
        const authed = await TestClient.authed(server.url)
        const silent = await TestClient.connect(server.url)
        expect(await silent.closed()).toEqual({ code: 4001, reason: "Auth timeout" })
        // The authenticated connection is past the same deadline and unaffected.
        await write(authed, "alive", "deadline", "k", 1)
        expect(authed.closeInfo).toBeUndefined()
        authed.close()
      }))

    it("evicts an authenticated connection that stays silent past idleTimeoutMs with 4002 'Heartbeat timeout'", () =>
      withServer({ idleTimeoutMs: 200, idleCheckIntervalMs: 50 }, async (server) => {
        const silent = await TestClient.authed(server.url)
        expect(await silent.closed()).toEqual({ code: 4002, reason: "Heartbeat timeout" })
      }))

    it("refuses connections above the new-connection rate with close 1013 'Server overloaded'", () =>
      withServer({ connectionRateLimit: 3, connectionRateWindowMs: 60_000 }, async (server) => {
        const admitted = [await TestClient.authed(server.url), await TestClient.authed(server.url), await TestClient.authed(server.url)]
        const refused = await TestClient.connect(server.url)
        expect(await refused.closed()).toEqual({ code: 1013, reason: "Server overloaded" })
        expect(refused.ofType("AUTH_REQUIRED")).toHaveLength(0)
        await write(admitted[0]!, "w", "rate", "k", 1)
        for (const c of admitted) c.close()
      }))

    it("refuses connections above the pending (unauthenticated) cap with 1013; authenticating frees a slot", () =>
      withServer({ maxPendingConnections: 2 }, async (server) => {
        const a = await TestClient.connect(server.url)
        const b = await TestClient.connect(server.url)
        await Promise.all([a.next("AUTH_REQUIRED"), b.next("AUTH_REQUIRED")])
        const refused = await TestClient.connect(server.url)
        expect(await refused.closed()).toEqual({ code: 1013, reason: "Server overloaded" })
        a.send({ type: "AUTH", token: await signToken() })
        await a.next("AUTH_ACK")
        const c = await TestClient.connect(server.url)
        await c.next("AUTH_REQUIRED")
        expect(await server.run(Effect.flatMap(Sessions, (s) => Effect.sync(() => s.pendingConnections())))).toBe(2) // b and c
        b.close()
        a.close()
        c.close()
      }))

    it("closes a client that never reads with 4003 'Slow consumer' once its backlog exceeds outboundMaxBytes", () =>
      withServer({ outboundMaxBytes: 1024 * 1024 }, async (server) => {
        const serverCloses: CloseRequest[] = []
        let slowDetected!: () => void
        const detected = new Promise<void>((resolve) => (slowDetected = resolve))
        await server.run(Effect.flatMap(Sessions, (s) => Effect.sync(() => s.onServerClose((_c, request) => {
          serverCloses.push(request)
          if (request.code === 4003) slowDetected()
        }))))
        const writer = await TestClient.authed(server.url)
        await write(writer, "big", "slow", "big", { blob: "x".repeat(512 * 1024) })
        const slow = await TestClient.authed(server.url)
        const raw = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket
        raw.pause() // never reads: the server's backlog grows once the kernel buffers are full
        for (let i = 0; i < 80; i++) slow.send({ type: "QUERY_SUB", payload: { queryId: `q${i}`, mapName: "slow", query: {} } })
        await detected
        expect(serverCloses).toEqual([{ code: 4003, reason: "Slow consumer" }])
        raw.resume() // the client now reads what was queued, then the close frame
        expect(await slow.closed()).toEqual({ code: 4003, reason: "Slow consumer" })
        await write(writer, "after", "slow", "k", 1)
        writer.close()
      }))
  })

  describe("server-wide in-flight write batches (behavior.md §3.9)", () => {
    let server: RunningServer
    beforeAll(async () => {
      server = await startServer({ maxInFlightBatches: 1, batchAdmissionWaitMs: 1_000 })
    })
    afterAll(async () => {
      await server.close()
    })
    const holdCapacity = () => server.run(Effect.flatMap(Sessions, (s) => Effect.sync(() => s.inFlight.tryAcquire())))
    const releaseCapacity = () => server.run(Effect.flatMap(Sessions, (s) => Effect.sync(() => s.inFlight.release())))

    it("a batch that finds no capacity within the wait is refused whole: ERROR 429, no OP_ACK, nothing applied", async () => {
      const c = await TestClient.authed(server.url)
      expect(await holdCapacity()).toBe(true) // the one slot is taken by "another batch"
      c.send({ type: "OP_BATCH", payload: { ops: [putOp("x1", "inflight", "a", 1), putOp("x2", "inflight", "b", 2)] } })
      expect((await c.next("ERROR")).payload).toEqual({ code: 429, message: "server overloaded, try again later" })
      expect(c.ofType("OP_ACK")).toHaveLength(0)
      expect(await storedValue(server, "inflight", "a")).toBeUndefined()
      await releaseCapacity()
      // The client resends its pending ops with the next flush; now there is room.
      c.send({ type: "OP_BATCH", payload: { ops: [putOp("x1", "inflight", "a", 1), putOp("x2", "inflight", "b", 2)] } })
      expect((await c.next("OP_ACK")).payload.lastId).toBe("x2")
      c.close()
    })

    it("a batch above the limit waits for capacity and is applied when it frees up; PING is not held back", async () => {
      const c = await TestClient.authed(server.url)
      expect(await holdCapacity()).toBe(true)
      c.send({ type: "OP_BATCH", payload: { ops: [putOp("w1", "inflight", "w", 1)] } })
      c.send({ type: "PING", timestamp: 7 })
      await c.next("PONG") // answered on receipt: the batch has arrived and is waiting
      expect(c.ofType("OP_ACK")).toHaveLength(0)
      await releaseCapacity()
      expect((await c.next("OP_ACK")).payload.lastId).toBe("w1")
      expect(await storedValue(server, "inflight", "w")).toBe(1)
      const capacity = await server.run(Effect.flatMap(Sessions, (s) => Effect.sync(() => s.inFlight.size)))
      expect(capacity).toBe(0) // every permit came back
      c.close()
    })
  })
})
