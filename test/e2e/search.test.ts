import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TestClient } from "../support/client.js"
import { type RunningServer, startServer } from "../support/server.js"

let n = 0
const put = (c: TestClient, mapName: string, key: string, value: unknown) => {
  const id = `s${++n}`
  c.send({ type: "CLIENT_OP", payload: { id, mapName, key, opType: "PUT", record: { value, timestamp: { millis: Date.now(), counter: n, nodeId: "sw" } } } })
  return c.next("OP_ACK", (m) => m.payload.lastId === id)
}
const del = (c: TestClient, mapName: string, key: string) => {
  const id = `s${++n}`
  c.send({ type: "CLIENT_OP", payload: { id, mapName, key, opType: "REMOVE", record: null } })
  return c.next("OP_ACK", (m) => m.payload.lastId === id)
}

describe("full-text search over real WebSockets", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(async () => {
    await server.close()
  })

  it("ranks by BM25, honours minScore and limit, and answers unseen maps with empty results", async () => {
    const c = await TestClient.authed(server.url)
    await put(c, "docs", "a", { title: "Running shoes", body: "shoes for running on trails" })
    await put(c, "docs", "b", { title: "Cooking", body: "a book about cooking" })
    await put(c, "docs", "c", { title: "Run", body: "run run run" })
    c.send({ type: "SEARCH", payload: { requestId: "r1", mapName: "docs", query: "running" } })
    const r1 = await c.next("SEARCH_RESP")
    expect(r1.payload.results.map((r: any) => r.key)).toEqual(["c", "a"])
    expect(r1.payload.totalCount).toBe(2)
    expect("error" in r1.payload).toBe(false)
    expect(r1.payload.results[0].matchedTerms).toEqual(["run"])
    expect(r1.payload.results[0].value).toEqual({ title: "Run", body: "run run run" })
    expect(r1.payload.results[0].score).toBeGreaterThan(r1.payload.results[1].score)

    c.send({ type: "SEARCH", payload: { requestId: "r2", mapName: "docs", query: "running", options: { limit: 1 } } })
    expect((await c.next("SEARCH_RESP", (m) => m.payload.requestId === "r2")).payload.results.map((r: any) => r.key)).toEqual(["c"])
    const minScore = r1.payload.results[0].score - 1e-9
    c.send({ type: "SEARCH", payload: { requestId: "r3", mapName: "docs", query: "running", options: { minScore } } })
    expect((await c.next("SEARCH_RESP", (m) => m.payload.requestId === "r3")).payload.results.map((r: any) => r.key)).toEqual(["c"])
    c.send({ type: "SEARCH", payload: { requestId: "r4", mapName: "never-written", query: "anything" } })
    expect((await c.next("SEARCH_RESP", (m) => m.payload.requestId === "r4")).payload).toEqual({ requestId: "r4", results: [], totalCount: 0 })
    c.send({ type: "SEARCH", payload: { requestId: "r5", mapName: "docs", query: "the and of" } })
    expect((await c.next("SEARCH_RESP", (m) => m.payload.requestId === "r5")).payload.results).toEqual([])
    c.close()
  })

  it("streams ENTER / UPDATE / LEAVE to a SEARCH_SUB subscriber as another client writes, until SEARCH_UNSUB", async () => {
    const writer = await TestClient.authed(server.url)
    const sub = await TestClient.authed(server.url)
    await put(writer, "notes", "n1", { text: "effect layers are composable" })
    sub.send({ type: "SEARCH_SUB", payload: { subscriptionId: "s1", mapName: "notes", query: "layer" } })
    const initial = await sub.next("SEARCH_RESP")
    expect(initial.payload.requestId).toBe("s1")
    expect(initial.payload.results.map((r: any) => r.key)).toEqual(["n1"])

    await put(writer, "notes", "n2", { text: "a new layer appears" }) // ENTER
    await put(writer, "notes", "n1", { text: "layers and layers" }) // UPDATE
    await put(writer, "notes", "n2", { text: "nothing relevant" }) // LEAVE (no longer matches)
    await del(writer, "notes", "n1") // LEAVE (deleted)
    await sub.sync()
    const updates = sub.ofType("SEARCH_UPDATE").map((m) => [m.payload.changeType, m.payload.key])
    expect(updates).toEqual([["ENTER", "n2"], ["UPDATE", "n1"], ["LEAVE", "n2"], ["LEAVE", "n1"]])
    const leave = sub.ofType("SEARCH_UPDATE")[3]!
    expect(leave.payload).toMatchObject({ score: 0, matchedTerms: [], value: null })

    sub.send({ type: "SEARCH_UNSUB", payload: { subscriptionId: "s1" } })
    await sub.sync()
    await put(writer, "notes", "n3", { text: "layer again" })
    await sub.sync()
    expect(sub.ofType("SEARCH_UPDATE")).toHaveLength(4)
    writer.close()
    sub.close()
  })

  it("applies READ permission and field-level security to results", async () => {
    const secured = await startServer({
      securityPolicies: [
        { role: "WRITER", mapNamePattern: "*", actions: ["ALL"] },
        { role: "USER", mapNamePattern: "articles", actions: ["READ"], allowedFields: ["title"] }
      ]
    })
    try {
      const w = await TestClient.authed(secured.url, { sub: "w", roles: ["WRITER"] })
      await put(w, "articles", "x", { title: "Quantum computing", secret: "quantum draft" })
      const u = await TestClient.authed(secured.url, { sub: "u", roles: ["USER"] })
      u.send({ type: "SEARCH", payload: { requestId: "q", mapName: "articles", query: "quantum" } })
      const resp = await u.next("SEARCH_RESP")
      expect(resp.payload.results[0].value).toEqual({ title: "Quantum computing" })
      u.send({ type: "SEARCH", payload: { requestId: "d", mapName: "private", query: "x" } })
      expect((await u.next("SEARCH_RESP", (m) => m.payload.requestId === "d")).payload).toEqual({
        requestId: "d",
        results: [],
        totalCount: 0,
        error: "Access denied for map: private"
      })
      w.close()
      u.close()
    } finally {
      await secured.close()
    }
  })
})
