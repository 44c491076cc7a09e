import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, TestClock } from "effect"
import * as fc from "fast-check"
import type { LWWRecord, Timestamp } from "../../src/crdt/types.js"
import { Storage, StorageError, type StorageMutation, type StorageService } from "../../src/layers/Storage.js"
import { makeMemoryStorage } from "../../src/layers/storage/memory.js"
import { WriteBehind, WriteBehindConfig, type WriteBehindSettings } from "../../src/layers/storage/write-behind.js"

const ts = (millis: number, counter = 0, nodeId = "n"): Timestamp => ({ millis, counter, nodeId })
const put = (key: string, value: unknown, millis: number, mapName = "m"): StorageMutation => {
  const record: LWWRecord = { value, timestamp: ts(millis) }
  return { _tag: "LwwPut", mapName, key, record, storedAt: ts(millis) }
}
const del = (key: string): StorageMutation => ({ _tag: "LwwDelete", mapName: "m", key })

/** A durable-looking store in memory that records batches, can fail its next N writes and can hold writes. */
const makeDouble = (opts: { readonly durable?: boolean } = {}) => {
  const inner = makeMemoryStorage()
  const batches: Array<Array<StorageMutation>> = []
  const control = { failNext: 0, gate: undefined as Deferred.Deferred<void> | undefined, attempts: 0 }
  const service: StorageService = {
    ...inner,
    kind: "sqlite",
    durable: opts.durable ?? true,
    write: (batch) =>
      Effect.gen(function*() {
        control.attempts++
        if (control.gate !== undefined) yield* Deferred.await(control.gate)
        if (control.failNext > 0) {
          control.failNext--
          return yield* new StorageError({ message: "disk on fire" })
        }
        batches.push([...batch])
        yield* inner.write(batch)
      })
  }
  return { service, batches, control, inner }
}

const settings = (overrides: Partial<WriteBehindSettings> = {}) =>
  WriteBehindConfig.layer({ flushIntervalMs: 5, maxBatchSize: 100, retryBaseMs: 10, retryMaxMs: 40, persistTimeoutMs: 1000, ...overrides })

/** Builds WriteBehind over `service` in the test's scope (so it runs on the TestClock). */
const build = (service: StorageService, overrides: Partial<WriteBehindSettings> = {}) =>
  Layer.build(WriteBehind.Default.pipe(Layer.provide(Layer.succeed(Storage, service)), Layer.provide(settings(overrides)))).pipe(
    Effect.map((ctx) => Context.get(ctx, WriteBehind))
  )

