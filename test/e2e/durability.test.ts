import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TestClient } from "../support/client.js"
import { findPostgresBin, NO_POSTGRES_MESSAGE, startTestPostgres, type TestPostgres } from "../support/postgres.js"
import { spawnServer } from "../support/process.js"

/** Reads the whole map through a live query (the protocol's own read path). */
const readMap = async (url: string, mapName: string): Promise<Map<string, unknown>> => {
  const c = await TestClient.authed(url)
  c.send({ type: "QUERY_SUB", payload: { queryId: "all", mapName, query: {} } })
  const resp = await c.next("QUERY_RESP", () => true, 20_000)
  c.close()
  return new Map(resp.payload.results.map((r: any) => [r.key, r.value]))
}

/**
 * Streams PERSISTED writes (pipelined OP_BATCHes) and SIGKILLs the server once `killAfterAcks`
 * writes were acknowledged as PERSISTED. Returns the acknowledged keys with their values.
 */
const writeUntilKilled = async (serverArgs: string[], killAfterAcks: number, tag: string) => {
  const server = await spawnServer(serverArgs)
  const c = await TestClient.authed(server.url)
  const acked = new Map<string, number>()
  let batch = 0
  let killed = false
  const sendBatch = () => {
    const ops = Array.from({ length: 10 }, (_, i) => {
      const n = batch * 10 + i
      return { id: `${tag}-${n}`, mapName: "crash", key: `${tag}-k${n}`, opType: "PUT", writeConcern: "PERSISTED", record: { value: n, timestamp: { millis: Date.now(), counter: n, nodeId: "crash-client" } } }
    })
    batch++
    c.send({ type: "OP_BATCH", payload: { ops } })
  }
  await new Promise<void>((resolve) => {
    c.ws.on("message", () => {
      for (const m of c.received.splice(0)) {
        if (m.type !== "OP_ACK") continue
        for (const r of m.payload.results) {
          if (r.success && r.achievedLevel === "PERSISTED") acked.set(`${tag}-k${r.opId.split("-").pop()}`, Number(r.opId.split("-").pop()))
        }
        if (!killed && acked.size >= killAfterAcks) {
          killed = true
          server.child.kill("SIGKILL")
          resolve()
        } else if (!killed) sendBatch()
      }
    })
    // Four batches in flight, so the kill lands while writes are queued, committing and being acked.
    for (let i = 0; i < 4; i++) sendBatch()
  })
  await server.exited
  return acked
}

const crashSuite = (name: string, argsFor: () => Promise<string[]>) => {
  it(`${name}: every write acknowledged at PERSISTED survives SIGKILL at random moments`, async () => {
    const args = await argsFor()
    const allAcked = new Map<string, number>()
    // Several kill points, each after a different (random) number of acknowledged writes.
    for (const [round, killAfter] of [17, 83, 151].map((base, i) => [i, base + Math.floor(Math.random() * 40)] as const)) {
      const acked = await writeUntilKilled(args, killAfter, `r${round}`)
      expect(acked.size).toBeGreaterThanOrEqual(killAfter)
      for (const [k, v] of acked) allAcked.set(k, v)
    }
    const server = await spawnServer(args)
    try {
      const stored = await readMap(server.url, "crash")
      const missing = [...allAcked].filter(([k, v]) => stored.get(k) !== v)
      expect(missing).toEqual([])
    } finally {
      server.child.kill("SIGTERM")
      await server.exited
    }
  }, 120_000)

  it(`${name}: data written at APPLIED is present after a graceful stop and start`, async () => {
    const args = await argsFor()
    const first = await spawnServer(args)
    const c = await TestClient.authed(first.url)
    const ops = Array.from({ length: 50 }, (_, i) => ({ id: `g${i}`, mapName: "graceful", key: `k${i}`, opType: "PUT", writeConcern: "APPLIED", record: { value: { i, text: "ünïcødé ✓" }, timestamp: { millis: Date.now(), counter: i, nodeId: "g" } } }))
    c.send({ type: "OP_BATCH", payload: { ops } })
    await c.next("OP_ACK")
    c.send({ type: "CLIENT_OP", payload: { id: "ttl", mapName: "graceful", key: "with-ttl", opType: "PUT", record: { value: "t", timestamp: { millis: Date.now(), counter: 0, nodeId: "g" }, ttlMs: 3_600_000 } } })
    await c.next("OP_ACK", (m) => m.payload.lastId === "ttl")
    c.send({ type: "CLIENT_OP", payload: { id: "del", mapName: "graceful", key: "k0", opType: "REMOVE", record: null } })
    await c.next("OP_ACK", (m) => m.payload.lastId === "del")
    first.child.kill("SIGTERM")
    const exit = await first.exited
    expect(exit.code).toBe(0)
    expect((await c.closed()).code).toBe(1001)
    expect(c.ofType("SHUTDOWN_PENDING")).toEqual([{ type: "SHUTDOWN_PENDING", retryAfter: 5000 }])

    const second = await spawnServer(args)
    try {
      const stored = await readMap(second.url, "graceful")
      expect(stored.size).toBe(50) // 49 of the batch + with-ttl; k0 was deleted
      expect(stored.get("k1")).toEqual({ i: 1, text: "ünïcødé ✓" })
      expect(stored.has("k0")).toBe(false)
      expect(stored.get("with-ttl")).toBe("t")
      // The journal sequence continues across the restart.
      const j = await TestClient.authed(second.url)
      const w = await TestClient.authed(second.url)
      j.send({ type: "JOURNAL_SUBSCRIBE", requestId: "j" })
      await j.sync()
      w.send({ type: "CLIENT_OP", payload: { id: "after", mapName: "graceful", key: "after", opType: "PUT", record: { value: 1, timestamp: { millis: Date.now(), counter: 0, nodeId: "g" } } } })
      const ev = await j.next("JOURNAL_EVENT")
      expect(Number(ev.event.sequence)).toBeGreaterThan(52)
      j.close()
      w.close()
    } finally {
      second.child.kill("SIGTERM")
      await second.exited
    }
  }, 120_000)
}

describe("durability with real server processes", () => {
  const dirs: string[] = []
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
  })

  describe("embedded SQL file", () => {
    const dataDir = () => {
      const d = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-durability-"))
      dirs.push(d)
      return d
    }
    let dir: string | undefined
    crashSuite("sqlite", async () => ["--storage", "sqlite", "--data-dir", dir ??= dataDir()])
  })

  describe.skipIf(findPostgresBin() === undefined)("PostgreSQL", () => {
    let pg: TestPostgres
    beforeAll(async () => {
      pg = await startTestPostgres()
    }, 60_000)
    afterAll(async () => {
      await pg?.stop()
    })
    let url: string | undefined
    crashSuite("postgres", async () => ["--storage", "postgres", "--database-url", url ??= await pg.createDatabase("durability")])
  })

  it.skipIf(findPostgresBin() !== undefined)("PostgreSQL binaries are available", () => {
    console.warn(NO_POSTGRES_MESSAGE)
  })
})
