import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TestClient } from "../support/client.js"
import { type RunningServer, signToken, startServer } from "../support/server.js"

/** The TopGun client's habits that a compatible server must tolerate (protocol.md §8 item 17). */
describe("TopGun client quirks", () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(async () => {
    await server.close()
  })

  it("AUTH sent on open and again on AUTH_REQUIRED yields exactly one AUTH_ACK", async () => {
    const c = await TestClient.connect(server.url)
    const token = await signToken({ sub: "twice" })
    c.send({ type: "AUTH", token })
    await c.next("AUTH_REQUIRED")
    c.send({ type: "AUTH", token })
    await c.next("AUTH_ACK")
    await c.sync()
    expect(c.ofType("AUTH_ACK")).toHaveLength(1)
    expect(c.ofType("AUTH_FAIL")).toHaveLength(0)
    c.close()
  })

  it("re-sent op logs (with timestamp/synced extras) are idempotent and acknowledged each time", async () => {
    const c = await TestClient.authed(server.url)
    const watcher = await TestClient.authed(server.url)
    watcher.send({ type: "QUERY_SUB", payload: { queryId: "w", mapName: "oplog", query: {} } })
    await watcher.next("QUERY_RESP")
    const t = Date.now()
    const log = [1, 2, 3].map((i) => ({
      id: String(i),
      mapName: "oplog",
      key: `k${i}`,
      opType: "PUT",
      record: { value: i, timestamp: { millis: t, counter: i, nodeId: "client-uuid" } },
      timestamp: { millis: t, counter: i, nodeId: "client-uuid" },
      synced: false
    }))
    c.send({ type: "OP_BATCH", payload: { ops: log } })
    await c.next("OP_ACK")
    c.send({ type: "OP_BATCH", payload: { ops: log } }) // the whole pending log again
    const second = await c.next("OP_ACK")
    expect(second.payload.results.every((r: any) => r.success)).toBe(true)
    await watcher.sync()
    // Only the first delivery changed state: three events, not six.
    expect(watcher.ofType("SERVER_EVENT")).toHaveLength(3)
    c.close()
    watcher.close()
  })

  it("ignores [head] messages it does not implement and answers the 'not available' ones at once", async () => {
    const c = await TestClient.authed(server.url)
    c.send({ type: "CLIENT_APPLY_ACK", cursor: 5 })
    c.send({ type: "HYBRID_QUERY_SUBSCRIBE", payload: { queryId: "h" } })
    c.send({ type: "QUERY_SYNC_INIT", payload: { queryId: "q", rootHash: 1 } })
    c.send({ type: "SQL_QUERY", payload: { sql: "select 1", queryId: "s" } })
    const sql = await c.next("SQL_QUERY_RESP")
    expect(sql.payload).toEqual({ queryId: "s", columns: [], rows: [], code: "FEATURE_DISABLED", error: "SQL is not available on this server" })
    await c.sync()
    expect(c.ofType("ERROR").filter((m) => !String(m.payload.message).includes("__SYNC_"))).toEqual([])
    c.close()
  })

  it("answers SYNC_INIT on an OR map (sent after a reset) with ORMAP_SYNC_RESP_ROOT", async () => {
    const c = await TestClient.authed(server.url)
    c.send({ type: "CLIENT_OP", payload: { id: "o", mapName: "or-reset", key: "k", opType: "OR_ADD", orRecord: { value: 1, timestamp: { millis: Date.now(), counter: 0, nodeId: "c" }, tag: "t-1" } } })
    await c.next("OP_ACK")
    c.send({ type: "SYNC_INIT", mapName: "or-reset", lastSyncTimestamp: 0 })
    const root = await c.next("ORMAP_SYNC_RESP_ROOT")
    expect(root.payload.mapName).toBe("or-reset")
    expect(root.payload.rootHash).not.toBe(0)
    c.close()
  })

  it("in timestamp mode `server`, re-stamps writes, echoes them to the writer and never re-applies a resent op", async () => {
    const restamp = await startServer({ timestampMode: "server" })
    try {
      const c = await TestClient.authed(restamp.url)
      c.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "stamped", query: {} } })
      await c.next("QUERY_RESP")
      const old = { millis: Date.now() - 60_000, counter: 0, nodeId: "offline-client" }
      const op = { id: "1", mapName: "stamped", key: "k", opType: "PUT", record: { value: "v1", timestamp: old } }
      c.send({ type: "OP_BATCH", payload: { ops: [op] } })
      await c.next("OP_ACK")
      const echo = await c.next("SERVER_EVENT")
      expect(echo.payload.record.value).toBe("v1")
      expect(echo.payload.record.timestamp.nodeId).toBe("test-node") // re-stamped by the server HLC
      expect(echo.payload.record.timestamp.millis).toBeGreaterThan(old.millis)
      // Another client overwrites; the first client's resent op must not roll it back.
      const other = await TestClient.authed(restamp.url)
      other.send({ type: "CLIENT_OP", payload: { id: "o", mapName: "stamped", key: "k", opType: "PUT", record: { value: "v2", timestamp: { millis: Date.now(), counter: 0, nodeId: "other" } } } })
      await other.next("OP_ACK")
      c.send({ type: "OP_BATCH", payload: { ops: [op] } })
      const again = await c.next("OP_ACK")
      expect(again.payload.results[0].success).toBe(true)
      await c.sync()
      const values = c.ofType("QUERY_UPDATE").map((m) => m.payload.value)
      expect(values.at(-1)).toBe("v2")
      c.close()
      other.close()
    } finally {
      await restamp.close()
    }
  })
})
