/**
 * search: full-text search costs (protocol.md §3.6, §4.10).
 *
 * 1. Indexing cost: the write loop of `write` (N connections × OP_BATCH of B PUTs, MEMORY) writing short
 *    text documents to a map, on a fresh server per case: no search on the map; a SEARCH_SUB on the map whose
 *    query matches none of the documents (the index is maintained, no SEARCH_UPDATE is sent); a SEARCH_SUB
 *    matching every document (one SEARCH_UPDATE per write as well). Target: searched ≥ 0.5 × unsearched.
 * 2. Query latency: D documents (100 000) loaded with OP_BATCH at APPLIED, then sequential SEARCHes of one or
 *    two words with `limit: 10` from one client. The first SEARCH of a map builds its index (behavior.md
 *    §3.24), so it is reported on its own.
 */
import { BenchClient, closeAll, connectMany } from "./lib/client.js"
import { loadRecords } from "./lib/load.js"
import { ask, describeError, errorReason, type Outcome } from "./lib/scenario.js"
import type { ServerHandle } from "./lib/server-process.js"
import { formatMs, formatRate, formatRatio, renderTable, Samples } from "./lib/stats.js"
import { customTessera, startTessera, tesseraMissing } from "./lib/tessera.js"
import { TextGenerator } from "./lib/text.js"
import { runWriteThroughput, type WriteResult } from "./write-throughput.js"

export interface SearchOptions {
  readonly docs: number
  readonly queries: number
  readonly connections: number
  readonly batch: number
  readonly seconds: number
  readonly warmupSeconds: number
  readonly extraArgs: ReadonlyArray<string>
  readonly token: string
}

const TARGET = 0.5
const WRITE_MAP = "bench"
/** A word every written document carries, for the subscription that matches everything. */
const COMMON_WORD = "memo"

/** A server whose write map already has a SEARCH_SUB (from its own connection) for `query`. */
const searchedServer = (options: SearchOptions, query: string, counter: { updates: number }) =>
  customTessera(async () => {
    const server = await startTessera({ storage: "memory", extraArgs: options.extraArgs })
    let subscriber: BenchClient | undefined
    try {
      subscriber = await BenchClient.connect({ url: server.url, token: options.token })
      const resp = await ask(subscriber, { type: "SEARCH_SUB", payload: { subscriptionId: "bench-sub", mapName: WRITE_MAP, query } }, "SEARCH_RESP", 10_000, (p) => p?.requestId === "bench-sub")
      if (resp.error !== undefined) throw new Error(`SEARCH_SUB answered error: ${resp.error}`)
      subscriber.on("SEARCH_UPDATE", () => {
        counter.updates++
      })
    } catch (error) {
      subscriber?.close()
      await server.stop()
      throw error
    }
    const sub = subscriber
    return { ...server, stop: async () => {
      sub.close()
      await server.stop()
    } }
  })

const writeFigures = (o: Outcome<WriteResult>) =>
  o.ok ? [formatRate(o.result.opsPerSecond), formatMs(o.result.latency.p50), formatMs(o.result.latency.p99)] : ["n/a", "n/a", "n/a"]

const runIndexingCost = async (options: SearchOptions): Promise<void> => {
  const text = new TextGenerator(7)
  const pool = Array.from({ length: 1000 }, (_, i) => {
    const doc = text.doc(i)
    return { ...doc, body: `${doc.body} ${COMMON_WORD}` }
  })
  const write = {
    connections: options.connections,
    batch: options.batch,
    concern: "MEMORY" as const,
    seconds: options.seconds,
    warmupSeconds: options.warmupSeconds,
    inFlight: 1,
    token: options.token,
    mapName: WRITE_MAP,
    value: (i: number) => ({ ...pool[i % pool.length]!, n: i })
  }
  const noMatch = { updates: 0 }
  const everyWrite = { updates: 0 }
  const plain = await runWriteThroughput(customTessera(() => startTessera({ storage: "memory", extraArgs: options.extraArgs })), write)
  const searched = await runWriteThroughput(searchedServer(options, "zzqxj", noMatch), write)
  const matching = await runWriteThroughput(searchedServer(options, COMMON_WORD, everyWrite), write)
  const base = plain.ok ? plain.result.opsPerSecond : Number.NaN
  const row = (label: string, o: Outcome<WriteResult>, targeted: boolean, extra: string) => {
    const ratio = o.ok ? o.result.opsPerSecond / base : Number.NaN
    const notes = [
      targeted && Number.isFinite(ratio) ? `target >=${TARGET}x ${ratio >= TARGET ? "PASS" : "FAIL"}` : "",
      o.ok ? "" : `n/a (${o.reason})`,
      o.ok && o.result.failedOps > 0 ? `${o.result.failedOps} failed ops` : "",
      o.ok && o.result.errors !== "" ? `ERROR ${o.result.errors}` : "",
      extra
    ].filter((s) => s !== "")
    return [label, ...writeFigures(o), label === "no search" ? "1.00x" : formatRatio(ratio), notes.join("; ")]
  }
  console.log(
    `\nsearch indexing cost: ${options.connections} connections x OP_BATCH of ${options.batch} PUTs of short text docs to keys k0..9999, MEMORY, ${options.seconds} s per case, fresh server per case`
  )
  console.log(renderTable([
    ["case", "ops/s", "p50 ms", "p99 ms", "vs no search", "note"],
    row("no search", plain, false, ""),
    row("SEARCH_SUB matching nothing", searched, true, "index maintained, no SEARCH_UPDATE"),
    row("SEARCH_SUB matching every doc", matching, false, `${everyWrite.updates} SEARCH_UPDATEs received`)
  ]))
}

