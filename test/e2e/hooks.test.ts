import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { HookRejected, Hooks } from "../../src/layers/Hooks.js"
import type { ClientOp } from "../../src/protocol/schema.js"
import { TestClient } from "../support/client.js"
import { type RunningServer, startServer } from "../support/server.js"

describe("server hooks (embedders' interceptors)", () => {
  let server: RunningServer
  const after: string[] = []
  beforeAll(async () => {
    server = await startServer({}, Hooks.layer({
      onBeforeOp: (op: ClientOp, ctx) => {
        if (op.key === "drop-me") return Effect.succeed(undefined)
        if (op.key === "refuse-me") return Effect.fail(new HookRejected({ message: `not allowed for ${ctx.principal.userId}` }))
        if (op.key === "rewrite-me" && op.record != null) return Effect.succeed({ ...op, record: { ...op.record, value: { rewritten: true } } })
        return Effect.succeed(op)
      },
      onAfterOp: (op) => Effect.sync(() => void after.push(op.key))
    }))
  })
  afterAll(async () => {
    await server.close()
  })

  it("replaces, drops and refuses ops before they are applied, and notifies after", async () => {
    const c = await TestClient.authed(server.url, { sub: "hooked" })
    c.send({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "hooked", query: {} } })
    await c.next("QUERY_RESP")
    const op = (id: string, key: string) => ({ id, mapName: "hooked", key, opType: "PUT", record: { value: { original: true }, timestamp: { millis: Date.now(), counter: 0, nodeId: "h" } } })
    c.send({ type: "OP_BATCH", payload: { ops: [op("1", "drop-me"), op("2", "refuse-me"), op("3", "rewrite-me"), op("4", "plain")] } })
    const ack = await c.next("OP_ACK")
    expect(ack.payload.results).toEqual([
      { opId: "1", success: false, achievedLevel: "FIRE_AND_FORGET", error: "Dropped by interceptor" },
      { opId: "2", success: false, achievedLevel: "FIRE_AND_FORGET", error: "not allowed for hooked" },
      { opId: "3", success: true, achievedLevel: "REPLICATED" },
      { opId: "4", success: true, achievedLevel: "REPLICATED" }
    ])
    await c.sync()
    expect(c.ofType("QUERY_UPDATE").map((m) => [m.payload.key, m.payload.value])).toEqual([
      ["rewrite-me", { rewritten: true }],
      ["plain", { original: true }]
    ])
    expect(c.ofType("OP_REJECTED")).toEqual([])
    await expect.poll(() => after).toEqual(["rewrite-me", "plain"])
    c.close()
  })

  it("onConnection may refuse a connection (close 4000) and onDisconnect runs on close", async () => {
    const seen: string[] = []
    const guarded = await startServer({}, Hooks.layer({
      onConnection: (c) => (c.remoteAddress.startsWith("127.0.0.1") && seen.length > 0 ? Effect.fail(new HookRejected({ message: "one at a time" })) : Effect.void),
      onDisconnect: (c) => Effect.sync(() => void seen.push(c.id))
    }))
    try {
      const first = await TestClient.authed(guarded.url)
      first.close()
      await first.closed()
      await expect.poll(() => seen.length).toBe(1)
      const second = await TestClient.connect(guarded.url)
      expect(await second.closed()).toEqual({ code: 4000, reason: "Connection Rejected" })
    } finally {
      await guarded.close()
    }
  })
})
