/**
 * locks: distributed-lock round trips (protocol.md §3.9). Each client runs a closed loop
 * LOCK_REQUEST → LOCK_GRANTED → LOCK_RELEASE → LOCK_RELEASED → next request. Cases: one client on one lock
 * name, one client on a new lock name each cycle, and C contenders (10) looping on one lock (the server
 * queues them FIFO, so the acquire latency includes the wait for the others). Reported: cycles/s (= grants/s)
 * and the acquire latency, request sent → LOCK_GRANTED received. One server for all cases (memory storage).
 */
import { closeAll, connectMany, type BenchClient } from "./lib/client.js"
import { describeError, errorReason, sleep, waitUntil, type Outcome } from "./lib/scenario.js"
import type { ServerHandle } from "./lib/server-process.js"
import { formatMs, formatRate, renderTable, Samples, type LatencySummary } from "./lib/stats.js"
import { startTessera, tesseraMissing } from "./lib/tessera.js"

export interface LocksOptions {
  readonly contenders: number
  readonly seconds: number
  readonly extraArgs: ReadonlyArray<string>
  readonly token: string
}

interface CaseResult {
  readonly cyclesPerSecond: number
  readonly acquire: LatencySummary
  readonly failedReleases: number
}

const WARMUP_MS = 500

/** Runs the loop on every client for the window; `nameFor(client, cycle)` picks the lock name. */
const runCase = async (
  clients: ReadonlyArray<BenchClient>,
  nameFor: (clientIndex: number, cycle: number) => string,
  seconds: number
): Promise<Outcome<CaseResult>> => {
  const samples = new Samples()
  const startedAt = performance.now()
  const windowStart = startedAt + WARMUP_MS
  const windowEnd = windowStart + seconds * 1000
  let stopping = false
  let cycles = 0
  let grants = 0
  let failedReleases = 0
  const idle = clients.map(() => false)

  clients.forEach((client, index) => {
    let cycle = 0
    let requestId = ""
    let name = ""
    let sentAt = 0
    const acquire = () => {
      if (stopping) {
        idle[index] = true
        return
      }
      name = nameFor(index, cycle)
      requestId = `c${index}-${++cycle}`
      sentAt = performance.now()
      client.send({ type: "LOCK_REQUEST", payload: { requestId, name, ttl: 10_000 } })
    }
    client.on("LOCK_GRANTED", (m) => {
      if (m.payload?.requestId !== requestId) return
      grants++
      const now = performance.now()
      if (now >= windowStart && now <= windowEnd) samples.add(now - sentAt)
      client.send({ type: "LOCK_RELEASE", payload: { requestId: `${requestId}-r`, name, fencingToken: m.payload.fencingToken } })
    })
    client.on("LOCK_RELEASED", (m) => {
      if (m.payload?.requestId !== `${requestId}-r`) return
      const now = performance.now()
      if (now >= windowStart && now <= windowEnd) {
        cycles++
        if (m.payload.success !== true) failedReleases++
      }
      acquire()
    })
    acquire()
  })

  await waitUntil(() => grants > 0 || errorReason(clients) !== undefined, 5000)
  if (grants === 0) {
    stopping = true
    return { ok: false, reason: errorReason(clients) ?? "no LOCK_GRANTED within 5 s" }
  }
  await sleep(Math.max(0, windowEnd - performance.now()))
  stopping = true
  const drained = await waitUntil(() => idle.every((i) => i), 5000)
  for (const c of clients) {
    c.off("LOCK_GRANTED")
    c.off("LOCK_RELEASED")
  }
  if (!drained) return { ok: false, reason: "loop did not drain within 5 s after the window (a grant or release went unanswered)" }
  return { ok: true, result: { cyclesPerSecond: cycles / seconds, acquire: samples.summary(), failedReleases } }
}

export const runLocks = async (options: LocksOptions): Promise<void> => {
  const title = `\nlocks: closed loop LOCK_REQUEST -> LOCK_GRANTED -> LOCK_RELEASE -> LOCK_RELEASED, ${options.seconds} s per case (latency = request -> LOCK_GRANTED)`
  const missing = tesseraMissing()
  if (missing !== undefined) {
    console.log(`${title}\n  n/a (${missing})`)
    return
  }
  let server: ServerHandle | undefined
  let clients: Array<BenchClient> = []
  const rows: Array<Array<string>> = []
  try {
    server = await startTessera({ storage: "memory", extraArgs: options.extraArgs })
    clients = await connectMany(options.contenders, { url: server.url, token: options.token }, { ratePerSecond: 90 })
    const cases: ReadonlyArray<[string, ReadonlyArray<BenchClient>, (client: number, cycle: number) => string]> = [
      ["1 client, same lock", clients.slice(0, 1), () => "bench-lock"],
      ["1 client, new lock each cycle", clients.slice(0, 1), (_, cycle) => `bench-lock-${cycle}`],
      [`${options.contenders} contenders, one lock`, clients, () => "bench-contended"]
    ]
    for (const [label, members, nameFor] of cases) {
      const outcome = await runCase(members, nameFor, options.seconds)
      if (!outcome.ok) {
        rows.push([label, "n/a", "n/a", "n/a", outcome.reason])
        continue
      }
      const r = outcome.result
      rows.push([
        label,
        formatRate(r.cyclesPerSecond),
        formatMs(r.acquire.p50),
        formatMs(r.acquire.p99),
        r.failedReleases > 0 ? `${r.failedReleases} releases answered success:false` : ""
      ])
    }
  } catch (error) {
    rows.push(["setup", "n/a", "n/a", "n/a", describeError(error)])
  } finally {
    closeAll(clients)
    await server?.stop()
  }
  console.log(title)
  console.log(renderTable([["case", "cycles/s", "acquire p50 ms", "p99 ms", "note"], ...rows]))
}
