/**
 * process: entry processors (protocol.md §3.10, §4.13). C connections (4) each keep W requests in flight (8),
 * every request on a new key: ENTRY_PROCESS with a trivial processor (`return { value: (value ?? 0) + 1,
 * result: 1 }`, run in the QuickJS sandbox) → ENTRY_PROCESS_RESPONSE, versus a plain CLIENT_OP PUT of the same
 * value (1) → OP_ACK (MEMORY). Same server (memory storage), same loop, different maps. Reported: calls/s,
 * latency p50/p99 (request → response), and the overhead per call: 1/rate(processor) − 1/rate(CLIENT_OP),
 * i.e. the extra server time a call costs at this concurrency.
 */
import { randomUUID } from "node:crypto"
import { closeAll, connectMany, type BenchClient, type Inbound } from "./lib/client.js"
import { describeError, errorCounts, errorReason, sleep, waitUntil, type Outcome } from "./lib/scenario.js"
import type { ServerHandle } from "./lib/server-process.js"
import { formatMs, formatRate, renderTable, Samples, type LatencySummary } from "./lib/stats.js"
import { startTessera, tesseraMissing } from "./lib/tessera.js"

export interface ProcessOptions {
  readonly connections: number
  readonly inFlight: number
  readonly seconds: number
  readonly warmupSeconds: number
  readonly extraArgs: ReadonlyArray<string>
  readonly token: string
}

const PROCESSOR = { name: "bench-increment", code: "return { value: (value ?? 0) + 1, result: 1 }" }

interface LoopResult {
  readonly callsPerSecond: number
  readonly latency: LatencySummary
  readonly failures: number
  readonly firstFailure: string
  readonly errors: string
}

/** How one kind of call is sent and recognised. */
interface CallKind {
  readonly responseType: string
  /** Frame for call `seq` of connection `conn`, with its correlation id. */
  readonly request: (conn: number, seq: number, id: string) => object
  readonly idOf: (message: Inbound) => unknown
  /** undefined on success, else the failure text. */
  readonly failureOf: (message: Inbound) => string | undefined
}

const runLoop = async (clients: ReadonlyArray<BenchClient>, kind: CallKind, options: ProcessOptions): Promise<Outcome<LoopResult>> => {
  const samples = new Samples()
  const windowStart = performance.now() + options.warmupSeconds * 1000
  const windowEnd = windowStart + options.seconds * 1000
  let stopping = false
  let completed = 0
  let inWindow = 0
  let failures = 0
  let firstFailure = ""
  const pendings = clients.map(() => new Map<string, number>())
  clients.forEach((client, conn) => {
    const pending = pendings[conn]!
    let seq = 0
    const send = () => {
      const id = `${conn}-${++seq}`
      pending.set(id, performance.now())
      client.send(kind.request(conn, seq, id))
    }
    client.on(kind.responseType, (message) => {
      const id = String(kind.idOf(message))
      const sentAt = pending.get(id)
      if (sentAt === undefined) return
      pending.delete(id)
      completed++
      const now = performance.now()
      if (now >= windowStart && now <= windowEnd) {
        samples.add(now - sentAt)
        inWindow++
        const failure = kind.failureOf(message)
        if (failure !== undefined) {
          failures++
          if (firstFailure === "") firstFailure = failure
        }
      }
      if (!stopping) send()
    })
    for (let k = 0; k < options.inFlight; k++) send()
  })
  const started = await waitUntil(() => completed > 0 || errorReason(clients) !== undefined, 10_000)
  if (!started || completed === 0) {
    stopping = true
    return { ok: false, reason: errorReason(clients) ?? `no ${kind.responseType} within 10 s` }
  }
  await sleep(Math.max(0, windowEnd - performance.now()))
  stopping = true
  await waitUntil(() => pendings.every((p) => p.size === 0), 5000)
  const lost = pendings.reduce((n, p) => n + p.size, 0)
  for (const c of clients) c.off(kind.responseType)
  return {
    ok: true,
    result: {
      callsPerSecond: (inWindow - failures) / options.seconds,
      latency: samples.summary(),
      failures,
      firstFailure,
      errors: [errorCounts(clients), lost > 0 ? `${lost} calls never answered` : ""].filter((s) => s !== "").join(", ")
    }
  }
}

export const runProcess = async (options: ProcessOptions): Promise<void> => {
  const title = `\nprocess: ${options.connections} connections x ${options.inFlight} calls in flight, a new key per call, ${options.seconds} s per case (latency = request -> response)`
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
    clients = await connectMany(options.connections, { url: server.url, token: options.token }, { ratePerSecond: 90 })
    const nodeIds = clients.map(() => randomUUID())
    const entryProcess: CallKind = {
      responseType: "ENTRY_PROCESS_RESPONSE",
      request: (conn, seq, id) => ({ type: "ENTRY_PROCESS", requestId: id, mapName: "proc", key: `p${conn}:${seq}`, processor: PROCESSOR }),
      idOf: (m) => m["requestId"],
      failureOf: (m) => (m["success"] === true ? undefined : String(m["error"] ?? "success: false"))
    }
    const clientOp: CallKind = {
      responseType: "OP_ACK",
      request: (conn, seq, id) => ({
        type: "CLIENT_OP",
        payload: { id, mapName: "plain", key: `w${conn}:${seq}`, opType: "PUT", record: { value: 1, timestamp: { millis: Date.now(), counter: seq, nodeId: nodeIds[conn]! } } }
      }),
      idOf: (m) => m.payload?.lastId,
      failureOf: (m) => {
        const result = Array.isArray(m.payload?.results) ? m.payload.results[0] : undefined
        return result?.success === false ? String(result.error ?? "success: false") : undefined
      }
    }
    const outcomes: Array<[string, Outcome<LoopResult>]> = []
    for (const [label, kind] of [["CLIENT_OP PUT", clientOp], ["ENTRY_PROCESS", entryProcess]] as const) {
      const outcome = await runLoop(clients, kind, options)
      outcomes.push([label, outcome])
    }
    const base = outcomes[0]![1]
    for (const [label, o] of outcomes) {
      if (!o.ok) {
        rows.push([label, "n/a", "n/a", "n/a", "-", `n/a (${o.reason})`])
        continue
      }
      const r = o.result
      const overhead = base.ok && label !== "CLIENT_OP PUT" ? (1e6 / r.callsPerSecond - 1e6 / base.result.callsPerSecond) : Number.NaN
      rows.push([
        label,
        formatRate(r.callsPerSecond),
        formatMs(r.latency.p50),
        formatMs(r.latency.p99),
        Number.isFinite(overhead) ? `${overhead.toFixed(0)} us` : "-",
        [
          r.failures > 0 ? `${r.failures} failed (${r.firstFailure})` : "",
          r.errors !== "" ? `ERROR ${r.errors}` : ""
        ].filter((s) => s !== "").join("; ")
      ])
    }
  } catch (error) {
    rows.push(["setup", "n/a", "n/a", "n/a", "-", describeError(error)])
  } finally {
    closeAll(clients)
    await server?.stop()
  }
  console.log(title)
  console.log(renderTable([["case", "calls/s", "p50 ms", "p99 ms", "overhead/call", "note"], ...rows]))
}