/** Lets forked fibers run to their next wait without moving the clock. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
})

describe("WriteBehind", () => {
  it.scoped("batches after the flush interval and coalesces puts of one row", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      const wb = yield* build(d.service)
      yield* wb.submit([put("a", 1, 1), put("b", 1, 1)])
      yield* wb.submit([put("a", 2, 2)])
      yield* wb.submit([put("a", 0, 0)]) // older than the queued version: no effect, as in the store
      yield* wb.submit([{ _tag: "Meta", key: "seq", value: "1" }, { _tag: "Meta", key: "seq", value: "2" }])
      yield* settle
      expect(d.batches).toEqual([])
      yield* TestClock.adjust(5)
      yield* settle
      expect(d.batches).toEqual([[put("a", 2, 2), put("b", 1, 1), { _tag: "Meta", key: "seq", value: "2" }]])
    }))

  it.scoped("never moves a put before a delete of the same row", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      const wb = yield* build(d.service)
      yield* wb.submit([put("k", 1, 1), del("k"), put("k", 2, 2), put("k", 3, 3)])
      yield* wb.submit([
        { _tag: "OrPut", mapName: "o", key: "x", record: { value: 1, timestamp: ts(1), tag: "t" }, storedAt: ts(1) },
        { _tag: "OrPruneTombstone", mapName: "o", tag: "t" },
        { _tag: "OrPut", mapName: "o", key: "x", record: { value: 2, timestamp: ts(2), tag: "t" }, storedAt: ts(2) }
      ])
      yield* TestClock.adjust(5)
      yield* settle
      expect(d.batches.length).toBe(1)
      expect(d.batches[0]!.map((m) => m._tag)).toEqual(["LwwPut", "LwwDelete", "LwwPut", "OrPut", "OrPruneTombstone", "OrPut"])
      expect(d.batches[0]![2]).toEqual(put("k", 3, 3))
      expect((yield* d.inner.loadMap("m")).lww.map((r) => r.record.value)).toEqual([3])
    }))

  it.scoped("tells commit callbacks once, in submit order; a throwing callback does not stop the writer", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      const wb = yield* build(d.service)
      const told: Array<string> = []
      expect(wb.submitThen([], () => told.push("never"))).toBe(false)
      expect(wb.submitThen([put("a", 1, 1)], (failure) => told.push(`a:${failure?.message ?? "ok"}`))).toBe(true)
      expect(wb.submitThen([put("b", 1, 1)], () => {
        throw new Error("callback bug")
      })).toBe(true)
      expect(wb.submitThen([put("c", 1, 1)], (failure) => told.push(`c:${failure?.message ?? "ok"}`))).toBe(true)
      expect(told).toEqual([]) // never synchronously
      yield* TestClock.adjust(5)
      yield* settle
      expect(told).toEqual(["a:ok", "c:ok"])
      expect(d.batches).toHaveLength(1) // committed once, not retried because of the callback
      const next = yield* wb.submit([put("d", 1, 1)])
      yield* TestClock.adjust(5)
      yield* Deferred.await(next)
      expect(d.batches).toHaveLength(2)
    }))

  it.scoped("completes a PERSISTED wait only after its batch commits", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      const wb = yield* build(d.service)
      const gate = yield* Deferred.make<void>()
      d.control.gate = gate
      const persisted = yield* wb.submit([put("k", 1, 1)])
      yield* TestClock.adjust(5)
      yield* settle
      expect(d.control.attempts).toBe(1)
      expect(yield* Deferred.isDone(persisted)).toBe(false)
      // Mutations submitted while a batch is being written go into the next batch.
      const later = yield* wb.submit([put("k", 2, 2)])
      expect((yield* wb.status).queueDepth).toBe(2)
      yield* Deferred.succeed(gate, undefined)
      yield* Deferred.await(persisted)
      expect(d.batches[0]).toEqual([put("k", 1, 1)])
      // Group commit: what queued during a write goes out right after it, without the batching delay.
      yield* Deferred.await(later)
      expect(d.batches).toEqual([[put("k", 1, 1)], [put("k", 2, 2)]])
      expect((yield* wb.status).queueDepth).toBe(0)
      // Coming out of idle, a batch gets the interval to form again.
      const idle = yield* wb.submit([put("j", 1, 1)])
      yield* settle
      expect(d.batches).toHaveLength(2)
      yield* TestClock.adjust(5)
      yield* Deferred.await(idle)
      expect(d.batches).toHaveLength(3)
    }))

  it.scoped("retries a failing store with backoff, reporting unhealthy until a write succeeds", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      const wb = yield* build(d.service)
      d.control.failNext = 3
      const persisted = yield* wb.submit([put("k", 1, 1)])
      yield* TestClock.adjust(5)
      yield* settle
      let status = yield* wb.status
      expect(status).toMatchObject({ healthy: false, queueDepth: 1, failures: 1, lastError: "disk on fire" })
      // The queue keeps accepting while the store fails.
      yield* wb.submit([put("j", 1, 1)])
      expect((yield* wb.status).queueDepth).toBe(2)
      yield* TestClock.adjust(10) // 2nd attempt after 10 ms
      yield* settle
      expect(d.control.attempts).toBe(2)
      yield* TestClock.adjust(20) // 3rd after 20 ms
      yield* settle
      expect(d.control.attempts).toBe(3)
      expect(yield* Deferred.isDone(persisted)).toBe(false)
      yield* TestClock.adjust(40) // 4th succeeds
      yield* settle
      expect(yield* Deferred.await(persisted)).toBeUndefined()
      status = yield* wb.status
      expect(status.healthy).toBe(true)
      expect(status.failures).toBe(3)
      expect(status.consecutiveFailures).toBe(0)
      yield* TestClock.adjust(5)
      yield* settle
      expect(d.batches).toEqual([[put("k", 1, 1)], [put("j", 1, 1)]])
    }))

  it.scoped("caps the backoff and fails waiting callers at their deadline, keeping the data queued", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      const wb = yield* build(d.service, { persistTimeoutMs: 200 })
      d.control.failNext = Number.POSITIVE_INFINITY
      const persisted = yield* wb.submit([put("k", 1, 1)])
      yield* TestClock.adjust(5)
      yield* settle
      for (let i = 0; i < 10; i++) {
        yield* TestClock.adjust(40)
        yield* settle
      }
      // 5 ms + 10 × 40 ms with delays 10, 20, 40, 40, ... → 1 + 1 + 1 + 9 attempts at most.
      expect(d.control.attempts).toBeGreaterThanOrEqual(10)
      const exit = yield* Deferred.await(persisted).pipe(Effect.exit)
      expect(exit).toEqual(Exit.fail(expect.objectContaining({ _tag: "PersistFailed", message: "disk on fire" })))
      expect((yield* wb.status).queueDepth).toBe(1)
      d.control.failNext = 0
      yield* TestClock.adjust(40)
      yield* settle
      expect(d.batches).toEqual([[put("k", 1, 1)]])
      expect((yield* wb.status).healthy).toBe(true)
    }))

  it.scoped("flush drains everything in order, in batches of at most maxBatchSize, without waiting", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      const wb = yield* build(d.service, { maxBatchSize: 5, flushIntervalMs: 60_000 })
      for (let i = 0; i < 12; i++) yield* wb.submit([put(`k${i}`, i, 1)])
      const flushing = yield* Effect.fork(wb.flush)
      yield* Fiber.join(flushing)
      expect(d.batches.map((b) => b.length)).toEqual([5, 5, 2])
      expect(d.batches.flat()).toEqual(Array.from({ length: 12 }, (_, i) => put(`k${i}`, i, 1)))
      expect((yield* wb.status).queueDepth).toBe(0)
      yield* wb.flush // nothing pending: returns at once
    }))

  it.scoped("on a non-durable store, submit hands back a completed wait and still writes", () =>
    Effect.gen(function*() {
      const d = makeDouble({ durable: false })
      const wb = yield* build(d.service)
      const persisted = yield* wb.submit([put("k", 1, 1)])
      expect(yield* Deferred.isDone(persisted)).toBe(true)
      yield* wb.flush
      expect((yield* d.inner.loadMap("m")).lww.map((r) => r.record.value)).toEqual([1])
    }))

  it.scoped("reports unhealthy while the queue is longer than maxQueueLength", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      const wb = yield* build(d.service, { maxQueueLength: 3 })
      yield* wb.submit([put("a", 1, 1), put("b", 1, 1), put("c", 1, 1), put("d", 1, 1)])
      expect(yield* wb.status).toMatchObject({ healthy: false, queueDepth: 4 })
      yield* TestClock.adjust(5)
      yield* settle
      expect(yield* wb.status).toMatchObject({ healthy: true, queueDepth: 0 })
    }))

  it.live("the scope finalizer drains what is queued", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      yield* Effect.scoped(Effect.flatMap(build(d.service, { flushIntervalMs: 60_000 }), (wb) => wb.submit([put("k", 1, 1)])))
      expect(d.batches).toEqual([[put("k", 1, 1)]])
    }))

  it.live("at shutdown, the drain is bounded and callers still waiting are failed", () =>
    Effect.gen(function*() {
      const d = makeDouble()
      d.control.failNext = Number.POSITIVE_INFINITY
      const persisted = yield* Effect.scoped(
        Effect.flatMap(build(d.service, { flushIntervalMs: 1, drainTimeoutMs: 50, persistTimeoutMs: 60_000 }), (wb) => wb.submit([put("k", 1, 1)]))
      )
      const exit = yield* Effect.exit(Deferred.await(persisted))
      expect(exit).toEqual(Exit.fail(expect.objectContaining({ _tag: "PersistFailed", message: "not persisted before shutdown: disk on fire" })))
      expect(d.batches).toEqual([])
    }))

  // Law: whatever the grouping, coalescing and batching, the store ends as if every mutation had been
  // written one by one in submit order.
  it.live("ends in the same state as writing every mutation in order (property)", () =>
    Effect.promise(() => {
      const keys = fc.constantFrom("a", "b", "c")
      const tags = fc.constantFrom("t1", "t2", "t3")
      const stamp = fc.record({ millis: fc.integer({ min: 0, max: 5 }), counter: fc.integer({ min: 0, max: 1 }), nodeId: fc.constantFrom("x", "y") })
      const mutation: fc.Arbitrary<StorageMutation> = fc.oneof(
        fc.record({ key: keys, value: fc.option(fc.integer(), { nil: null }), t: stamp }).map(({ key, t, value }): StorageMutation => ({
          _tag: "LwwPut",
          mapName: "m",
          key,
          record: { value, timestamp: t },
          storedAt: t
        })),
        keys.map((key): StorageMutation => ({ _tag: "LwwDelete", mapName: "m", key })),
        fc.record({ key: keys, tag: tags, value: fc.integer(), t: stamp }).map(({ key, t, tag, value }): StorageMutation => ({
          _tag: "OrPut",
          mapName: "m",
          key,
          record: { value, timestamp: t, tag },
          storedAt: t
        })),
        fc.record({ key: keys, tag: tags }).map(({ key, tag }): StorageMutation => ({ _tag: "OrRemove", mapName: "m", key, tag })),
        fc.record({ tag: tags, t: stamp }).map(({ t, tag }): StorageMutation => ({ _tag: "OrTombstone", mapName: "m", tag, storedAt: t })),
        tags.map((tag): StorageMutation => ({ _tag: "OrPruneTombstone", mapName: "m", tag })),
        fc.record({ key: keys, value: fc.string({ maxLength: 2 }) }).map(({ key, value }): StorageMutation => ({ _tag: "Meta", key, value }))
      )
      const canonical = (s: StorageService) =>
        Effect.gen(function*() {
          const m = yield* s.loadMap("m")
          return {
            lww: [...m.lww].sort((a, b) => a.key.localeCompare(b.key)),
            or: [...m.orRecords].sort((a, b) => `${a.key}/${a.record.tag}`.localeCompare(`${b.key}/${b.record.tag}`)),
            tombstones: [...m.orTombstones].sort((a, b) => a.tag.localeCompare(b.tag)),
            meta: yield* s.metaByPrefix("")
          }
        })
      return fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(mutation, { minLength: 1, maxLength: 6 }), { maxLength: 12 }),
          fc.integer({ min: 1, max: 4 }),
          (groups, maxBatchSize) =>
            Effect.runPromise(Effect.scoped(Effect.gen(function*() {
              const direct = makeMemoryStorage()
              for (const group of groups) for (const m of group) yield* direct.write([m])
              const d = makeDouble()
              const wb = yield* build(d.service, { maxBatchSize, flushIntervalMs: 1 })
              for (const group of groups) yield* wb.submit(group)
              yield* wb.flush
              expect(yield* canonical(d.inner)).toEqual(yield* canonical(direct))
            })))
        ),
        { numRuns: 150 }
      )
    }))
})
