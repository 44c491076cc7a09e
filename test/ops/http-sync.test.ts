import { Effect } from "effect"
import * as fc from "fast-check"
import { Packr } from "msgpackr"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { compareTimestamps } from "../../src/crdt/hlc.js"
import { anonymousPrincipal } from "../../src/layers/Auth.js"
import { bearerToken, decodeSyncBody, HttpSync, type HttpSyncResponseBody, isJsonContentType } from "../../src/layers/HttpSync.js"
import type { HttpSyncRequest } from "../../src/protocol/schema.js"
import { Maps } from "../../src/layers/Maps.js"
import { TestClient } from "../support/client.js"
import { packBody, postSync, type RunningOpsServer, signToken, startOpsServer } from "./support.js"

const ZERO = { millis: 0, counter: 0, nodeId: "" }
const ts = (millis: number, counter = 0, nodeId = "http-client") => ({ millis, counter, nodeId })
const put = (mapName: string, key: string, value: unknown, millis = Date.now(), extra: object = {}) => ({
  mapName,
  key,
  record: { value, timestamp: ts(millis) },
  ...extra
})
const remove = (mapName: string, key: string, millis = Date.now()) => ({
  mapName,
  key,
  opType: "REMOVE",
  record: { value: null, timestamp: ts(millis) }
})