const runQueryLatency = async (options: SearchOptions): Promise<void> => {
  const title = `\nsearch latency: SEARCH over ${options.docs.toLocaleString("en")} short text docs (3-5 word title, 8-14 word body), ${options.queries} sequential queries of 1-2 words, limit 10`
  let server: ServerHandle | undefined
  let loaders: Array<BenchClient> = []
  let client: BenchClient | undefined
  try {
    server = await startTessera({ storage: "memory", extraArgs: options.extraArgs })
    const text = new TextGenerator(11)
    const millis = Date.now() - 1000
    loaders = await connectMany(4, { url: server.url, token: options.token }, { ratePerSecond: 90 })
    const load = await loadRecords(loaders, {
      mapName: "corpus",
      count: options.docs,
      key: (i) => `doc:${i}`,
      record: (i) => ({ value: text.doc(i), timestamp: { millis, counter: i, nodeId: "loader" } })
    })
    closeAll(loaders)
    client = await BenchClient.connect({ url: server.url, token: options.token })
    const queries = new TextGenerator(11) // same vocabulary and distribution as the documents
    let seq = 0
    const search = async (query: string) => {
      const requestId = `q${++seq}`
      const sentAt = performance.now()
      const resp = await ask(client!, { type: "SEARCH", payload: { requestId, mapName: "corpus", query, options: { limit: 10 } } }, "SEARCH_RESP", 60_000, (p) => p?.requestId === requestId)
      if (resp.error !== undefined) throw new Error(`SEARCH answered error: ${resp.error}`)
      return { ms: performance.now() - sentAt, results: Array.isArray(resp.results) ? resp.results.length : 0 }
    }
    const first = await search(queries.query())
    const samples = new Samples()
    let empty = 0
    for (let i = 0; i < options.queries; i++) {
      const r = await search(queries.query())
      samples.add(r.ms)
      if (r.results === 0) empty++
    }
    const s = samples.summary()
    console.log(`${title}; load ${formatRate(load.opsPerSecond)} docs/s (APPLIED, not measured)`)
    console.log(renderTable([
      ["case", "first SEARCH ms (builds index)", "p50 ms", "p99 ms", "max ms", "queries/s", "note"],
      [
        `${options.docs / 1000}k docs`,
        formatMs(first.ms),
        formatMs(s.p50),
        formatMs(s.p99),
        formatMs(s.max),
        formatRate(1000 / (samples.sorted().reduce((a, b) => a + b, 0) / samples.count)),
        empty > 0 ? `${empty} queries had no results` : ""
      ]
    ]))
  } catch (error) {
    const detail = errorReason([...loaders, ...(client !== undefined ? [client] : [])])
    console.log(`${title}\n  n/a (${describeError(error)}${detail !== undefined ? `; ${detail}` : ""})`)
  } finally {
    closeAll(loaders)
    client?.close()
    await server?.stop()
  }
}

export const runSearch = async (options: SearchOptions): Promise<void> => {
  const missing = tesseraMissing()
  if (missing !== undefined) {
    console.log(`\nsearch: n/a (${missing})`)
    return
  }
  await runIndexingCost(options)
  await runQueryLatency(options)
}
