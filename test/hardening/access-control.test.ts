/**
 * RBAC + field-level security on every read path, in one place (behavior.md §3.6, protocol.md §2.5).
 * Two principals of different roles: WRITER (everything, unfiltered) and READER (map `docs` with only
 * the `title` field readable, its own `own/{userId}` map, nothing else), plus an ADMIN for `$sys/`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { LWWMap } from "../../src/crdt/lww-map.js"
import { TestClient } from "../support/client.js"
import { type RunningServer, signToken, startServer } from "../support/server.js"
import { postSync } from "../ops/support.js"
import { putOp, storedValue, ts, write } from "./support.js"

const WRITER = { sub: "w", roles: ["WRITER"] }
const READER = { sub: "r", roles: ["READER"] }
const ADMIN = { sub: "root", roles: ["ADMIN"] }

const full = (n: number) => ({ title: `alpha ${n}`, secret: `hidden-${n}`, n })
const visible = (n: number) => ({ title: `alpha ${n}` })

/** Walks the LWW Merkle tree of a map and returns every leaf record the server sent. */
const merkleLeaves = async (c: TestClient, mapName: string) => {
  c.send({ type: "SYNC_INIT", mapName, lastSyncTimestamp: 0 })
  await c.next("SYNC_RESP_ROOT", (m) => m.payload.mapName === mapName)
  const records: Array<{ key: string; record: { value: unknown } }> = []
  let frontier = [""]
  const empty = new LWWMap()
  while (frontier.length > 0) {
    for (const path of frontier) c.send({ type: "MERKLE_REQ_BUCKET", payload: { mapName, path } })
    const next: string[] = []
    for (const path of frontier) {
      const reply = await c.next(path.length === 3 ? "SYNC_RESP_LEAF" : "SYNC_RESP_BUCKETS", (m) => m.payload.mapName === mapName && m.payload.path === path)
      if (reply.type === "SYNC_RESP_LEAF") records.push(...reply.payload.records)
      else for (const [char, hash] of Object.entries(reply.payload.buckets)) if (empty.merkle.getBuckets(path)[char] !== hash) next.push(path + char)
    }
    frontier = next
  }
  return records
}

