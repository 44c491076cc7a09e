/**
 * persist: the price of durability. The write loop of `write` (N connections × OP_BATCH of B PUTs, closed
 * loop) at write concern APPLIED and at PERSISTED, on the embedded SQL store (fresh temp data dir) and on a
 * throwaway PostgreSQL cluster (fresh database per case; skipped with a note when PostgreSQL is not
 * installed). Every case gets its own server. Target: PERSISTED ops/s ≥ 0.3 × APPLIED ops/s per store.
 */
import type { WriteConcern } from "../src/crdt/types.js"
import { findPostgresBin, startBenchPostgres, type BenchPostgres } from "./lib/postgres.js"
import { describeError, type Outcome } from "./lib/scenario.js"
import { formatMs, formatRate, formatRatio, median, renderTable } from "./lib/stats.js"
import { customTessera, startTessera } from "./lib/tessera.js"
import { runWriteThroughput, type WriteResult } from "./write-throughput.js"

export interface PersistOptions {
  readonly stores: ReadonlyArray<"sqlite" | "postgres">
  readonly connections: number
  readonly batch: number
  readonly seconds: number
  readonly warmupSeconds: number
  readonly repeat: number
  readonly extraArgs: ReadonlyArray<string>
  readonly token: string
}

const TARGET = 0.3
const CONCERNS: ReadonlyArray<WriteConcern> = ["APPLIED", "PERSISTED"]

interface Case {
  readonly opsPerSecond: number
  readonly p50: number
  readonly p99: number
  readonly note: string
}

const summarize = (outcomes: ReadonlyArray<Outcome<WriteResult>>): Outcome<Case> => {
  const ok = outcomes.flatMap((o) => (o.ok ? [o.result] : []))
  if (ok.length === 0) {
    const first = outcomes[0]
    return { ok: false, reason: first !== undefined && !first.ok ? first.reason : "not run" }
  }
  const failed = ok.reduce((n, r) => n + r.failedOps, 0)
  const errors = [...new Set(ok.map((r) => r.errors).filter((e) => e !== ""))].join("; ")
  return {
    ok: true,
    result: {
      opsPerSecond: median(ok.map((r) => r.opsPerSecond)),
      p50: median(ok.map((r) => r.latency.p50)),
      p99: median(ok.map((r) => r.latency.p99)),
      note: [failed > 0 ? `${failed} failed ops` : "", errors !== "" ? `ERROR ${errors}` : ""].filter((s) => s !== "").join(", ")
    }
  }
}

export const runPersist = async (options: PersistOptions): Promise<void> => {
  const rows: Array<Array<string>> = []
  let postgres: BenchPostgres | undefined
  let databases = 0
  try {
    for (const store of options.stores) {
      let skip: string | undefined
      if (store === "postgres") {
        const bin = findPostgresBin()
        if (bin === undefined) skip = "skipped: no PostgreSQL binaries (initdb on PATH or /usr/lib/postgresql/*/bin)"
        else {
          try {
            postgres = await startBenchPostgres(bin)
          } catch (error) {
            skip = `skipped: PostgreSQL did not start (${describeError(error)})`
          }
        }
      }
      if (skip !== undefined) {
        rows.push([store, "-", "-", "-", "-", "-", "-", "-", skip])
        continue
      }
      const target = customTessera(async () => {
        if (store === "sqlite") return startTessera({ storage: "sqlite", extraArgs: options.extraArgs })
        const databaseUrl = await postgres!.createDatabase(`bench_${++databases}`)
        return startTessera({ storage: "postgres", databaseUrl, extraArgs: options.extraArgs })
      })
      const results = new Map<WriteConcern, Array<Outcome<WriteResult>>>(CONCERNS.map((c) => [c, []]))
      for (let r = 0; r < options.repeat; r++) {
        // Alternate the order so a drift in machine load does not always favour the same concern.
        for (const concern of r % 2 === 0 ? CONCERNS : [...CONCERNS].reverse()) {
          results.get(concern)!.push(await runWriteThroughput(target, {
            connections: options.connections,
            batch: options.batch,
            concern,
            seconds: options.seconds,
            warmupSeconds: options.warmupSeconds,
            inFlight: 1,
            token: options.token
          }))
        }
      }
      const applied = summarize(results.get("APPLIED")!)
      const persisted = summarize(results.get("PERSISTED")!)
      const cells = (o: Outcome<Case>) =>
        o.ok ? [formatRate(o.result.opsPerSecond), formatMs(o.result.p50), formatMs(o.result.p99)] : ["n/a", "n/a", "n/a"]
      const ratio = applied.ok && persisted.ok ? persisted.result.opsPerSecond / applied.result.opsPerSecond : Number.NaN
      const notes: Array<string> = []
      if (Number.isFinite(ratio)) notes.push(`target >=${TARGET}x ${ratio >= TARGET ? "PASS" : "FAIL"}`)
      for (const [name, o] of [["APPLIED", applied], ["PERSISTED", persisted]] as const) {
        if (!o.ok) notes.push(`${name} n/a (${o.reason})`)
        else if (o.result.note !== "") notes.push(`${name}: ${o.result.note}`)
      }
      rows.push([store, ...cells(applied), ...cells(persisted), formatRatio(ratio), notes.join("; ")])
    }
  } finally {
    await postgres?.stop()
  }
  console.log(
    `\npersist: ${options.connections} connections x OP_BATCH of ${options.batch} PUTs, ${options.seconds} s per case, a fresh server and store per case (latency = batch send -> OP_ACK)`
  )
  console.log(renderTable([
    ["store", "APPLIED ops/s", "p50 ms", "p99 ms", "PERSISTED ops/s", "p50 ms", "p99 ms", "PERSISTED/APPLIED", "note"],
    ...rows
  ]))
}
