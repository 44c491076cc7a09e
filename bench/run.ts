/**
 * Benchmark entry point: `node dist/bench/run.js [write|fanout|topics|all] [options]` (see --help).
 * Every scenario runs against Tessera and against the raw ws + msgpackr baseline in the same run, each server
 * in its own child process on 127.0.0.1, and prints medians, p99s, throughputs and Tessera / baseline ratios.
 */
import type { WriteConcern } from "../src/crdt/types.js"
import { runFanoutSuite, type FanoutOptions, type FanoutRow } from "./fanout.js"
import { signToken } from "./lib/client.js"
import type { Outcome } from "./lib/scenario.js"
import { baselineTarget, tesseraTarget, type StorageKind, type Target } from "./lib/server-process.js"
import { formatMs, formatRate, formatRatio, median, renderTable } from "./lib/stats.js"
import { runWriteThroughput, type WriteOptions } from "./write-throughput.js"
import { runColdstart } from "./coldstart.js"
import { runLocks } from "./locks.js"
import { runPersist } from "./persist.js"
import { runProcess } from "./process.js"
import { runSearch } from "./search.js"
import { runSync } from "./sync.js"

const SCENARIOS = ["write", "fanout", "topics", "persist", "coldstart", "sync", "locks", "search", "process", "all"] as const
type Scenario = (typeof SCENARIOS)[number]

const USAGE = `usage: node dist/bench/run.js [${SCENARIOS.join("|")}] [options]
  --connections N     write/persist/search: connections (50); process: connections (4)
  --batch B           write/persist/search: ops per OP_BATCH (10)
  --concern W         write: FIRE_AND_FORGET|MEMORY|APPLIED|REPLICATED|PERSISTED (MEMORY)
  --in-flight K       write: batches in flight per connection (1); process: calls in flight per connection (8)
  --seconds D         measured seconds per case: write 5; persist, search, process 3; locks 2
  --warmup S          warmup seconds before each measured window (1)
  --stores L          persist: stores, comma separated (sqlite,postgres)
  --records N         coldstart: records in the store (1000000)
  --keys K            sync: keys on the server (100000)
  --divergent D       sync: keys the client holds in an older version (1000)
  --contenders C      locks: clients looping on one lock (10)
  --docs D            search: documents for the latency test (100000)
  --queries Q         search: sequential SEARCH requests timed (300)
  --subscribers L     fanout/topics: subscriber counts, comma separated (fanout 10,100,1000; topics 100,1000)
  --events E          fanout/topics: deliveries aimed for per step (100000)
  --window E          fanout/topics: undelivered events allowed in flight; writes in flight = E / N (2000)
  --storage S         Tessera storage: memory|sqlite (memory; sqlite when --concern PERSISTED)
  --server-args "..." extra flags for 'tessera serve'
  --repeat R          run each scenario R times and report medians (1)
  --max-seconds S     abort the whole run after S seconds (300; all: 480)
  --baseline-only     skip Tessera          --tessera-only   skip the baseline`

const CONCERNS: ReadonlyArray<WriteConcern> = ["FIRE_AND_FORGET", "MEMORY", "APPLIED", "REPLICATED", "PERSISTED"]
/** Quality bar (bench/README.md): Tessera reaches at least this fraction of the baseline. */
const TARGET_RATIO = 0.5

interface Args {
  readonly scenario: Scenario
  readonly flags: Map<string, string>
}

const BOOLEAN_FLAGS = new Set(["baseline-only", "tessera-only", "help"])

const parseArgs = (argv: ReadonlyArray<string>): Args => {
  let scenario: Args["scenario"] = "all"
  const flags = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg.startsWith("--")) {
      const name = arg.slice(2)
      if (BOOLEAN_FLAGS.has(name)) flags.set(name, "true")
      else {
        const value = argv[++i]
        if (value === undefined) throw new Error(`--${name} needs a value`)
        flags.set(name, value)
      }
    } else if ((SCENARIOS as ReadonlyArray<string>).includes(arg)) scenario = arg as Scenario
    else throw new Error(`unknown argument ${arg}`)
  }
  return { scenario, flags }
}