describe("access control on every read path", () => {
  let server: RunningServer
  let httpUrl: string
  let writer: TestClient
  let reader: TestClient

  beforeAll(async () => {
    server = await startServer({
      securityPolicies: [
        { role: "WRITER", mapNamePattern: "*", actions: ["ALL"] },
        { role: "READER", mapNamePattern: "docs", actions: ["READ", "PUT"], allowedFields: ["title"] },
        { role: "READER", mapNamePattern: "guarded", actions: ["READ"], allowedFields: ["title"] },
        { role: "READER", mapNamePattern: "own/{userId}", actions: ["ALL"] }
      ]
    })
    httpUrl = `http://127.0.0.1:${server.port}`
    writer = await TestClient.authed(server.url, WRITER)
    reader = await TestClient.authed(server.url, READER)
    await write(writer, "d1", "docs", "d1", full(1))
    await write(writer, "p1", "private", "p1", full(1))
  })
  afterAll(async () => {
    writer.close()
    reader.close()
    await server.close()
  })

  it("QUERY_RESP is filtered per principal; maps without READ are refused", async () => {
    reader.send({ type: "QUERY_SUB", payload: { queryId: "rq", mapName: "docs", query: {} } })
    expect((await reader.next("QUERY_RESP", (m) => m.payload.queryId === "rq")).payload.results).toEqual([{ key: "d1", value: visible(1) }])
    writer.send({ type: "QUERY_SUB", payload: { queryId: "wq", mapName: "docs", query: {} } })
    expect((await writer.next("QUERY_RESP", (m) => m.payload.queryId === "wq")).payload.results).toEqual([{ key: "d1", value: full(1) }])
    reader.send({ type: "QUERY_SUB", payload: { queryId: "rp", mapName: "private", query: {} } })
    expect((await reader.next("ERROR")).payload).toEqual({ code: 403, message: "Access Denied for map private" })
  })

  it("SERVER_EVENT and QUERY_UPDATE carry only permitted fields", async () => {
    reader.send({ type: "QUERY_SUB", payload: { queryId: "live", mapName: "docs", query: {} } })
    await reader.next("QUERY_RESP", (m) => m.payload.queryId === "live")
    await write(writer, "d2", "docs", "d2", full(2))
    const event = await reader.next("SERVER_EVENT", (m) => m.payload.key === "d2")
    expect(event.payload.record.value).toEqual(visible(2))
    const update = await reader.next("QUERY_UPDATE", (m) => m.payload.queryId === "live" && m.payload.key === "d2")
    expect(update.payload.value).toEqual(visible(2))
    // Writes to a map the reader cannot read never reach it.
    await write(writer, "p2", "private", "p2", full(2))
    await reader.sync()
    expect(reader.received.some((m) => JSON.stringify(m).includes("hidden-"))).toBe(false)
  })

  it("SEARCH_RESP and SEARCH_UPDATE are filtered; SEARCH on an unreadable map is refused", async () => {
    reader.send({ type: "SEARCH", payload: { requestId: "s1", mapName: "docs", query: "alpha" } })
    const resp = await reader.next("SEARCH_RESP", (m) => m.payload.requestId === "s1")
    expect(resp.payload.results.length).toBeGreaterThan(0)
    for (const hit of resp.payload.results) expect(Object.keys(hit.value)).toEqual(["title"])
    reader.send({ type: "SEARCH", payload: { requestId: "s2", mapName: "private", query: "alpha" } })
    expect((await reader.next("SEARCH_RESP", (m) => m.payload.requestId === "s2")).payload).toMatchObject({ results: [], error: "Access denied for map: private" })
    reader.send({ type: "SEARCH_SUB", payload: { subscriptionId: "ss", mapName: "docs", query: "alpha" } })
    await reader.next("SEARCH_RESP", (m) => m.payload.requestId === "ss")
    await write(writer, "d3", "docs", "d3", full(3))
    const update = await reader.next("SEARCH_UPDATE", (m) => m.payload.key === "d3")
    expect(update.payload.value).toEqual(visible(3))
  })

  it("JOURNAL_EVENT and JOURNAL_READ_RESPONSE skip unreadable maps and filter values", async () => {
    reader.send({ type: "JOURNAL_SUBSCRIBE", requestId: "j" })
    await reader.sync()
    await write(writer, "p4", "private", "p4", full(4))
    await write(writer, "d4", "docs", "d4", full(4))
    const event = await reader.next("JOURNAL_EVENT", (m) => m.event.key === "d4")
    expect(event.event.value).toEqual(visible(4))
    reader.send({ type: "JOURNAL_READ", requestId: "jr", fromSequence: "0", limit: 1000 })
    const read = await reader.next("JOURNAL_READ_RESPONSE")
    expect(read.events.length).toBeGreaterThan(0)
    for (const e of read.events) {
      expect(e.mapName).toBe("docs")
      expect(Object.keys(e.value)).toEqual(["title"])
    }
    expect(reader.ofType("JOURNAL_EVENT").every((m) => m.event.mapName === "docs")).toBe(true)
  })

  it("Merkle sync leaves are filtered; SYNC_INIT on an unreadable map is refused", async () => {
    const leaves = await merkleLeaves(reader, "docs")
    expect(leaves.length).toBeGreaterThan(0)
    for (const { record } of leaves) expect(Object.keys(record.value as object)).toEqual(["title"])
    reader.send({ type: "SYNC_INIT", mapName: "private", lastSyncTimestamp: 0 })
    expect((await reader.next("ERROR", (m) => m.payload.code === 403)).payload.message).toBe("Access Denied for map private")
  })

  it("HTTP sync deltas, queries and searches are filtered; unreadable maps are errors", async () => {
    const token = await signToken(READER)
    const reply = await postSync(httpUrl, {
      clientHlc: ts(Date.now()),
      syncMaps: [{ mapName: "docs", lastSyncTimestamp: ts(0) }, { mapName: "private", lastSyncTimestamp: ts(0) }],
      queries: [{ queryId: "hq", mapName: "docs", filter: null }],
      searches: [{ searchId: "hs", mapName: "docs", query: "alpha" }]
    }, { token })
    expect(reply.status).toBe(200)
    const body = reply.body
    expect(body.deltas.map((d: any) => d.mapName)).toEqual(["docs"])
    for (const r of body.deltas[0].records) expect(Object.keys(r.record.value)).toEqual(["title"])
    for (const r of body.queryResults[0].results) expect(Object.keys(r.value)).toEqual(["title"])
    for (const r of body.searchResults[0].results) expect(Object.keys(r.value)).toEqual(["title"])
    expect(body.errors).toEqual([{ code: 403, message: "Access Denied for map private", context: "private" }])
    expect(JSON.stringify(body)).not.toContain("hidden-")
  })

  it("ENTRY_PROCESS needs read access to every field (a processor sees and returns the whole value)", async () => {
    const touch = { name: "touch", code: "return { value: Object.assign({}, value, { touched: true }) }" }
    reader.send({ type: "ENTRY_PROCESS", requestId: "ep", mapName: "docs", key: "d1", processor: touch })
    const refused = await reader.next("ENTRY_PROCESS_RESPONSE", (m) => m.requestId === "ep")
    expect(refused).toMatchObject({ success: false, error: "Access Denied for map docs: entry processors need read access to every field" })
    expect(await storedValue(server, "docs", "d1")).toEqual(full(1))
    writer.send({ type: "ENTRY_PROCESS", requestId: "ep-w", mapName: "docs", key: "d1", processor: touch })
    const ok = await writer.next("ENTRY_PROCESS_RESPONSE", (m) => m.requestId === "ep-w")
    expect(ok).toMatchObject({ success: true, newValue: { ...full(1), touched: true } })
    expect(await storedValue(server, "docs", "d1")).toEqual({ ...full(1), touched: true })
    reader.send({ type: "ENTRY_PROCESS", requestId: "ep2", mapName: "private", key: "p1", processor: { name: "touch", code: "return { value }" } })
    expect((await reader.next("ENTRY_PROCESS_RESPONSE", (m) => m.requestId === "ep2")).error).toBe("Access Denied for map private")
  })

  it("MERGE_REJECTED attemptedValue is filtered for each recipient (HTTP write → map subscribers)", async () => {
    writer.send({
      type: "REGISTER_RESOLVER", requestId: "g", mapName: "guarded",
      resolver: { name: "no-writes", priority: 50, code: "return { action: 'reject', reason: 'read only' }" }
    })
    expect((await writer.next("REGISTER_RESOLVER_RESPONSE", (m) => m.requestId === "g")).success).toBe(true)
    reader.send({ type: "QUERY_SUB", payload: { queryId: "gq", mapName: "guarded", query: {} } })
    await reader.next("QUERY_RESP", (m) => m.payload.queryId === "gq")
    const reply = await postSync(httpUrl, { clientHlc: ts(Date.now()), operations: [putOp("h1", "guarded", "g1", full(9))] }, { token: await signToken(WRITER) })
    expect(reply.body.ack.results[0]).toMatchObject({ success: false })
    const rejected = await reader.next("MERGE_REJECTED", (m) => m.mapName === "guarded")
    expect(rejected).toMatchObject({ key: "g1", attemptedValue: visible(9), reason: "read only" })
    // Over WebSocket the writer is told with its own (unfiltered) view.
    writer.send({ type: "CLIENT_OP", payload: putOp("g2", "guarded", "g2", full(10)) })
    expect((await writer.next("MERGE_REJECTED", (m) => m.key === "g2")).attemptedValue).toEqual(full(10))
  })

  it("{userId} patterns match only the principal's own resources", async () => {
    reader.send({ type: "OP_BATCH", payload: { ops: [putOp("o1", "own/r", "k", full(5)), putOp("o2", "own/w", "k", full(5))] } })
    const ack = await reader.next("OP_ACK", (m) => m.payload.lastId === "o2")
    expect(ack.payload.results.map((r: any) => r.success)).toEqual([true, false])
    reader.send({ type: "QUERY_SUB", payload: { queryId: "own", mapName: "own/r", query: {} } })
    expect((await reader.next("QUERY_RESP", (m) => m.payload.queryId === "own")).payload.results).toEqual([{ key: "k", value: full(5) }])
    reader.send({ type: "QUERY_SUB", payload: { queryId: "other", mapName: "own/w", query: {} } })
    expect((await reader.next("ERROR", (m) => m.payload.message === "Access Denied for map own/w")).payload.code).toBe(403)
  })

  it("$sys/ maps are admin-only, even for a role granted '*'", async () => {
    writer.send({ type: "CLIENT_OP", payload: putOp("sys-w", "$sys/config", "k", 1) })
    expect((await writer.next("OP_REJECTED", (m) => m.payload.opId === "sys-w")).payload.code).toBe(403)
    writer.send({ type: "QUERY_SUB", payload: { queryId: "sys", mapName: "$sys/config", query: {} } })
    expect((await writer.next("ERROR", (m) => m.payload.message === "Access Denied for map $sys/config")).payload.code).toBe(403)
    const admin = await TestClient.authed(server.url, ADMIN)
    await write(admin, "sys-a", "$sys/config", "k", { mode: "x" })
    admin.send({ type: "QUERY_SUB", payload: { queryId: "sys", mapName: "$sys/config", query: {} } })
    expect((await admin.next("QUERY_RESP")).payload.results).toEqual([{ key: "k", value: { mode: "x" } }])
    admin.close()
  })

  /*
   * Indirect probes of hidden fields: FLS filters the values sent, and these paths must not let a reader
   * learn a hidden field another way (search matches, filter/sort oracles, processor results).
   */
  it("SEARCH does not match terms that occur only in fields the principal cannot read (oracle)", async () => {
    reader.send({ type: "SEARCH", payload: { requestId: "leak-s", mapName: "docs", query: "hidden" } })
    const resp = await reader.next("SEARCH_RESP", (m) => m.payload.requestId === "leak-s")
    expect(resp.payload.results).toEqual([])
  })

  it("QUERY_SUB predicates cannot test fields the principal cannot read (oracle)", async () => {
    reader.send({ type: "QUERY_SUB", payload: { queryId: "leak-q", mapName: "docs", query: { where: { secret: "hidden-1" } } } })
    const resp = await reader.next("QUERY_RESP", (m) => m.payload.queryId === "leak-q")
    expect(resp.payload.results).toEqual([])
    expect(resp.payload.code).toBe("ACCESS_DENIED")
  })

  it("ENTRY_PROCESS `result` cannot carry fields the principal cannot read", async () => {
    reader.send({ type: "ENTRY_PROCESS", requestId: "leak-p", mapName: "docs", key: "d1", processor: { name: "peek", code: "return { value, result: value.secret }" } })
    const resp = await reader.next("ENTRY_PROCESS_RESPONSE", (m) => m.requestId === "leak-p")
    expect(JSON.stringify(resp)).not.toContain("hidden-")
  })

  it("no message raises a connection's privileges (a second AUTH with an ADMIN token is ignored)", async () => {
    const c = await TestClient.authed(server.url, READER)
    c.send({ type: "AUTH", token: await signToken(ADMIN) })
    c.send({ type: "CLIENT_OP", payload: { ...putOp("esc", "private", "esc", 1), principal: ADMIN, roles: ["ADMIN"] } })
    expect((await c.next("OP_REJECTED")).payload).toEqual({ opId: "esc", reason: "Access Denied", code: 403 })
    await c.sync()
    expect(c.ofType("AUTH_ACK")).toHaveLength(1)
    expect(await storedValue(server, "private", "esc")).toBeUndefined()
    c.close()
  })
})