describe("POST /sync", () => {
  let server: RunningOpsServer
  let token: string
  beforeAll(async () => {
    server = await startOpsServer({
      securityPolicies: [
        { role: "USER", mapNamePattern: "*", actions: ["ALL"] },
        { role: "AUDITOR", mapNamePattern: "people", actions: ["READ"], allowedFields: ["name"] }
      ]
    })
    token = await signToken({ sub: "http-user" })
  })
  afterAll(async () => {
    await server.close()
  })

  const sync = (body: unknown, json = false, t: string = token) => postSync(server.httpUrl, body, { json, token: t })

  describe("push", () => {
    it("applies ops (msgpack in, msgpack out) with default ids and acks after apply", async () => {
      const reply = await sync({ clientHlc: ts(Date.now()), operations: [put("push", "a", { n: 1 }), put("push", "b", { n: 2 })] })
      expect(reply.status).toBe(200)
      expect(reply.contentType).toBe("application/msgpack")
      expect(reply.body.ack).toEqual({
        lastId: "http-op-1",
        results: [
          { opId: "http-op-0", success: true, achievedLevel: "REPLICATED" },
          { opId: "http-op-1", success: true, achievedLevel: "REPLICATED" }
        ]
      })
      expect(reply.body.errors).toBeUndefined()
      expect(typeof reply.body.serverHlc.millis).toBe("number")
      const stored = await server.run(Effect.gen(function* () {
        const state = yield* (yield* Maps).get("push")
        return state.lww.get("b")?.record.value
      }))
      expect(stored).toEqual({ n: 2 })
    })

    it("answers JSON requests in JSON and keeps client op ids", async () => {
      const reply = await sync({ clientHlc: ts(Date.now()), operations: [{ ...put("push", "c", 3), id: "mine-1" }] }, true)
      expect(reply.status).toBe(200)
      expect(reply.contentType).toBe("application/json")
      expect(reply.body.ack).toEqual({ lastId: "mine-1", results: [{ opId: "mine-1", success: true, achievedLevel: "REPLICATED" }] })
    })

    it("reports refusals in errors[] with the op id as context and as failed results", async () => {
      const reply = await sync({
        clientHlc: ts(Date.now()),
        operations: [put("push", "ok", 1), put("push", "future", 1, Date.now() + 3_600_000), { mapName: "push" }]
      })
      expect(reply.status).toBe(200)
      expect(reply.body.ack.lastId).toBe("http-op-2")
      expect(reply.body.ack.results.map((r: any) => [r.opId, r.success])).toEqual([["http-op-0", true], ["http-op-1", false], ["http-op-2", false]])
      expect(reply.body.ack.results[1].error).toMatch(/^Timestamp drift/)
      expect(reply.body.errors.map((e: any) => [e.code, e.context])).toEqual([[400, "http-op-1"], [400, "http-op-2"]])
    })

    it("reports PERSISTED as unavailable on memory storage", async () => {
      const reply = await sync({ clientHlc: ts(Date.now()), operations: [put("push", "p", 1, Date.now(), { writeConcern: "PERSISTED" })] })
      expect(reply.body.ack.results).toEqual([
        { opId: "http-op-0", success: false, achievedLevel: "REPLICATED", error: "PERSISTED not available: no durable storage configured" }
      ])
    })

    it("feeds the client HLC into the server clock (within the drift bound)", async () => {
      const ahead = Date.now() + 30_000
      const reply = await sync({ clientHlc: ts(ahead, 7) })
      expect(compareTimestamps(reply.body.serverHlc, ts(ahead, 7))).toBeGreaterThan(0)
      const far = Date.now() + 10 * 60_000
      const ignored = await sync({ clientHlc: ts(far) })
      expect(ignored.body.serverHlc.millis).toBeLessThan(far)
    })

    it("omits ack without operations", async () => {
      const reply = await sync({ clientHlc: ts(Date.now()), operations: [] })
      expect(reply.status).toBe(200)
      expect(reply.body.ack).toBeUndefined()
    })

    it("delivers an HTTP write to a WebSocket subscriber as SERVER_EVENT", async () => {
      const client = await TestClient.authed(server.url, { sub: "watcher" })
      client.send({ type: "QUERY_SUB", payload: { queryId: "live", mapName: "shared", query: {} } })
      await client.next("QUERY_RESP")
      const millis = Date.now()
      const reply = await sync({ clientHlc: ts(millis), operations: [put("shared", "k1", { title: "from http" }, millis)] })
      expect(reply.status).toBe(200)
      const event = await client.next("SERVER_EVENT")
      expect(event.payload).toEqual({ mapName: "shared", eventType: "PUT", key: "k1", record: { value: { title: "from http" }, timestamp: ts(millis) } })
      const update = await client.next("QUERY_UPDATE")
      expect(update.payload).toMatchObject({ queryId: "live", key: "k1", changeType: "ENTER" })
      client.close()
    })
  })

  describe("pull (deltas)", () => {
    it("returns records stored after lastSyncTimestamp, tombstones as REMOVE", async () => {
      const t0 = Date.now()
      await sync({ clientHlc: ts(t0), operations: [put("pull", "a", "A", t0), put("pull", "b", "B", t0)] })
      const first = await sync({ clientHlc: ts(t0), syncMaps: [{ mapName: "pull", lastSyncTimestamp: ZERO }] })
      expect(first.body.deltas).toHaveLength(1)
      const firstDelta = first.body.deltas[0]
      expect(firstDelta.mapName).toBe("pull")
      expect(firstDelta.records.map((r: any) => [r.key, r.eventType, r.record.value]).sort()).toEqual([["a", "PUT", "A"], ["b", "PUT", "B"]])

      const since = firstDelta.serverSyncTimestamp
      const t1 = Date.now()
      await sync({ clientHlc: ts(t1), operations: [put("pull", "c", "C", t1 + 1), remove("pull", "a", t1 + 2)] })
      const second = await sync({ clientHlc: ts(t1), syncMaps: [{ mapName: "pull", lastSyncTimestamp: since }] }, true)
      const records = second.body.deltas[0].records
      expect(records.map((r: any) => [r.key, r.eventType]).sort()).toEqual([["a", "REMOVE"], ["c", "PUT"]])
      expect(records.find((r: any) => r.key === "a").record.value).toBeNull()
      expect(compareTimestamps(second.body.deltas[0].serverSyncTimestamp, since)).toBeGreaterThan(0)

      // Nothing new → nothing returned.
      const third = await sync({ clientHlc: ts(t1), syncMaps: [{ mapName: "pull", lastSyncTimestamp: second.body.deltas[0].serverSyncTimestamp }] })
      expect(third.body.deltas[0].records).toEqual([])
    })

    it("selects by storage time, so a late offline write with an old timestamp is still delivered", async () => {
      const now = Date.now()
      const base = await sync({ clientHlc: ts(now), syncMaps: [{ mapName: "offline", lastSyncTimestamp: ZERO }] })
      const since = base.body.deltas[0].serverSyncTimestamp
      const longAgo = now - 24 * 3_600_000
      await sync({ clientHlc: ts(now), operations: [put("offline", "old", "written offline", longAgo)] })
      const delta = await sync({ clientHlc: ts(now), syncMaps: [{ mapName: "offline", lastSyncTimestamp: since }] })
      expect(delta.body.deltas[0].records).toEqual([{ key: "old", eventType: "PUT", record: { value: "written offline", timestamp: ts(longAgo) } }])
    })

    it("property: applying successive deltas reproduces the server's map, whatever the write timestamps", async () => {
      const process = (request: HttpSyncRequest) =>
        server.run(Effect.flatMap(HttpSync, (h) => h.process(anonymousPrincipal, request))) as Promise<HttpSyncResponseBody>
      const write = fc.record({
        key: fc.constantFrom("k0", "k1", "k2", "k3"),
        value: fc.option(fc.integer(), { nil: null }),
        // Up to a day in the past (offline writes) and a little in the future (within the drift bound).
        ageMs: fc.integer({ min: -5_000, max: 86_400_000 }),
        counter: fc.nat(3)
      })
      let run = 0
      await fc.assert(fc.asyncProperty(fc.array(fc.array(write, { maxLength: 6 }), { minLength: 1, maxLength: 4 }), async (rounds) => {
        const mapName = `prop-${run++}`
        const client = new Map<string, unknown>()
        let since = ZERO
        for (const round of rounds) {
          const now = Date.now()
          await process({
            clientHlc: ts(now),
            operations: round.map((w) => ({
              mapName,
              key: w.key,
              ...(w.value === null ? { opType: "REMOVE" } : {}),
              record: { value: w.value, timestamp: ts(now - w.ageMs, w.counter) }
            }))
          })
          const reply = await process({ clientHlc: ts(now), syncMaps: [{ mapName, lastSyncTimestamp: since }] })
          const delta = reply.deltas![0]!
          for (const r of delta.records) {
            expect(r.eventType).toBe(r.record.value === null ? "REMOVE" : "PUT")
            client.set(r.key, r.record)
          }
          since = delta.serverSyncTimestamp
        }
        const serverState = await server.run(Effect.gen(function* () {
          const state = yield* (yield* Maps).get(mapName)
          return new Map([...state.lww.entries()].map(([k, stored]) => [k, stored.record]))
        }))
        expect(client).toEqual(serverState)
      }), { numRuns: 25 })
    })

    it("refuses OR maps with code 400 and unreadable maps with 403", async () => {
      const now = Date.now()
      await sync({ clientHlc: ts(now), operations: [{ mapName: "ormap", key: "k", opType: "OR_ADD", orRecord: { value: 1, timestamp: ts(now), tag: `${now}:0:x` } }] })
      const reply = await sync({
        clientHlc: ts(now),
        syncMaps: [{ mapName: "ormap", lastSyncTimestamp: ZERO }, { mapName: "$sys/secret", lastSyncTimestamp: ZERO }]
      })
      expect(reply.body.deltas).toEqual([])
      expect(reply.body.errors).toEqual([
        { code: 400, message: "Map ormap is not an LWW map", context: "ormap" },
        { code: 403, message: "Access Denied for map $sys/secret", context: "$sys/secret" }
      ])
    })

    it("applies field-level security to delta values", async () => {
      const now = Date.now()
      await sync({ clientHlc: ts(now), operations: [put("people", "p1", { name: "Ada", salary: 100 }, now)] })
      const auditor = await signToken({ sub: "aud", roles: ["AUDITOR"] })
      const reply = await sync({ clientHlc: ts(now), syncMaps: [{ mapName: "people", lastSyncTimestamp: ZERO }] }, false, auditor)
      expect(reply.body.deltas[0].records).toEqual([{ key: "p1", eventType: "PUT", record: { value: { name: "Ada" }, timestamp: ts(now) } }])
    })
  })

  describe("queries", () => {
    beforeAll(async () => {
      const now = Date.now()
      await sync({
        clientHlc: ts(now),
        operations: Array.from({ length: 7 }, (_, i) => put("tasks", `t${i}`, { rank: i, done: i % 2 === 0, name: `task ${i}`, secret: i }, now))
      })
    })

    it("filters with where, pages with limit and cursor (msgpack and JSON alike)", async () => {
      for (const json of [false, true]) {
        const page1 = await sync({ clientHlc: ts(Date.now()), queries: [{ queryId: "q", mapName: "tasks", filter: { done: true }, limit: 2 }] }, json)
        expect(page1.contentType).toBe(json ? "application/json" : "application/msgpack")
        const r1 = page1.body.queryResults[0]
        expect(r1.queryId).toBe("q")
        expect(r1.results.map((r: any) => r.key)).toEqual(["t0", "t2"])
        expect(r1.hasMore).toBe(true)
        expect(typeof r1.nextCursor).toBe("string")
        const page2 = await sync({ clientHlc: ts(Date.now()), queries: [{ queryId: "q", mapName: "tasks", filter: { done: true }, limit: 2, cursor: r1.nextCursor }] }, json)
        const r2 = page2.body.queryResults[0]
        expect(r2.results.map((r: any) => r.key)).toEqual(["t4", "t6"])
        expect(r2.results[0].value).toEqual({ rank: 4, done: true, name: "task 4", secret: 4 })
        expect(r2.hasMore).toBe(false)
        expect(r2.nextCursor).toBeUndefined()
      }
    })

    it("supports operator filters, no filter, and offset", async () => {
      const reply = await sync({
        clientHlc: ts(Date.now()),
        queries: [
          { queryId: "gt", mapName: "tasks", filter: { rank: { $gte: 5 } } },
          { queryId: "all", mapName: "tasks", filter: null },
          { queryId: "off", mapName: "tasks", filter: {}, limit: 2, offset: 3 }
        ]
      })
      const byId = Object.fromEntries(reply.body.queryResults.map((r: any) => [r.queryId, r]))
      expect(byId.gt.results.map((r: any) => r.key).sort()).toEqual(["t5", "t6"])
      expect(byId.gt.hasMore).toBeUndefined()
      expect(byId.all.results).toHaveLength(7)
      expect(byId.off.results.map((r: any) => r.key)).toEqual(["t3", "t4"])
      expect(byId.off.hasMore).toBe(true)
    })

    it("applies FLS and READ permission", async () => {
      const auditor = await signToken({ sub: "aud", roles: ["AUDITOR"] })
      const now = Date.now()
      await sync({ clientHlc: ts(now), operations: [put("people", "p2", { name: "Bob", salary: 5 }, now)] })
      const reply = await sync({
        clientHlc: ts(now),
        queries: [
          { queryId: "people", mapName: "people", filter: { name: "Bob" } },
          { queryId: "tasks", mapName: "tasks", filter: {} }
        ]
      }, false, auditor)
      expect(reply.body.queryResults).toEqual([{ queryId: "people", results: [{ key: "p2", value: { name: "Bob" } }] }])
      expect(reply.body.errors).toEqual([{ code: 403, message: "Access Denied for map tasks", context: "tasks" }])
    })

    it("reports an invalid filter as an error for that query", async () => {
      const reply = await sync({ clientHlc: ts(Date.now()), queries: [{ queryId: "bad", mapName: "tasks", filter: "nope" }] })
      expect(reply.status).toBe(200)
      expect(reply.body.queryResults).toEqual([])
      expect(reply.body.errors).toEqual([{ code: 400, message: "Invalid query: where must be an object", context: "bad" }])
    })

    it("answers one-shot searches like SEARCH", async () => {
      await sync({ clientHlc: ts(Date.now()), operations: [{ id: "doc", mapName: "search-docs", key: "d1", opType: "PUT", record: { value: { text: "a searchable task" }, timestamp: ts(Date.now()) } }] })
      const reply = await sync({ clientHlc: ts(Date.now()), searches: [{ searchId: "s1", mapName: "search-docs", query: "task" }] })
      expect(reply.body.errors).toBeUndefined()
      expect(reply.body.searchResults).toHaveLength(1)
      expect(reply.body.searchResults[0]).toMatchObject({ searchId: "s1", totalCount: 1 })
      expect(reply.body.searchResults[0].results[0]).toMatchObject({ key: "d1", value: { text: "a searchable task" } })
    })
  })

  describe("refused requests", () => {
    it("401 without an Authorization header", async () => {
      const reply = await postSync(server.httpUrl, { clientHlc: ZERO })
      expect(reply).toMatchObject({ status: 401, contentType: "application/json", body: { error: "Missing Authorization header" } })
    })

    it("401 with an invalid token", async () => {
      const forged = await signToken({ sub: "mallory" }, "another-secret-that-is-long-enough-to-sign")
      const reply = await postSync(server.httpUrl, { clientHlc: ZERO }, { token: forged })
      expect(reply).toMatchObject({ status: 401, body: { error: "Authentication failed: invalid signature" } })
      const garbage = await postSync(server.httpUrl, { clientHlc: ZERO }, { token: "not-a-jwt" })
      expect(garbage).toMatchObject({ status: 401, body: { error: "Authentication failed: jwt malformed" } })
    })

    it("400 for an undecodable body", async () => {
      const reply = await postSync(server.httpUrl, undefined, { token, rawBody: new Uint8Array([0xc1]) })
      expect(reply.status).toBe(400)
      expect(reply.body.error).toBe("Invalid request body")
      const badJson = await postSync(server.httpUrl, undefined, { token, json: true, rawBody: "{ not json" })
      expect(badJson.status).toBe(400)
      expect(badJson.body.error).toBe("Invalid request body")
    })

    it("400 with details for a schema-invalid body", async () => {
      const reply = await sync({ operations: [] }, true)
      expect(reply.status).toBe(400)
      expect(reply.body.error).toBe("Invalid request body")
      expect(reply.body.details.some((d: string) => d.startsWith("clientHlc"))).toBe(true)
      const wrongType = await sync({ clientHlc: ZERO, syncMaps: "pull" })
      expect(wrongType.status).toBe(400)
    })

    it("400 for a body nested deeper than the limit (JSON and msgpack)", async () => {
      let deep: unknown = 1
      for (let i = 0; i < server.settings.maxDepth + 5; i++) deep = [deep]
      const json = await postSync(server.httpUrl, { clientHlc: ZERO, extra: deep }, { token, json: true })
      expect(json.status).toBe(400)
      expect(json.body.details[0]).toMatch(/depth/)
      const msgpack = await postSync(server.httpUrl, undefined, { token, rawBody: packBody({ clientHlc: ZERO, extra: deep }) })
      expect(msgpack.status).toBe(400)
      expect(msgpack.body.details[0]).toMatch(/depth/)
    })
  })
})

