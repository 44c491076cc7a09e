/** A throwaway PostgreSQL plus N `tessera serve --cluster postgres` processes on loopback. */
import pg from "pg"
import { TestClient } from "../support/client.js"
import { startTestPostgres, type TestPostgres } from "../support/postgres.js"
import { type ServerProcess, spawnServer } from "../support/process.js"

export const HEARTBEAT_MS = 100
export const HEARTBEAT_TIMEOUT_MS = 1500

export const nodeArgs = (url: string, nodeId: string, extra: ReadonlyArray<string> = []): Array<string> => [
  "--storage", "postgres",
  "--database-url", url,
  "--cluster", "postgres",
  "--node-id", nodeId,
  "--cluster-heartbeat-ms", String(HEARTBEAT_MS),
  "--cluster-heartbeat-timeout-ms", String(HEARTBEAT_TIMEOUT_MS),
  ...extra
]

export interface TestCluster {
  readonly pg: TestPostgres
  readonly url: string
  readonly nodes: Map<string, ServerProcess>
  readonly start: (nodeId: string, extra?: ReadonlyArray<string>) => Promise<ServerProcess>
  readonly query: <R extends Record<string, unknown>>(text: string, args?: ReadonlyArray<unknown>) => Promise<Array<R>>
  readonly stop: () => Promise<void>
}

export const startCluster = async (database: string, nodeIds: ReadonlyArray<string>, extra: ReadonlyArray<string> = []): Promise<TestCluster> => {
  const postgres = await startTestPostgres()
  const url = await postgres.createDatabase(database)
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  const nodes = new Map<string, ServerProcess>()
  const start = async (nodeId: string, more: ReadonlyArray<string> = extra) => {
    const node = await spawnServer(nodeArgs(url, nodeId, more))
    nodes.set(nodeId, node)
    return node
  }
  // The first node migrates the schema; the others join concurrently.
  await start(nodeIds[0]!)
  await Promise.all(nodeIds.slice(1).map((id) => start(id)))
  return {
    pg: postgres,
    url,
    nodes,
    start,
    query: async <R extends Record<string, unknown>>(text: string, args: ReadonlyArray<unknown> = []) =>
      (await db.query(text, args as Array<unknown>)).rows as Array<R>,
    stop: async () => {
      await Promise.all([...nodes.values()].map(async (n) => {
        if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill("SIGKILL")
        await n.exited
      }))
      await db.end().catch(() => undefined)
      await postgres.stop()
    }
  }
}

/** Polls `check` (a cheap database or client read) until it returns true; fails after `timeoutMs`. */
export const eventually = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

export const put = (c: TestClient, id: string, mapName: string, key: string, value: unknown, ts: { millis: number; counter: number; nodeId: string }, writeConcern?: string) =>
  c.send({ type: "CLIENT_OP", payload: { id, mapName, key, opType: "PUT", record: { value, timestamp: ts }, ...(writeConcern !== undefined ? { writeConcern } : {}) } })

/** Reads the whole map through a live query on `url`. */
export const readMap = async (url: string, mapName: string): Promise<Map<string, unknown>> => {
  const c = await TestClient.authed(url)
  c.send({ type: "QUERY_SUB", payload: { queryId: "all", mapName, query: {} } })
  const resp = await c.next("QUERY_RESP", () => true, 10_000)
  c.close()
  return new Map(resp.payload.results.map((r: any) => [r.key, r.value]))
}
