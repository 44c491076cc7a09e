/**
 * The PERSISTED wait of the write pipeline (behavior.md §3.10) on the TestClock: the ack comes from the
 * commit callback, from the write-concern timeout, or from the storage failure, exactly once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Layer, TestClock } from "effect"
import { anonymousPrincipal } from "../../src/layers/Auth.js"
import { Changes } from "../../src/layers/Changes.js"
import { Cluster } from "../../src/layers/Cluster.js"
import { Connections } from "../../src/layers/Connections.js"
import { Hlc } from "../../src/layers/Hlc.js"
import { Maps } from "../../src/layers/Maps.js"
import { MetricsRegistry } from "../../src/layers/Metrics.js"
import { type OpResult, Operations } from "../../src/layers/Operations.js"
import { Resolvers } from "../../src/layers/Resolvers.js"
import { Sandbox } from "../../src/layers/Sandbox.js"
import { Security } from "../../src/layers/Security.js"
import { ServerConfig } from "../../src/layers/ServerConfig.js"
import { Storage, StorageError, type StorageService } from "../../src/layers/Storage.js"
import { makeMemoryStorage } from "../../src/layers/storage/memory.js"
import { WriteBehind, WriteBehindConfig } from "../../src/layers/storage/write-behind.js"

const ACK_TIMEOUT = 5000
const PERSIST_TIMEOUT = 1000

/** Durable-looking memory storage whose writes can be held (gate) or made to fail. */
const makeStore = () => {
  const inner = makeMemoryStorage()
  const control = { gate: undefined as Deferred.Deferred<void> | undefined, failing: false, writes: 0 }
  const service: StorageService = {
    ...inner,
    kind: "sqlite",
    durable: true,
    write: (batch) =>
      Effect.gen(function*() {
        if (control.gate !== undefined) yield* Deferred.await(control.gate)
        if (control.failing) return yield* new StorageError({ message: "disk on fire" })
        control.writes++
        yield* inner.write(batch)
      })
  }
  return { service, control, inner }
}

const build = (storage: StorageService) =>
  Layer.build(
    Operations.Default.pipe(
      Layer.provideMerge(Resolvers.Default),
      Layer.provideMerge(Layer.mergeAll(Maps.Default, Sandbox.Default, Security.Default, MetricsRegistry.Default)),
      Layer.provideMerge(WriteBehind.Default),
      Layer.provideMerge(Layer.mergeAll(
        Layer.succeed(Storage, storage),
        WriteBehindConfig.layer({ flushIntervalMs: 5, retryBaseMs: 10, retryMaxMs: 40, persistTimeoutMs: PERSIST_TIMEOUT })
      )),
      Layer.provideMerge(Layer.mergeAll(Hlc.Default, Changes.Default, Connections.Default, Cluster.layerSingleNode)),
      Layer.provideMerge(ServerConfig.layer({ nodeId: "n", writeAckTimeoutMs: ACK_TIMEOUT }))
    )
  ).pipe(Effect.map((ctx) => ({ operations: Context.get(ctx, Operations), metrics: Context.get(ctx, MetricsRegistry) })))

const put = (id: string, key: string, extra: object = {}) => ({
  id,
  mapName: "m",
  key,
  opType: "PUT",
  record: { value: { id }, timestamp: { millis: 0, counter: Number(id.replace(/\D/g, "")), nodeId: "client" } },
  ...extra
})

/** Lets forked fibers (the writer, the timers) run to their next wait without moving the clock. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
})

/** Runs a PERSISTED OP_BATCH and records every delivery of its results. */
const write = (operations: Operations, ops: ReadonlyArray<object>) =>
  Effect.gen(function*() {
    const deliveries: Array<ReadonlyArray<OpResult>> = []
    const outcome = yield* operations.processOps({ principal: anonymousPrincipal, origin: "client" }, ops, "PERSISTED", undefined)
    outcome.whenResults((results) => deliveries.push(results))
    return deliveries
  })

describe("PERSISTED acknowledgements", () => {
  it.scoped("arrive once the batch has committed, not before", () =>
    Effect.gen(function*() {
      const store = makeStore()
      store.control.gate = yield* Deferred.make<void>()
      const { operations } = yield* build(store.service)
      const deliveries = yield* write(operations, [put("1", "a"), put("2", "b")])
      yield* TestClock.adjust(5) // the flush interval: the write starts and is held
      yield* settle
      expect(deliveries).toEqual([])
      yield* Deferred.succeed(store.control.gate, undefined)
      yield* settle
      expect(deliveries).toEqual([[
        { opId: "1", success: true, achievedLevel: "PERSISTED" },
        { opId: "2", success: true, achievedLevel: "PERSISTED" }
      ]])
      expect(store.control.writes).toBe(1)
      yield* TestClock.adjust(ACK_TIMEOUT) // the cancelled timeout stays silent
      expect(deliveries.length).toBe(1)
    }))

  it.scoped("time out at the op's own timeout and the rest commit; one ack for the whole batch", () =>
    Effect.gen(function*() {
      const store = makeStore()
      store.control.gate = yield* Deferred.make<void>()
      const { operations, metrics } = yield* build(store.service)
      const deliveries = yield* write(operations, [put("1", "a", { timeout: 100 }), put("2", "b")])
      yield* TestClock.adjust(99)
      expect(deliveries).toEqual([])
      yield* TestClock.adjust(1)
      expect(deliveries).toEqual([]) // the other op still waits: the batch is acknowledged as a whole
      yield* Deferred.succeed(store.control.gate, undefined)
      yield* settle
      expect(deliveries).toEqual([[
        { opId: "1", success: false, achievedLevel: "REPLICATED", error: "Timeout: achieved REPLICATED, requested PERSISTED" },
        { opId: "2", success: true, achievedLevel: "PERSISTED" }
      ]])
      expect(yield* Effect.promise(() => metrics.registry.metrics())).toMatch(/^topgun_write_ack_timeouts_total 1$/m)
    }))

  it.scoped("time out at the default write-ack timeout while storage hangs", () =>
    Effect.gen(function*() {
      const store = makeStore()
      store.control.gate = yield* Deferred.make<void>()
      const { operations } = yield* build(store.service)
      const deliveries = yield* write(operations, [put("1", "a")])
      yield* TestClock.adjust(ACK_TIMEOUT - 1)
      expect(deliveries).toEqual([])
      yield* TestClock.adjust(1)
      expect(deliveries).toEqual([[{ opId: "1", success: false, achievedLevel: "REPLICATED", error: "Timeout: achieved REPLICATED, requested PERSISTED" }]])
      yield* Deferred.succeed(store.control.gate, undefined)
      yield* settle
      expect(deliveries.length).toBe(1) // the late commit does not acknowledge twice
    }))

  it.scoped("fail with the storage error once the persist timeout has passed while writes fail", () =>
    Effect.gen(function*() {
      const store = makeStore()
      store.control.failing = true
      const { operations } = yield* build(store.service)
      const deliveries = yield* write(operations, [put("1", "a")])
      for (let t = 0; t < PERSIST_TIMEOUT + 100 && deliveries.length === 0; t += 10) {
        yield* TestClock.adjust(10)
        yield* settle
      }
      expect(deliveries).toEqual([[{ opId: "1", success: false, achievedLevel: "REPLICATED", error: "Persistence failed: disk on fire" }]])
      store.control.failing = false // the data is still written once storage recovers
      yield* TestClock.adjust(100)
      yield* settle
      expect((yield* store.inner.loadMap("m")).lww.map((r) => r.key)).toEqual(["a"])
    }))
})
