/**
 * In-process cost of the write path, without sockets: 10-op OP_BATCH payloads through
 * `Operations.processOps` (validation, apply, change fan-out, ack results), against the bare CRDT
 * merge of the same records. Shows how much of a write's cost is orchestration vs. data structure.
 *   node dist/bench/write-path.js [--batches N]
 */
import { Context, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import { LWWMap } from "../src/crdt/lww-map.js"
import { anonymousPrincipal } from "../src/layers/Auth.js"
import { Operations } from "../src/layers/Operations.js"
import { defaultSettings } from "../src/layers/ServerConfig.js"
import { serverLayer } from "../src/programs/server.js"

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}

const batches = arg("batches", 20_000)
const batch = (b: number) =>
  Array.from({ length: 10 }, (_, i) => ({
    id: String(b * 10 + i),
    mapName: "bench",
    key: `k${(b * 10 + i) % 10_000}`,
    opType: "PUT",
    record: { value: { title: "some title", n: i }, timestamp: { millis: Date.now(), counter: b * 10 + i, nodeId: "bench-client" } }
  }))

const main = Effect.gen(function* () {
  const scope = yield* Scope.make()
  const layer = serverLayer({ ...defaultSettings, port: 0, host: "127.0.0.1", storage: "memory", nodeId: "bench" }).pipe(
    Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
  )
  const context = yield* Layer.buildWithScope(layer, scope)
  const operations = Context.get(context, Operations)
  const inputs = Array.from({ length: batches }, (_, b) => batch(b))

  const source = { principal: anonymousPrincipal, origin: "client" as const }
  const t0 = performance.now()
  for (const ops of inputs) {
    const outcome = yield* operations.processOps(source, ops, undefined, undefined)
    yield* outcome.results
  }
  const pipeline = performance.now() - t0

  const map = new LWWMap()
  const storedAt = { millis: 0, counter: 0, nodeId: "bench" }
  const t1 = performance.now()
  for (const ops of inputs) for (const op of ops) map.merge(op.key, op.record, storedAt)
  const bare = performance.now() - t1

  const perBatch = (ms: number) => `${((ms * 1000) / batches).toFixed(1)} µs`
  console.log(`write path, ${batches} batches x 10 ops (memory storage, no sockets)`)
  console.log(`  processOps + ack results   ${perBatch(pipeline)} per batch  (${Math.round((batches * 10) / (pipeline / 1000))} ops/s)`)
  console.log(`  bare LWWMap.merge          ${perBatch(bare)} per batch`)
  yield* Scope.close(scope, Exit.void)
})

Effect.runPromise(main).then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