const intFlag = (flags: Map<string, string>, name: string, fallback: number): number => {
  const raw = flags.get(name)
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`)
  return value
}

const listFlag = (flags: Map<string, string>, name: string, fallback: ReadonlyArray<number>): Array<number> => {
  const raw = flags.get(name)
  if (raw === undefined) return [...fallback]
  const values = raw.split(",").map(Number)
  if (values.some((v) => !Number.isInteger(v) || v <= 0)) throw new Error(`--${name} must list positive integers`)
  return values
}

/** One table row's figures; medians across repeats. */
interface Figures {
  readonly p50: number
  readonly p99: number
  readonly throughput: number
  readonly note: string
}

const combine = (outcomes: ReadonlyArray<Outcome<Figures>>): Outcome<Figures> => {
  const ok = outcomes.flatMap((o) => (o.ok ? [o.result] : []))
  if (ok.length === 0) return outcomes[0] ?? { ok: false, reason: "not run" }
  return {
    ok: true,
    result: {
      p50: median(ok.map((f) => f.p50)),
      p99: median(ok.map((f) => f.p99)),
      throughput: median(ok.map((f) => f.throughput)),
      note: [...new Set(ok.map((f) => f.note).filter((n) => n !== ""))].join("; ")
    }
  }
}

interface Row {
  readonly label: string
  readonly tessera: Outcome<Figures> | undefined
  readonly baseline: Outcome<Figures> | undefined
  /** Rows with a quality-bar target get PASS/FAIL. */
  readonly targeted: boolean
}

const printTable = (title: string, unit: string, rows: ReadonlyArray<Row>): void => {
  const cells = (o: Outcome<Figures> | undefined) =>
    o === undefined ? ["", "", ""] : o.ok ? [formatMs(o.result.p50), formatMs(o.result.p99), formatRate(o.result.throughput)] : ["n/a", "n/a", "n/a"]
  const header = ["case", "tessera p50 ms", "p99 ms", unit, "baseline p50 ms", "p99 ms", unit, "ratio", "note"]
  const body = rows.map((row) => {
    const notes: Array<string> = []
    let ratio = Number.NaN
    if (row.tessera?.ok === true && row.baseline?.ok === true) ratio = row.tessera.result.throughput / row.baseline.result.throughput
    if (row.targeted && Number.isFinite(ratio)) notes.push(`target >=${TARGET_RATIO}x ${ratio >= TARGET_RATIO ? "PASS" : "FAIL"}`)
    for (const [name, o] of [["tessera", row.tessera], ["baseline", row.baseline]] as const) {
      if (o === undefined) continue
      if (!o.ok) notes.push(name === "tessera" ? `n/a (${o.reason})` : `baseline n/a (${o.reason})`)
      else if (o.result.note !== "") notes.push(`${name}: ${o.result.note}`)
    }
    return [row.label, ...cells(row.tessera), ...cells(row.baseline), formatRatio(ratio), notes.join("; ")]
  })
  console.log(`\n${title}`)
  console.log(renderTable([header, ...body]))
}

const main = async (): Promise<void> => {
  const { scenario, flags } = parseArgs(process.argv.slice(2))
  if (flags.has("help")) {
    console.log(USAGE)
    return
  }
  const concern = (flags.get("concern") ?? "MEMORY").toUpperCase() as WriteConcern
  if (!CONCERNS.includes(concern)) throw new Error(`--concern must be one of ${CONCERNS.join("|")}`)
  const storageFlag = flags.get("storage")
  if (storageFlag !== undefined && storageFlag !== "memory" && storageFlag !== "sqlite") {
    throw new Error("--storage must be memory or sqlite")
  }
  const storage: StorageKind = storageFlag ?? (concern === "PERSISTED" ? "sqlite" : "memory")
  const extraArgs = (flags.get("server-args") ?? "").split(/\s+/).filter((a) => a !== "")
  const repeat = intFlag(flags, "repeat", 1)

  const targets: Array<Target> = []
  if (!flags.has("baseline-only")) targets.push(tesseraTarget({ storage, extraArgs }))
  if (!flags.has("tessera-only")) targets.push(baselineTarget())
  // Alternate the order between repeats so a drift in machine load does not always favour the same side.
  const orderFor = (repetition: number) => (repetition % 2 === 0 ? targets : [...targets].reverse())
  const byName = <T>(results: ReadonlyArray<{ name: string; value: T }>, name: string) =>
    results.filter((r) => r.name === name).map((r) => r.value)

  // Safety net on top of the per-step timeouts: never let a run hold the shared machine for long.
  const maxSeconds = intFlag(flags, "max-seconds", scenario === "all" ? 480 : 300)
  setTimeout(() => {
    console.error(`\naborted: run exceeded --max-seconds ${maxSeconds}`)
    process.exit(1)
  }, maxSeconds * 1000).unref()

  const token = await signToken("bench-user")
  const started = performance.now()
  console.log(`tessera bench: ${scenario}, storage ${storage}, repeat ${repeat}, targets ${targets.map((t) => t.name).join(" + ")}`)

  if (scenario === "write" || scenario === "all") {
    const options: WriteOptions = {
      connections: intFlag(flags, "connections", 50),
      batch: intFlag(flags, "batch", 10),
      concern,
      seconds: intFlag(flags, "seconds", 5),
      warmupSeconds: intFlag(flags, "warmup", 1),
      inFlight: intFlag(flags, "in-flight", 1),
      token
    }
    const results: Array<{ name: string; value: Outcome<Figures> }> = []
    for (let r = 0; r < repeat; r++) {
      for (const target of orderFor(r)) {
        const outcome = await runWriteThroughput(target, options)
        const value: Outcome<Figures> = outcome.ok
          ? {
              ok: true,
              result: {
                p50: outcome.result.latency.p50,
                p99: outcome.result.latency.p99,
                throughput: outcome.result.opsPerSecond,
                note: [
                  Number.isFinite(outcome.result.serverCpuUsPerOp) ? `server CPU ${outcome.result.serverCpuUsPerOp.toFixed(1)} us/op` : "",
                  outcome.result.failedOps > 0 ? `${outcome.result.failedOps} failed ops` : "",
                  outcome.result.errors !== "" ? `ERROR ${outcome.result.errors}` : ""
                ].filter((s) => s !== "").join(", ")
              }
            }
          : outcome
        results.push({ name: target.name, value })
      }
    }
    const isDefault = options.connections === 50 && options.batch === 10 && concern === "MEMORY"
    printTable(
      `write: ${options.connections} connections x OP_BATCH of ${options.batch} PUTs, ${concern}, ${options.inFlight} in flight, ${options.seconds} s (latency = batch send -> OP_ACK)`,
      "ops/s",
      [
        {
          label: `${options.connections}x${options.batch}`,
          tessera: targets.some((t) => t.name === "tessera") ? combine(byName(results, "tessera")) : undefined,
          baseline: targets.some((t) => t.name === "baseline") ? combine(byName(results, "baseline")) : undefined,
          targeted: isDefault
        }
      ]
    )
  }

  const wantQuery = scenario === "fanout" || scenario === "all"
  const wantTopics = scenario === "topics" || scenario === "all"
  if (wantQuery || wantTopics) {
    const options: FanoutOptions = {
      queryCounts: wantQuery ? listFlag(flags, "subscribers", [10, 100, 1000]) : [],
      topicCounts: wantTopics ? listFlag(flags, "subscribers", [100, 1000]) : [],
      token,
      eventsPerStep: intFlag(flags, "events", 100_000),
      minWrites: 100,
      maxWrites: 5000,
      inFlightEvents: intFlag(flags, "window", 2000),
      stepTimeoutSeconds: 15
    }
    const results: Array<{ name: string; value: FanoutRow }> = []
    for (let r = 0; r < repeat; r++) {
      for (const target of orderFor(r)) {
        for (const row of await runFanoutSuite(target, options)) results.push({ name: target.name, value: row })
      }
    }
    const figures = (row: FanoutRow): Outcome<Figures> =>
      row.outcome.ok
        ? {
            ok: true,
            result: {
              p50: row.outcome.result.latency.p50,
              p99: row.outcome.result.latency.p99,
              throughput: row.outcome.result.eventsPerSecond,
              note: [
                row.outcome.result.incomplete > 0 ? `${row.outcome.result.incomplete}/${row.outcome.result.writes} writes not fully delivered` : "",
                row.outcome.result.errors !== "" ? `ERROR ${row.outcome.result.errors}` : ""
              ].filter((s) => s !== "").join(", ")
            }
          }
        : row.outcome
    const rowsOf = (variant: "query" | "topic", counts: ReadonlyArray<number>): Array<Row> =>
      [...new Set(counts)].sort((a, b) => a - b).map((n) => {
        const pick = (name: string) => {
          if (!targets.some((t) => t.name === name)) return undefined
          return combine(byName(results, name).filter((row) => row.variant === variant && row.subscribers === n).map(figures))
        }
        return { label: `N=${n}`, tessera: pick("tessera"), baseline: pick("baseline"), targeted: variant === "query" && n === 100 }
      })
    if (wantQuery) {
      printTable(
        "fanout: 1 writer -> N QUERY_SUB subscribers on one map (events = QUERY_UPDATE deliveries; latency = write sent -> event received)",
        "events/s",
        rowsOf("query", options.queryCounts)
      )
    }
    if (wantTopics) {
      printTable(
        "topics: 1 publisher -> N TOPIC_SUB subscribers (events = TOPIC_MESSAGE deliveries; latency = TOPIC_PUB sent -> message received)",
        "events/s",
        rowsOf("topic", options.topicCounts)
      )
    }
  }
  const newScenario = (name: Scenario) => scenario === name || (scenario === "all" && !flags.has("baseline-only"))
  const seconds = (fallback: number) => intFlag(flags, "seconds", fallback)
  const warmupSeconds = intFlag(flags, "warmup", 1)
  if (newScenario("persist")) {
    const stores = (flags.get("stores") ?? "sqlite,postgres").split(",").filter((s) => s !== "")
    if (stores.some((s) => s !== "sqlite" && s !== "postgres")) throw new Error("--stores must list sqlite and/or postgres")
    await runPersist({
      stores: stores as Array<"sqlite" | "postgres">,
      connections: intFlag(flags, "connections", 50),
      batch: intFlag(flags, "batch", 10),
      seconds: seconds(3),
      warmupSeconds,
      repeat,
      extraArgs,
      token
    })
  }
  if (newScenario("coldstart")) await runColdstart({ records: intFlag(flags, "records", 1_000_000), extraArgs, token })
  if (newScenario("sync")) {
    await runSync({ keys: intFlag(flags, "keys", 100_000), divergent: intFlag(flags, "divergent", 1000), extraArgs, token })
  }
  if (newScenario("locks")) await runLocks({ contenders: intFlag(flags, "contenders", 10), seconds: seconds(2), extraArgs, token })
  if (newScenario("search")) {
    await runSearch({
      docs: intFlag(flags, "docs", 100_000),
      queries: intFlag(flags, "queries", 300),
      connections: intFlag(flags, "connections", 50),
      batch: intFlag(flags, "batch", 10),
      seconds: seconds(3),
      warmupSeconds,
      extraArgs,
      token
    })
  }
  if (newScenario("process")) {
    await runProcess({
      connections: intFlag(flags, "connections", 4),
      inFlight: intFlag(flags, "in-flight", 8),
      seconds: seconds(3),
      warmupSeconds,
      extraArgs,
      token
    })
  }
  console.log(`\ndone in ${((performance.now() - started) / 1000).toFixed(1)} s`)
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error))
    console.error(USAGE)
    process.exit(2)
  }
)
