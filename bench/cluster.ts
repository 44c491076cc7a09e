/**
 * Three-node cluster on one PostgreSQL (behavior.md §3.26): `npm run build && node dist/bench/cluster.js
 * [--seconds D] [--connections C] [--batch B] [--samples N]`.
 *
 * - Write throughput at APPLIED and REPLICATED: C connections spread over the three nodes, each with one
 *   OP_BATCH of B PUTs in flight, random keys; acknowledged ops per second over D seconds.
 * - Cross-node write → event latency: a writer on node A sends one PUT at a time; subscribers (live query)
 *   on B and C time the SERVER_EVENT from the send (same process, one clock); p50 / p99 over N writes.
 *
 * PostgreSQL runs with its durable defaults, so REPLICATED prices real commits.
 */
import { BenchClient, connectMany, signToken } from "./lib/client.js"
import { findPostgresBin, startBenchPostgres } from "./lib/postgres.js"
import type { ServerHandle } from "./lib/server-process.js"
import { formatMs, formatRate, renderTable, Samples } from "./lib/stats.js"
import { startTessera, tesseraMissing } from "./lib/tessera.js"

const flag = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`)
  return v
}

const NODES = ["node-a", "node-b", "node-c"] as const

const startCluster = async (url: string): Promise<Array<ServerHandle>> => {
  const start = (nodeId: string) =>
    startTessera({
      storage: "postgres",
      databaseUrl: url,
      extraArgs: ["--cluster", "postgres", "--node-id", nodeId, "--log-level", "warning"],
      startupTimeoutMs: 60_000
    })
  const first = await start(NODES[0]) // migrates the schema
  const rest = await Promise.all(NODES.slice(1).map(start))
  return [first, ...rest]
}

/** Ops per second acknowledged at `concern` by `connections` spread over the nodes. */
const writeThroughput = async (nodes: ReadonlyArray<ServerHandle>, concern: string, connections: number, batch: number, seconds: number) => {
  const token = await signToken("bench")
  const perNode = Math.max(1, Math.round(connections / nodes.length))
  const clients = (await Promise.all(nodes.map((n) => connectMany(perNode, { url: n.url, token }, { ratePerSecond: 50 })))).flat()
  let acked = 0
  let failed = 0
  let measuring = false
  let running = true
  let seq = 0
  const sendBatch = (c: BenchClient) => {
    if (!running) return
    const ops = new Array<object>(batch)
    let lastId = ""
    for (let i = 0; i < batch; i++) {
      lastId = `${++seq}`
      ops[i] = {
        id: lastId,
        mapName: "bench-cluster",
        key: `k${Math.floor(Math.random() * 10_000)}`,
        opType: "PUT",
        record: { value: { n: seq }, timestamp: { millis: Date.now(), counter: seq, nodeId: "bench" } }
      }
    }
    c.send({ type: "OP_BATCH", payload: { ops, writeConcern: concern } })
  }
  for (const c of clients) {
    c.on("OP_ACK", (m) => {
      const results: Array<{ success?: boolean }> = m.payload?.results ?? []
      if (measuring) {
        for (const r of results) {
          if (r.success === false) {
            if (failed++ === 0) console.error(`first failed op: ${JSON.stringify(r)}`)
          } else acked++
        }
      }
      sendBatch(c)
    })
    sendBatch(c)
  }
  await new Promise((r) => setTimeout(r, 1000)) // warm-up
  measuring = true
  const started = performance.now()
  await new Promise((r) => setTimeout(r, seconds * 1000))
  measuring = false
  const elapsed = performance.now() - started
  running = false
  for (const c of clients) c.close()
  return { opsPerSecond: (acked / elapsed) * 1000, failed }
}

/** Send → SERVER_EVENT on another node, one write at a time. */
const crossNodeLatency = async (nodes: ReadonlyArray<ServerHandle>, samples: number) => {
  const token = await signToken("bench")
  const writer = await BenchClient.connect({ url: nodes[0]!.url, token })
  const subscribers = await Promise.all(nodes.slice(1).map((n) => BenchClient.connect({ url: n.url, token })))
  await Promise.all(subscribers.map((s) =>
    new Promise<void>((resolve) => {
      s.on("QUERY_RESP", () => resolve())
      s.send({ type: "QUERY_SUB", payload: { queryId: "lat", mapName: "bench-latency", query: {} } })
    })
  ))
  const latency = new Samples()
  for (let i = 0; i < samples; i++) {
    const key = `k${i}`
    const sentAt = performance.now()
    await Promise.all(subscribers.map((s) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no SERVER_EVENT for ${key} within 10 s`)), 10_000)
        s.on("SERVER_EVENT", (m) => {
          if (m.payload?.key !== key) return
          clearTimeout(timer)
          latency.add(performance.now() - sentAt)
          resolve()
        })
      })
    ).concat([Promise.resolve(writer.send({
      type: "CLIENT_OP",
      payload: { id: key, mapName: "bench-latency", key, opType: "PUT", record: { value: i, timestamp: { millis: Date.now(), counter: i, nodeId: "bench" } } }
    }))]))
  }
  writer.close()
  for (const s of subscribers) s.close()
  return latency.summary()
}

const main = async () => {
  const seconds = flag("seconds", 5)
  const connections = flag("connections", 24)
  const batch = flag("batch", 10)
  const samples = flag("samples", 500)
  const missing = tesseraMissing()
  if (missing !== undefined) throw new Error(missing)
  const bin = findPostgresBin()
  if (bin === undefined) throw new Error("PostgreSQL binaries not found: install them (.ci/postgres.sh)")
  const postgres = await startBenchPostgres(bin)
  let nodes: Array<ServerHandle> = []
  try {
    const rows: Array<Array<string>> = [["case", "result"]]
    // A fresh cluster and database per case: an APPLIED run leaves a write-behind backlog behind it.
    let db = 0
    for (const concern of ["REPLICATED", "APPLIED"]) {
      nodes = await startCluster(await postgres.createDatabase(`bench_cluster_${db++}`))
      const r = await writeThroughput(nodes, concern, connections, batch, seconds)
      rows.push([`writes ${concern} (${connections} conns × ${batch}/batch, 3 nodes)`, `${formatRate(r.opsPerSecond)} ops/s${r.failed > 0 ? `, ${r.failed} failed` : ""}`])
      await Promise.all(nodes.map((n) => n.stop()))
      nodes = []
    }
    // Baseline: one node on PostgreSQL storage without the cluster (no change rows, no feed).
    const single = await startTessera({ storage: "postgres", databaseUrl: await postgres.createDatabase(`bench_cluster_${db++}`), extraArgs: ["--log-level", "warning"] })
    nodes = [single]
    const base = await writeThroughput(nodes, "PERSISTED", connections, batch, seconds)
    rows.push([`baseline: one node, no cluster, PERSISTED (${connections} conns)`, `${formatRate(base.opsPerSecond)} ops/s`])
    await single.stop()
    nodes = await startCluster(await postgres.createDatabase(`bench_cluster_${db++}`))
    const lat = await crossNodeLatency(nodes, samples)
    rows.push([`write on A → SERVER_EVENT on B and C (${lat.count} samples)`, `p50 ${formatMs(lat.p50)}  p99 ${formatMs(lat.p99)}  max ${formatMs(lat.max)}`])
    console.log(renderTable(rows))
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await postgres.stop()
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
