import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Maps } from "../../src/layers/Maps.js"
import { TestClient } from "../support/client.js"
import { type RunningServer, startServer } from "../support/server.js"

let n = 0
const put = (c: TestClient, mapName: string, key: string, value: unknown, millis = Date.now()) => {
  const id = `u${++n}`
  c.send({ type: "CLIENT_OP", payload: { id, mapName, key, opType: "PUT", record: { value, timestamp: { millis, counter: n, nodeId: "uw" } } } })
  return c.next("OP_ACK", (m) => m.payload.lastId === id)
}
const increment = { name: "increment-count", code: "const v = value ?? { count: 0 }; return { value: { ...v, count: v.count + (args ?? 1) }, result: v.count + (args ?? 1) }" }

describe("entry processors and conflict resolvers over real WebSockets", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await startServer({ builtinResolvers: { frozen: ["builtin:immutable"], balances: ["builtin:non_negative"] } })
  })
  afterAll(async () => {
    await server.close()
  })

  it("increments a counter field exactly under 10 concurrent clients and reaches another client's live query", async () => {
    const watcher = await TestClient.authed(server.url)
    watcher.send({ type: "QUERY_SUB", payload: { queryId: "w", mapName: "proc", query: {} } })
    await watcher.next("QUERY_RESP")
    const clients = await Promise.all(Array.from({ length: 10 }, () => TestClient.authed(server.url)))
    const perClient = 20
    await Promise.all(clients.map(async (c, ci) => {
      for (let i = 0; i < perClient; i++) {
        c.send({ type: "ENTRY_PROCESS", requestId: `${ci}-${i}`, mapName: "proc", key: "counter", processor: { ...increment, args: 1 } })
      }
      for (let i = 0; i < perClient; i++) {
        const r = await c.next("ENTRY_PROCESS_RESPONSE", (m) => m.requestId === `${ci}-${i}`, 20_000)
        expect(r.success).toBe(true)
      }
    }))
    const final = await server.run(Effect.gen(function* () {
      const maps = yield* Maps
      return (yield* maps.get("proc")).lww.get("counter")?.record.value
    }))
    expect(final).toEqual({ count: 10 * perClient })
    // Every increment produced a distinct result (no lost update).
    const results = clients.flatMap((c) => c.ofType("ENTRY_PROCESS_RESPONSE").map((m) => m.result)).sort((a, b) => a - b)
    expect(results).toEqual(Array.from({ length: 10 * perClient }, (_, i) => i + 1))
    // The processor's writes went through the normal pipeline: the watcher saw them.
    await watcher.next("QUERY_UPDATE", (m) => m.payload.value?.count === 10 * perClient, 10_000)
    expect(watcher.ofType("SERVER_EVENT").length).toBe(10 * perClient)
    for (const c of clients) c.close()
    watcher.close()
  })

  it("deletes the entry when the processor returns no value, and runs batches per key", async () => {
    const c = await TestClient.authed(server.url)
    await put(c, "proc2", "a", { count: 5 })
    c.send({ type: "ENTRY_PROCESS", requestId: "del", mapName: "proc2", key: "a", processor: { name: "remove", code: "return { value: undefined, result: 'gone' }" } })
    const del = await c.next("ENTRY_PROCESS_RESPONSE")
    expect(del).toEqual({ type: "ENTRY_PROCESS_RESPONSE", requestId: "del", success: true, result: "gone" })
    c.send({ type: "ENTRY_PROCESS_BATCH", requestId: "b", mapName: "proc2", keys: ["x", "y"], processor: { ...increment, args: 2 } })
    const batch = await c.next("ENTRY_PROCESS_BATCH_RESPONSE")
    expect(batch.results).toEqual({
      x: { success: true, result: 2, newValue: { count: 2 } },
      y: { success: true, result: 2, newValue: { count: 2 } }
    })
    c.close()
  })

  it("reports processor failures without harming the server", async () => {
    const c = await TestClient.authed(server.url)
    const run = async (requestId: string, mapName: string, processor: object) => {
      c.send({ type: "ENTRY_PROCESS", requestId, mapName, key: "k", processor })
      return c.next("ENTRY_PROCESS_RESPONSE", (m) => m.requestId === requestId, 15_000)
    }
    expect((await run("loop", "p3", { name: "loop", code: "while (true) {}" })).error).toBe("Processor execution timed out")
    expect((await run("throw", "p3", { name: "throw", code: "throw new Error('boom')" })).error).toContain("boom")
    expect((await run("shape", "p3", { name: "shape", code: "return 42" })).error).toBe("Processor must return { value, result? } object")
    expect((await run("forbidden", "p3", { name: "f", code: "return { value: require('fs') }" })).error).toBe("Forbidden pattern detected: \\brequire\\b")
    expect((await run("invalid", "p3", { name: "", code: "return {value: 1}" })).error).toMatch(/^Invalid processor: /)
    // OR maps are refused.
    c.send({ type: "CLIENT_OP", payload: { id: "or", mapName: "p-or", key: "k", opType: "OR_ADD", orRecord: { value: 1, timestamp: { millis: Date.now(), counter: 0, nodeId: "x" }, tag: "t" } } })
    await c.next("OP_ACK")
    expect((await run("or", "p-or", increment)).error).toBe("Entry processors require an LWW map")
    // Still serving.
    expect((await run("ok", "p3", increment)).success).toBe(true)
    c.close()
  })

  it("refuses processors without PUT permission", async () => {
    const secured = await startServer({ securityPolicies: [{ role: "USER", mapNamePattern: "ro", actions: ["READ"] }] })
    try {
      const c = await TestClient.authed(secured.url)
      c.send({ type: "ENTRY_PROCESS", requestId: "r", mapName: "ro", key: "k", processor: increment })
      expect(await c.next("ENTRY_PROCESS_RESPONSE")).toEqual({ type: "ENTRY_PROCESS_RESPONSE", requestId: "r", success: false, error: "Access Denied for map ro" })
      c.close()
    } finally {
      await secured.close()
    }
  })

  it("a custom resolver rejects writes below a threshold with MERGE_REJECTED; unregister and list work", async () => {
    const owner = await TestClient.authed(server.url, { sub: "owner" })
    owner.send({
      type: "REGISTER_RESOLVER",
      requestId: "reg",
      mapName: "bids",
      resolver: { name: "min-bid", priority: 80, code: "if (context.remoteValue !== null && context.remoteValue.amount < 10) return { action: 'reject', reason: 'bid too low' }; return { action: 'accept', value: context.remoteValue }" }
    })
    expect(await owner.next("REGISTER_RESOLVER_RESPONSE")).toEqual({ type: "REGISTER_RESOLVER_RESPONSE", requestId: "reg", success: true })

    const bidder = await TestClient.authed(server.url, { sub: "bidder" })
    bidder.send({ type: "CLIENT_OP", payload: { id: "low", mapName: "bids", key: "item", opType: "PUT", record: { value: { amount: 5 }, timestamp: { millis: Date.now(), counter: 0, nodeId: "b" } } } })
    const rejected = await bidder.next("MERGE_REJECTED")
    expect(rejected).toMatchObject({ mapName: "bids", key: "item", attemptedValue: { amount: 5 }, reason: "bid too low" })
    expect(rejected.timestamp.nodeId).toBe("test-node")
    const ack = await bidder.next("OP_ACK")
    expect(ack.payload.results[0]).toMatchObject({ opId: "low", success: false, error: "Rejected by conflict resolver: bid too low" })
    await put(bidder, "bids", "item", { amount: 50 })

    owner.send({ type: "LIST_RESOLVERS", requestId: "l1", mapName: "bids" })
    expect((await owner.next("LIST_RESOLVERS_RESPONSE")).resolvers).toEqual([{ mapName: "bids", name: "min-bid", priority: 80 }])
    // Only the registering principal (or an admin) may remove it.
    bidder.send({ type: "UNREGISTER_RESOLVER", requestId: "u0", mapName: "bids", resolverName: "min-bid" })
    expect((await bidder.next("UNREGISTER_RESOLVER_RESPONSE")).error).toBe("Resolver not found or not owned by this client")
    owner.send({ type: "UNREGISTER_RESOLVER", requestId: "u1", mapName: "bids", resolverName: "min-bid" })
    expect((await owner.next("UNREGISTER_RESOLVER_RESPONSE")).success).toBe(true)
    const after = await put(bidder, "bids", "item", { amount: 1 }, Date.now() + 1)
    expect(after.payload.results[0].success).toBe(true)
    owner.send({ type: "LIST_RESOLVERS", requestId: "l2" })
    expect((await owner.next("LIST_RESOLVERS_RESPONSE", (m) => m.requestId === "l2")).resolvers.some((r: any) => r.mapName === "bids")).toBe(false)
    owner.close()
    bidder.close()
  })

  it("a merge resolver stores the merged value with a fresh timestamp and tells the writer", async () => {
    const c = await TestClient.authed(server.url)
    c.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "tags-merge", query: {} } })
    await c.next("QUERY_RESP")
    c.send({
      type: "REGISTER_RESOLVER",
      requestId: "m",
      mapName: "tags-merge",
      resolver: { name: "union", code: "const l = context.localValue ?? []; const r = context.remoteValue ?? []; return { action: 'merge', value: [...new Set([...l, ...r])] }" }
    })
    await c.next("REGISTER_RESOLVER_RESPONSE")
    await put(c, "tags-merge", "k", ["a"])
    await put(c, "tags-merge", "k", ["b"], Date.now() - 60_000) // older timestamp: merged anyway
    await c.sync()
    const ev = c.ofType("SERVER_EVENT").at(-1)!
    expect(ev.payload.record.value).toEqual(["a", "b"])
    expect(ev.payload.record.timestamp.nodeId).toBe("test-node")
    c.close()
  })

  it("applies configured built-in resolvers", async () => {
    const c = await TestClient.authed(server.url)
    await put(c, "frozen", "k", "first")
    const second = await put(c, "frozen", "k", "second", Date.now() + 1)
    expect(second.payload.results[0]).toMatchObject({ success: false, error: "Rejected by conflict resolver: Entry is immutable" })
    const neg = await put(c, "balances", "acct", -5)
    expect(neg.payload.results[0].error).toBe("Rejected by conflict resolver: Value cannot be negative")
    expect((await put(c, "balances", "acct", 5)).payload.results[0].success).toBe(true)
    // Built-ins cannot be registered over the wire.
    c.send({ type: "REGISTER_RESOLVER", requestId: "b", mapName: "x", resolver: { name: "builtin:immutable", code: "" } })
    expect((await c.next("REGISTER_RESOLVER_RESPONSE")).success).toBe(false)
    c.close()
  })
})
