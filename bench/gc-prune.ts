/**
 * GC pass benchmark: `node dist/bench/gc-prune.js [--records N] [--tombstones F] [--durable] [--or]`.
 *
 * Fills one map with N records (default 1 000 000) of which a fraction F (default 0.1) are tombstones
 * stored before the safe point, then runs one prune (`Gc.pruneNow`) on the real runtime and reports
 * the total time and the longest event-loop stall during the pass, measured two ways: the maximum
 * of `perf_hooks.monitorEventLoopDelay` and the longest gap between 1 ms timer ticks. Target: stall
 * < 50 ms. `--repeat R` (default 3) re-creates the same tombstones after each pass and prunes again,
 * reporting the median and the worst pass (on a shared machine a single pass can be descheduled). `--durable` puts the write-behind queue and a merge-aware in-memory store behind the map, so
 * the storage deletes are submitted (and written) as in production; `--or` uses an OR map instead of
 * an LWW map (N records, N·F of them removed, i.e. tombstoned tags).
 */
import { monitorEventLoopDelay } from "node:perf_hooks"
import { Context, Effect, Layer } from "effect"
import type { Timestamp } from "../src/crdt/types.js"
import { Changes } from "../src/layers/Changes.js"
import { Cluster } from "../src/layers/Cluster.js"
import { Connections } from "../src/layers/Connections.js"
import { Gc } from "../src/layers/Gc.js"
import { Hlc } from "../src/layers/Hlc.js"
import { Maps } from "../src/layers/Maps.js"
import { ServerConfig } from "../src/layers/ServerConfig.js"
import { Storage } from "../src/layers/Storage.js"
import { makeMemoryStorage } from "../src/layers/storage/memory.js"
import { WriteBehind, WriteBehindConfig } from "../src/layers/storage/write-behind.js"

interface Options {
  readonly repeat: number
  readonly records: number
  readonly tombstones: number
  readonly durable: boolean
  readonly or: boolean
}

const parse = (argv: ReadonlyArray<string>): Options => {
  let records = 1_000_000
  let tombstones = 0.1
  let durable = false
  let or = false
  let repeat = 3
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === "--records") records = Number(argv[++i])
    else if (arg === "--tombstones") tombstones = Number(argv[++i])
    else if (arg === "--durable") durable = true
    else if (arg === "--or") or = true
    else if (arg === "--repeat") repeat = Number(argv[++i])
    else throw new Error(`unknown argument ${arg}\nusage: node dist/bench/gc-prune.js [--records N] [--tombstones F] [--durable] [--or] [--repeat R]`)
  }
  if (!Number.isInteger(records) || records <= 0) throw new Error("--records must be a positive integer")
  if (!(tombstones >= 0 && tombstones <= 1)) throw new Error("--tombstones must be in [0, 1]")
  if (!Number.isInteger(repeat) || repeat <= 0) throw new Error("--repeat must be a positive integer")
  return { records, tombstones, durable, or, repeat }
}

const stamp = (millis: number, counter: number): Timestamp => ({ millis, counter, nodeId: "bench" })