describe("POST /sync limits and no-auth mode", () => {
  let server: RunningOpsServer
  beforeAll(async () => {
    server = await startOpsServer({ noAuth: true, maxMessageBytes: 4096 })
  })
  afterAll(async () => {
    await server.close()
  })

  it("treats requests as anonymous in no-auth mode", async () => {
    const now = Date.now()
    const reply = await postSync(server.httpUrl, { clientHlc: ts(now), operations: [put("anon", "k", 1, now)] })
    expect(reply.status).toBe(200)
    expect(reply.body.ack.results[0].success).toBe(true)
  })

  it("413 when the body exceeds maxMessageBytes", async () => {
    const big = { clientHlc: ts(Date.now()), operations: [put("anon", "big", "x".repeat(8192))] }
    const reply = await postSync(server.httpUrl, big, { json: true })
    expect(reply.status).toBe(413)
    expect(reply.body.error).toBe("Request body too large")
    // Just under the limit is accepted.
    const small = await postSync(server.httpUrl, { clientHlc: ts(Date.now()), operations: [put("anon", "small", "x".repeat(3000))] }, { json: true })
    expect(small.status).toBe(200)
  })
})

describe("HttpSync helpers", () => {
  const packr = new Packr({ useRecords: false })

  it("bearerToken strips the scheme case-insensitively", () => {
    expect(bearerToken("Bearer abc")).toBe("abc")
    expect(bearerToken("bearer   abc ")).toBe("abc")
    expect(bearerToken("abc")).toBe("abc")
    expect(bearerToken(undefined)).toBeUndefined()
  })

  it("isJsonContentType follows the content type, defaulting to msgpack", () => {
    expect(isJsonContentType("application/json; charset=utf-8")).toBe(true)
    expect(isJsonContentType("Application/JSON")).toBe(true)
    expect(isJsonContentType("application/x-msgpack")).toBe(false)
    expect(isJsonContentType(undefined)).toBe(false)
  })

  it("decodeSyncBody refuses msgpackr extensions and defuses __proto__", () => {
    const withDate = packr.pack({ clientHlc: new Date(0) })
    expect(decodeSyncBody(withDate, false, 256)).toMatchObject({ _tag: "Invalid" })
    const proto = decodeSyncBody(Buffer.from("{\"__proto__\":{\"polluted\":true},\"a\":1}"), true, 256)
    expect(proto._tag).toBe("Ok")
    const value = (proto as { value: any }).value
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype)
    expect(value.polluted).toBeUndefined()
    expect(decodeSyncBody(packr.pack({ a: [1, 2] }), false, 256)).toEqual({ _tag: "Ok", value: { a: [1, 2] } })
  })
})
