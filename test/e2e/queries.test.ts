import { Packr } from "msgpackr"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { packClientBatch } from "../../src/protocol/batch.js"
import { TestClient } from "../support/client.js"
import { type RunningServer, startServer } from "../support/server.js"

let counter = 0
const write = (c: TestClient, mapName: string, key: string, value: unknown, id = `w${++counter}`) => {
  c.send({ type: "CLIENT_OP", payload: { id, mapName, key, opType: "PUT", record: { value, timestamp: { millis: Date.now(), counter: ++counter, nodeId: "writer" } } } })
  return c.next("OP_ACK", (m) => m.payload.lastId === id)
}
const remove = (c: TestClient, mapName: string, key: string, id = `r${++counter}`) => {
  c.send({ type: "CLIENT_OP", payload: { id, mapName, key, opType: "REMOVE", record: { value: null, timestamp: { millis: Date.now(), counter: ++counter, nodeId: "writer" } } } })
  return c.next("OP_ACK", (m) => m.payload.lastId === id)
}
const updatesOf = (c: TestClient, queryId: string) =>
  c.ofType("QUERY_UPDATE").filter((m) => m.payload.queryId === queryId).map((m) => [m.payload.changeType, m.payload.key, m.payload.value])

describe("live queries over real WebSockets", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(async () => {
    await server.close()
  })

  it("answers QUERY_SUB with the current result and streams ENTER / UPDATE / LEAVE from another client", async () => {
    const writer = await TestClient.authed(server.url)
    const reader = await TestClient.authed(server.url)
    await write(writer, "tasks", "t1", { done: false, title: "a" })
    await write(writer, "tasks", "t2", { done: true, title: "b" })
    reader.send({ type: "QUERY_SUB", payload: { queryId: "open", mapName: "tasks", query: { where: { done: false } } } })
    const resp = await reader.next("QUERY_RESP")
    expect(resp.payload).toEqual({ queryId: "open", results: [{ key: "t1", value: { done: false, title: "a" } }] })

    await write(writer, "tasks", "t3", { done: false, title: "c" }) // ENTER
    await write(writer, "tasks", "t1", { done: false, title: "a2" }) // UPDATE (non-filter field)
    await write(writer, "tasks", "t3", { done: true, title: "c" }) // LEAVE (no longer matches)
    await remove(writer, "tasks", "t1") // LEAVE (deleted)
    await write(writer, "tasks", "t2", { done: true, title: "b2" }) // not in result: nothing
    await reader.sync()
    expect(updatesOf(reader, "open")).toEqual([
      ["ENTER", "t3", { done: false, title: "c" }],
      ["UPDATE", "t1", { done: false, title: "a2" }],
      ["LEAVE", "t3", null],
      ["LEAVE", "t1", null]
    ])
    // SERVER_EVENT reaches the subscriber for every change of the map (whatever the filter), never the writer.
    const events = reader.ofType("SERVER_EVENT").map((m) => [m.payload.eventType, m.payload.key])
    expect(events).toEqual([["PUT", "t3"], ["PUT", "t1"], ["PUT", "t3"], ["REMOVE", "t1"], ["PUT", "t2"]])
    const removal = reader.ofType("SERVER_EVENT").find((m) => m.payload.eventType === "REMOVE")!
    expect(removal.payload.record.value).toBeNull()
    expect(removal.payload.record.timestamp.nodeId).toBe("writer")
    expect(removal.timestamp).toMatchObject({ nodeId: "test-node" })
    // Notifications of one change arrive together: SERVER_EVENT first, then QUERY_UPDATE.
    const order = reader.received.filter((m) => m.type === "SERVER_EVENT" || m.type === "QUERY_UPDATE").map((m) => m.type)
    expect(order.slice(0, 2)).toEqual(["SERVER_EVENT", "QUERY_UPDATE"])
    await writer.sync()
    expect(writer.ofType("SERVER_EVENT")).toHaveLength(0)
    writer.close()
    reader.close()
  })

  it("a write right behind a QUERY_SUB on the same connection is handled after it (the write fast path never overtakes)", async () => {
    const c = await TestClient.authed(server.url)
    await write(c, "order", "k0", 0) // the map is loaded: only queue order can hold the next write back
    // Both frames in one inbound BATCH: the QUERY_SUB is queued for the connection's fiber and the OP_BATCH
    // arrives in the same synchronous run, before that fiber has handled it.
    const packr = new Packr({ useRecords: false })
    const op = { id: "after-sub", mapName: "order", key: "k1", opType: "PUT", record: { value: 1, timestamp: { millis: Date.now(), counter: ++counter, nodeId: "writer" } } }
    const data = packClientBatch([
      packr.pack({ type: "QUERY_SUB", payload: { queryId: "ordered", mapName: "order", query: {} } }),
      packr.pack({ type: "OP_BATCH", payload: { ops: [op] } })
    ])
    c.send({ type: "BATCH", count: 2, data })
    const resp = await c.next("QUERY_RESP")
    expect(resp.payload.results).toEqual([{ key: "k0", value: 0 }])
    expect((await c.next("OP_ACK")).payload.lastId).toBe("after-sub")
    await c.sync()
    expect(updatesOf(c, "ordered")).toEqual([["ENTER", "k1", 1]])
    c.close()
  })

  it("sends the writer's own QUERY_UPDATEs but not its SERVER_EVENTs", async () => {
    const c = await TestClient.authed(server.url)
    c.send({ type: "QUERY_SUB", payload: { queryId: "mine", mapName: "self", query: {} } })
    await c.next("QUERY_RESP")
    await write(c, "self", "k", 1)
    await c.sync()
    expect(updatesOf(c, "mine")).toEqual([["ENTER", "k", 1]])
    expect(c.ofType("SERVER_EVENT")).toHaveLength(0)
    c.close()
  })

  it("QUERY_UNSUB stops QUERY_UPDATE and SERVER_EVENT delivery at once", async () => {
    const writer = await TestClient.authed(server.url)
    const reader = await TestClient.authed(server.url)
    reader.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "unsub", query: {} } })
    await reader.next("QUERY_RESP")
    await write(writer, "unsub", "a", 1)
    await reader.next("QUERY_UPDATE")
    reader.send({ type: "QUERY_UNSUB", payload: { queryId: "q" } })
    await reader.sync()
    await write(writer, "unsub", "b", 2)
    await reader.sync()
    expect(updatesOf(reader, "q")).toEqual([["ENTER", "a", 1]])
    expect(reader.ofType("SERVER_EVENT")).toHaveLength(1)
    writer.close()
    reader.close()
  })

  it("evaluates predicate operators", async () => {
    const w = await TestClient.authed(server.url)
    const people = {
      ann: { name: "Ann", age: 31, city: "Oslo" },
      bob: { name: "Bob", age: 17, city: "Bergen" },
      cid: { name: "Cid", age: 45, city: "Oslo" },
      dee: { name: "dee", age: 31 }
    }
    for (const [k, v] of Object.entries(people)) await write(w, "people", k, v)
    const run = async (queryId: string, query: object) => {
      w.send({ type: "QUERY_SUB", payload: { queryId, mapName: "people", query } })
      const r = await w.next("QUERY_RESP", (m) => m.payload.queryId === queryId)
      return r.payload.results.map((x: any) => x.key).sort()
    }
    expect(await run("gt", { predicate: { op: "gt", attribute: "age", value: 30 } })).toEqual(["ann", "cid", "dee"])
    expect(await run("and", { predicate: { op: "and", children: [{ op: "eq", attribute: "city", value: "Oslo" }, { op: "lt", attribute: "age", value: 40 }] } })).toEqual(["ann"])
    expect(await run("or", { predicate: { op: "or", children: [{ op: "eq", attribute: "name", value: "Bob" }, { op: "gte", attribute: "age", value: 45 }] } })).toEqual(["bob", "cid"])
    expect(await run("not", { predicate: { op: "not", children: [{ op: "eq", attribute: "city", value: "Oslo" }] } })).toEqual(["bob", "dee"])
    expect(await run("neq", { predicate: { op: "neq", attribute: "city", value: "Oslo" } })).toEqual(["bob", "dee"])
    expect(await run("like", { predicate: { op: "like", attribute: "name", value: "d%" } })).toEqual(["dee"])
    expect(await run("regex", { predicate: { op: "regex", attribute: "city", value: "^B.r" } })).toEqual(["bob"])
    expect(await run("where-ops", { where: { age: { $gte: 31, $lt: 45 } } })).toEqual(["ann", "dee"])
    expect(await run("where-in", { where: { city: { $in: ["Bergen"] } } })).toEqual(["bob"])
    expect(await run("unknown-op", { where: { age: { $regex: "3" } } })).toEqual([])
    w.close()
  })

  it("sorts with ties (both encodings) and maintains a top-N window", async () => {
    const w = await TestClient.authed(server.url)
    await write(w, "scores", "a", { s: 10 })
    await write(w, "scores", "b", { s: 30 })
    await write(w, "scores", "c", { s: 20 })
    await write(w, "scores", "d", { s: 20 })
    const r = await TestClient.authed(server.url)
    r.send({ type: "QUERY_SUB", payload: { queryId: "obj", mapName: "scores", query: { sort: { s: "desc" } } } })
    const obj = await r.next("QUERY_RESP")
    expect(obj.payload.results.map((x: any) => x.key)).toEqual(["b", "c", "d", "a"])
    r.send({ type: "QUERY_SUB", payload: { queryId: "top2", mapName: "scores", query: { sort: [{ field: "s", direction: "desc" }], limit: 2 } } })
    const top = await r.next("QUERY_RESP", (m) => m.payload.queryId === "top2")
    expect(top.payload.results.map((x: any) => x.key)).toEqual(["b", "c"])
    expect(top.payload.hasMore).toBe(true)
    expect(typeof top.payload.nextCursor).toBe("string")

    await write(w, "scores", "e", { s: 25 }) // pushes c out
    await write(w, "scores", "b", { s: 5 }) // b falls out, c comes back in
    await r.sync()
    expect(updatesOf(r, "top2")).toEqual([
      ["LEAVE", "c", null],
      ["ENTER", "e", { s: 25 }],
      ["LEAVE", "b", null],
      ["ENTER", "c", { s: 20 }]
    ])

    // The cursor pages through the rest.
    r.send({ type: "QUERY_SUB", payload: { queryId: "page2", mapName: "scores", query: { sort: [{ field: "s", direction: "desc" }], limit: 2, cursor: top.payload.nextCursor } } })
    const page2 = await r.next("QUERY_RESP", (m) => m.payload.queryId === "page2")
    expect(page2.payload.cursorStatus).toBe("valid")
    w.close()
    r.close()
  })

  it("answers a query with limit and no sort in key order", async () => {
    const w = await TestClient.authed(server.url)
    for (const k of ["m", "c", "x", "a"]) await write(w, "nosort", k, { k })
    w.send({ type: "QUERY_SUB", payload: { queryId: "lim", mapName: "nosort", query: { limit: 3 } } })
    const resp = await w.next("QUERY_RESP")
    expect(resp.payload.results.map((x: any) => x.key)).toEqual(["a", "c", "m"])
    expect(resp.payload.hasMore).toBe(true)
    w.close()
  })

  it("replaces a subscription with a repeated queryId", async () => {
    const w = await TestClient.authed(server.url)
    w.send({ type: "QUERY_SUB", payload: { queryId: "same", mapName: "rep", query: { where: { t: 1 } } } })
    await w.next("QUERY_RESP")
    w.send({ type: "QUERY_SUB", payload: { queryId: "same", mapName: "rep", query: { where: { t: 2 } } } })
    await w.next("QUERY_RESP")
    await write(w, "rep", "x", { t: 1 })
    await write(w, "rep", "y", { t: 2 })
    await w.sync()
    expect(updatesOf(w, "same")).toEqual([["ENTER", "y", { t: 2 }]])
    w.close()
  })

  it("queries OR maps as arrays of live values", async () => {
    const w = await TestClient.authed(server.url)
    const t = Date.now()
    const add = (id: string, key: string, tag: string, value: unknown) => {
      w.send({ type: "CLIENT_OP", payload: { id, mapName: "ormq", key, opType: "OR_ADD", orRecord: { value, timestamp: { millis: t, counter: 0, nodeId: "w" }, tag } } })
      return w.next("OP_ACK", (m) => m.payload.lastId === id)
    }
    await add("1", "fruits", "t1", "apple")
    await add("2", "fruits", "t2", "pear")
    const r = await TestClient.authed(server.url)
    r.send({ type: "QUERY_SUB", payload: { queryId: "or", mapName: "ormq", query: {} } })
    const resp = await r.next("QUERY_RESP")
    expect(resp.payload.results).toEqual([{ key: "fruits", value: ["apple", "pear"] }])
    w.send({ type: "CLIENT_OP", payload: { id: "3", mapName: "ormq", key: "fruits", opType: "OR_REMOVE", orTag: "t1" } })
    const ev = await r.next("SERVER_EVENT")
    expect(ev.payload).toEqual({ mapName: "ormq", eventType: "OR_REMOVE", key: "fruits", orTag: "t1" })
    const upd = await r.next("QUERY_UPDATE")
    expect(upd.payload).toEqual({ queryId: "or", key: "fruits", value: ["pear"], changeType: "UPDATE" })
    w.close()
    r.close()
  })

  it("applies field-level security per subscriber", async () => {
    const secured = await startServer({
      securityPolicies: [
        { role: "ADMIN", mapNamePattern: "*", actions: ["ALL"] },
        { role: "USER", mapNamePattern: "staff", actions: ["READ"], allowedFields: ["name"] },
        { role: "WRITER", mapNamePattern: "staff", actions: ["ALL"] }
      ]
    })
    try {
      const writer = await TestClient.authed(secured.url, { sub: "w", roles: ["WRITER"] })
      await write(writer, "staff", "s1", { name: "Ann", salary: 100 })
      const user = await TestClient.authed(secured.url, { sub: "u", roles: ["USER"] })
      const admin = await TestClient.authed(secured.url, { sub: "a", roles: ["ADMIN"] })
      user.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "staff", query: {} } })
      admin.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "staff", query: {} } })
      expect((await user.next("QUERY_RESP")).payload.results).toEqual([{ key: "s1", value: { name: "Ann" } }])
      expect((await admin.next("QUERY_RESP")).payload.results).toEqual([{ key: "s1", value: { name: "Ann", salary: 100 } }])
      await write(writer, "staff", "s2", { name: "Bob", salary: 200 })
      expect((await user.next("SERVER_EVENT")).payload.record.value).toEqual({ name: "Bob" })
      expect((await user.next("QUERY_UPDATE")).payload.value).toEqual({ name: "Bob" })
      expect((await admin.next("SERVER_EVENT")).payload.record.value).toEqual({ name: "Bob", salary: 200 })
      // A user without READ on a map cannot subscribe.
      user.send({ type: "QUERY_SUB", payload: { queryId: "x", mapName: "secret", query: {} } })
      expect((await user.next("ERROR")).payload).toEqual({ code: 403, message: "Access Denied for map secret" })
      writer.close()
      user.close()
      admin.close()
    } finally {
      await secured.close()
    }
  })

  it("removes subscriptions when the connection closes", async () => {
    const w = await TestClient.authed(server.url)
    const r = await TestClient.authed(server.url)
    r.send({ type: "QUERY_SUB", payload: { queryId: "gone", mapName: "closing", query: {} } })
    await r.next("QUERY_RESP")
    r.close()
    await r.closed()
    // The writer keeps working; no error from sending to a closed subscriber.
    await write(w, "closing", "k", 1)
    await write(w, "closing", "k2", 2)
    w.close()
  })
})
