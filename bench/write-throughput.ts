/**
 * Write throughput: N connections, each sending OP_BATCHes of B LWW PUTs with write concern W and keeping
 * K batches in flight (closed loop). After a warmup, measures acked ops/s and batch ack latency
 * (send → OP_ACK) over a fixed window.
 */
import { randomUUID } from "node:crypto"
import type { WriteConcern } from "../src/crdt/types.js"
import { closeAll, connectMany, type BenchClient } from "./lib/client.js"
import { describeError, errorCounts, errorReason, sleep, unavailable, waitUntil, type Outcome } from "./lib/scenario.js"
import type { Target } from "./lib/server-process.js"
import { Samples, type LatencySummary } from "./lib/stats.js"
import { readCpuSeconds } from "./lib/tessera.js"

export interface WriteOptions {
  readonly connections: number
  readonly batch: number
  readonly concern: WriteConcern
  readonly seconds: number
  readonly warmupSeconds: number
  readonly inFlight: number
  readonly token: string
  /** Map written to ("bench"). */
  readonly mapName?: string
  /** Value of the i-th op (default `{ title, n: i }`). */
  readonly value?: (i: number) => unknown
}

export interface WriteResult {
  readonly opsPerSecond: number
  readonly batchesAcked: number
  readonly latency: LatencySummary
  /** OP_REJECTED frames and results with success: false. */
  readonly failedOps: number
  /** ERROR frames by code, if any. */
  readonly errors: string
  /** Server CPU time (user + system, all its threads) per acked op in the window, in microseconds. */
  readonly serverCpuUsPerOp: number
}

const TITLE = "Quarterly report draft for the benchmark workspace"

/** One connection's write loop state. */
class Writer {
  private readonly nodeId = randomUUID()
  private opSeq = 0
  /** lastId of each in-flight batch → send time. */
  readonly pending = new Map<string, number>()

  constructor(
    readonly client: BenchClient,
    private readonly options: WriteOptions
  ) {}

  sendBatch(): void {
    const ops = new Array<object>(this.options.batch)
    const millis = Date.now()
    let lastId = ""
    for (let j = 0; j < ops.length; j++) {
      const i = ++this.opSeq
      lastId = String(i)
      ops[j] = {
        id: lastId,
        mapName: this.options.mapName ?? "bench",
        key: `k${Math.floor(Math.random() * 10_000)}`,
        opType: "PUT",
        record: { value: this.options.value?.(i) ?? { title: TITLE, n: i }, timestamp: { millis, counter: i, nodeId: this.nodeId } }
      }
    }
    this.pending.set(lastId, performance.now())
    this.client.send({ type: "OP_BATCH", payload: { ops, writeConcern: this.options.concern } })
  }
}

export const runWriteThroughput = async (target: Target, options: WriteOptions): Promise<Outcome<WriteResult>> => {
  const missing = target.unavailable()
  if (missing !== undefined) return unavailable(missing)
  let server
  try {
    server = await target.start()
  } catch (error) {
    return unavailable(describeError(error))
  }
  let clients: Array<BenchClient> = []
  try {
    clients = await connectMany(
      options.connections,
      { url: server.url, token: options.token },
      { ratePerSecond: target.connectRatePerSecond }
    )
    const samples = new Samples()
    let ackedOps = 0
    let failedOps = 0
    let stopping = false
    let acks = 0
    const startedAt = performance.now()
    const windowStart = startedAt + options.warmupSeconds * 1000
    const windowEnd = windowStart + options.seconds * 1000

    const writers = clients.map((client) => new Writer(client, options))
    for (const writer of writers) {
      writer.client.on("OP_ACK", (message) => {
        const payload = message.payload
        const sentAt = writer.pending.get(payload?.lastId)
        if (sentAt === undefined) return
        writer.pending.delete(payload.lastId)
        acks++
        const now = performance.now()
        if (now >= windowStart && now <= windowEnd) {
          samples.add(now - sentAt)
          const results: Array<{ success?: boolean }> = Array.isArray(payload.results) ? payload.results : []
          let failed = 0
          for (const r of results) if (r.success === false) failed++
          ackedOps += options.batch - failed
          failedOps += failed
        }
        if (!stopping) writer.sendBatch()
      })
      writer.client.on("OP_REJECTED", () => {
        failedOps++
      })
      for (let k = 0; k < options.inFlight; k++) writer.sendBatch()
    }

    // A server without OP_BATCH support answers ERROR (e.g. 501) instead of acks: give up early.
    await waitUntil(() => acks > 0 || errorReason(clients) !== undefined, 5000)
    if (acks === 0) return unavailable(errorReason(clients) ?? "no OP_ACK within 5 s")
    await sleep(Math.max(0, windowStart - performance.now()))
    const cpuAtStart = await readCpuSeconds(server.pid)
    await sleep(Math.max(0, windowEnd - performance.now()))
    const cpuAtEnd = await readCpuSeconds(server.pid)
    stopping = true
    await waitUntil(() => writers.every((w) => w.pending.size === 0), 2000)

    return {
      ok: true,
      result: {
        opsPerSecond: ackedOps / options.seconds,
        batchesAcked: samples.count,
        latency: samples.summary(),
        failedOps,
        errors: errorCounts(clients),
        serverCpuUsPerOp: ((cpuAtEnd - cpuAtStart) * 1e6) / Math.max(1, ackedOps)
      }
    }
  } catch (error) {
    return unavailable(describeError(error))
  } finally {
    closeAll(clients)
    await server.stop()
  }
}