const run = (options: Options) =>
  Effect.gen(function* () {
    const storage = options.durable ? { ...makeMemoryStorage(), kind: "sqlite" as const, durable: true } : makeMemoryStorage()
    const layer = Gc.Default.pipe(
      Layer.provideMerge(Maps.Default),
      Layer.provideMerge(WriteBehind.Default),
      Layer.provideMerge(Layer.mergeAll(Layer.succeed(Storage, storage), WriteBehindConfig.layer())),
      Layer.provideMerge(Layer.mergeAll(Hlc.Default, Changes.Default, Connections.Default, Cluster.layerSingleNode)),
      Layer.provideMerge(ServerConfig.layer({ nodeId: "bench", gcIntervalMs: 3_600_000, gcAgeMs: 0, ttlSweepIntervalMs: 3_600_000 }))
    )
    const context = yield* Layer.build(layer)
    const gc = Context.get(context, Gc)
    const maps = Context.get(context, Maps)
    const state = yield* Effect.orDie(maps.get("bench"))

    // Fill directly through the CRDT (setup is not measured); tombstones are spread over the key space.
    const fillStart = performance.now()
    const every = options.tombstones > 0 ? Math.round(1 / options.tombstones) : Number.POSITIVE_INFINITY
    let expected = 0
    if (options.or) {
      state.type = "OR"
      for (let i = 0; i < options.records; i++) {
        const tag = `1000:${i}:bench`
        state.or.apply(`k${i}`, { value: { n: i }, timestamp: stamp(1000, i), tag }, stamp(1000, i))
        if (i % every === 0) {
          state.or.applyTombstone(tag, stamp(2000, i))
          expected++
        }
      }
      void state.or.merkle.rootHash // bring the tree up to date outside the measurement
    } else {
      state.type = "LWW"
      for (let i = 0; i < options.records; i++) {
        const tombstone = i % every === 0
        if (tombstone) expected++
        state.lww.merge(`k${i}`, { value: tombstone ? null : { n: i }, timestamp: stamp(1000, i) }, stamp(1000, i))
      }
    }
    const fillMs = performance.now() - fillStart

    /** Pass `n` > 0: the pruned tombstones come back (same keys / tags, stored before the next safe point). */
    const recreate = (pass: number) => {
      for (let i = 0; i < options.records; i += every) {
        if (options.or) state.or.applyTombstone(`1000:${i}:bench`, stamp(2000 + pass, i))
        else state.lww.merge(`k${i}`, { value: null, timestamp: stamp(2000 + pass, i) }, stamp(2000 + pass, i))
      }
    }

    const passes: Array<{ readonly pruneMs: number; readonly histogramMs: number; readonly tickGapMs: number; readonly pruned: number }> = []
    for (let pass = 0; pass < options.repeat; pass++) {
      if (pass > 0) recreate(pass)
      const before = yield* gc.status
      // Stall measurement: event-loop delay histogram plus the longest gap between 1 ms ticks.
      const histogram = monitorEventLoopDelay({ resolution: 1 })
      let lastTick = performance.now()
      let longestGap = 0
      const ticker = setInterval(() => {
        const now = performance.now()
        if (now - lastTick > longestGap) longestGap = now - lastTick
        lastTick = now
      }, 1)
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20))) // let the ticker settle
      longestGap = 0
      lastTick = performance.now()
      histogram.enable()
      const start = performance.now()
      yield* gc.pruneNow(stamp(1_000_000 + pass, 0))
      const pruneMs = performance.now() - start
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5))) // one more tick after the pass
      histogram.disable()
      clearInterval(ticker)
      const after = yield* gc.status
      const pruned = options.or ? after.prunedOr - before.prunedOr : after.prunedLww - before.prunedLww
      passes.push({ pruneMs, histogramMs: histogram.max / 1e6, tickGapMs: longestGap, pruned })
    }

    let persistMs = 0
    if (options.durable) {
      const flushStart = performance.now()
      yield* Context.get(context, WriteBehind).flush
      persistMs = performance.now() - flushStart
    }
    return { map: options.or ? "OR" : "LWW", records: options.records, tombstones: expected, fillMs, passes, persistMs }
  })

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)]!
}

const main = async () => {
  const options = parse(process.argv.slice(2))
  const result = await Effect.runPromise(Effect.scoped(run(options)))
  const stalls = result.passes.map((p) => Math.max(p.histogramMs, p.tickGapMs))
  const stall = median(stalls)
  const fmt = (values: ReadonlyArray<number>) => values.map((v) => v.toFixed(1)).join(", ")
  console.log([
    `GC pass over ${result.records.toLocaleString("en")} ${result.map} records, ${result.tombstones.toLocaleString("en")} tombstones${options.durable ? " (durable: storage deletes submitted)" : ""}, ${options.repeat} passes`,
    `  setup (fill)          ${result.fillMs.toFixed(0)} ms`,
    `  prune total           median ${median(result.passes.map((p) => p.pruneMs)).toFixed(1)} ms  (passes: ${fmt(result.passes.map((p) => p.pruneMs))})`,
    `  longest stall         median ${stall.toFixed(1)} ms, worst ${Math.max(...stalls).toFixed(1)} ms  (per pass max(event-loop delay, 1 ms tick gap): ${fmt(stalls)})  target < 50 ms: ${stall < 50 ? "PASS" : "FAIL"}`,
    ...(options.durable ? [`  storage catch-up      ${result.persistMs.toFixed(0)} ms (write-behind flush after the passes)`] : [])
  ].join("\n"))
  const wrong = result.passes.find((p) => p.pruned !== result.tombstones)
  if (wrong !== undefined) {
    console.error(`expected ${result.tombstones} pruned per pass, got ${wrong.pruned}`)
    process.exitCode = 1
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
