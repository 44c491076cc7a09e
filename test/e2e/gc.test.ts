import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TestClient } from "../support/client.js"
import { type RunningServer, startServer } from "../support/server.js"

describe("TTL expiry and GC in the running server", () => {
  let server: RunningServer
  beforeAll(async () => {
    // Short intervals so a full round can be watched; waits below are on events, never sleeps.
    server = await startServer({ ttlSweepIntervalMs: 50, gcIntervalMs: 300, gcAgeMs: 0 })
  })
  afterAll(async () => {
    await server.close()
  })

  it("turns an expired record into a tombstone seen by live queries and other clients, then prunes it", async () => {
    const writer = await TestClient.authed(server.url)
    const reader = await TestClient.authed(server.url)
    reader.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "ttl", query: {} } })
    await reader.next("QUERY_RESP")
    const now = Date.now()
    writer.send({ type: "CLIENT_OP", payload: { id: "t", mapName: "ttl", key: "short", opType: "PUT", record: { value: "bye", timestamp: { millis: now, counter: 0, nodeId: "w" }, ttlMs: 100 } } })
    await writer.next("OP_ACK")
    await reader.next("QUERY_UPDATE", (m) => m.payload.changeType === "ENTER")
    const leave = await reader.next("QUERY_UPDATE", (m) => m.payload.changeType === "LEAVE", 10_000)
    expect(leave.payload.key).toBe("short")
    const removal = await reader.next("SERVER_EVENT", (m) => m.payload.eventType === "REMOVE", 10_000)
    expect(removal.payload.record).toEqual({ value: null, timestamp: { millis: now + 100, counter: 0, nodeId: "test-node" } })
    // The GC round commits a safe timestamp and tells every authenticated client.
    const prune = await reader.next("GC_PRUNE", () => true, 10_000)
    expect(prune.payload.olderThan.millis).toBeLessThanOrEqual(Date.now())
    writer.close()
    reader.close()
  }, 30_000)
})
