import { describe, expect, it } from "@effect/vitest"
import { Context, Effect } from "effect"
import { Counters } from "../../src/layers/Counters.js"
import { WriteBehind } from "../../src/layers/storage/write-behind.js"
import { buildCoordination, connect, disconnect, durableMemoryStorage, makeTestCluster, settle } from "./support.js"

const wire = (p: Record<string, number>, n: Record<string, number>) => ({ p, n, positive: p, negative: n })

// The CRDT laws of the merge (commutative, associative, idempotent) are property-tested in
// test/crdt/pn-counter.test.ts; these tests cover the subsystem around it.
describe("Counters (unit)", () => {
  it.scoped("request answers the current state and subscribes; sync merges and updates every subscriber", () =>
    Effect.gen(function* () {
      const cluster = yield* makeTestCluster()
      const ctx = yield* buildCoordination({ cluster: cluster.layer })
      const counters = Context.get(ctx, Counters)
      const [a, b, c] = connect(ctx, "a", "b", "c")
      yield* counters.request(a!.connection, { name: "likes" })
      expect(a!.sent).toEqual([{ type: "COUNTER_RESPONSE", payload: { name: "likes", state: wire({}, {}) } }])

      // The client's shape in, all four keys out.
      yield* counters.sync(b!.connection, { name: "likes", state: { positive: { b: 3 }, negative: { b: 1 } } })
      const update1 = { type: "COUNTER_UPDATE", payload: { name: "likes", state: wire({ b: 3 }, { b: 1 }) } }
      expect(a!.sent.at(-1)).toEqual(update1)
      expect(b!.sent).toEqual([update1])
      expect(c!.sent).toEqual([])
      expect(cluster.broadcasts).toEqual([{ _tag: "CounterState", name: "likes", p: { b: 3 }, n: { b: 1 } }])

      // The schema's shape, a stale entry: per-node max.
      yield* counters.sync(c!.connection, { name: "likes", state: { p: { b: 2, c: 5 } } })
      const update2 = { type: "COUNTER_UPDATE", payload: { name: "likes", state: wire({ b: 3, c: 5 }, { b: 1 }) } }
      for (const x of [a!, b!, c!]) expect(x.sent.at(-1)).toEqual(update2)

      // An idempotent resend changes nothing: still answered, not re-broadcast to other nodes.
      yield* counters.sync(c!.connection, { name: "likes", state: { p: { b: 3, c: 5 }, n: { b: 1 } } })
      expect(c!.sent.at(-1)).toEqual(update2)
      expect(cluster.broadcasts).toHaveLength(2)

      yield* counters.request(c!.connection, { name: "likes" })
      expect(c!.sent.at(-1)).toEqual({ type: "COUNTER_RESPONSE", payload: { name: "likes", state: wire({ b: 3, c: 5 }, { b: 1 }) } })
    }))

  it.scoped("invalid state → ERROR 400; permissions READ/PUT on counter:<name>", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination({
        settings: { securityPolicies: [{ role: "USER", mapNamePattern: "counter:ro", actions: ["READ"] }] }
      })
      const counters = Context.get(ctx, Counters)
      const [a] = connect(ctx, "a")
      yield* counters.request(a!.connection, { name: "secret" })
      yield* counters.sync(a!.connection, { name: "ro", state: { p: { a: 1 } } })
      yield* counters.request(a!.connection, { name: "ro" })
      expect(a!.sent).toEqual([
        { type: "ERROR", payload: { code: 403, message: "Access Denied for counter secret" } },
        { type: "ERROR", payload: { code: 403, message: "Access Denied for counter ro" } },
        { type: "COUNTER_RESPONSE", payload: { name: "ro", state: wire({}, {}) } }
      ])

      const ctx2 = yield* buildCoordination()
      const counters2 = Context.get(ctx2, Counters)
      const [b] = connect(ctx2, "b")
      yield* counters2.sync(b!.connection, { name: "x", state: { p: 5 } })
      yield* counters2.sync(b!.connection, { name: "x", state: null })
      expect(b!.sent).toEqual([
        { type: "ERROR", payload: { code: 400, message: "Invalid counter state" } },
        { type: "ERROR", payload: { code: 400, message: "Invalid counter state" } }
      ])
      expect(counters2.state("x")).toEqual({ p: {}, n: {} })
    }))

  it.scoped("states from other nodes merge in and reach local subscribers only when they change something", () =>
    Effect.gen(function* () {
      const cluster = yield* makeTestCluster()
      const ctx = yield* buildCoordination({ cluster: cluster.layer })
      const counters = Context.get(ctx, Counters)
      const [a] = connect(ctx, "a")
      yield* counters.request(a!.connection, { name: "k" })
      yield* settle
      yield* cluster.inject("node-b", { _tag: "CounterState", name: "k", p: { x: 4 }, n: {} })
      yield* cluster.inject("node-b", { _tag: "CounterState", name: "k", p: { x: 2 }, n: {} })
      yield* settle
      expect(a!.ofType("COUNTER_UPDATE")).toEqual([{ type: "COUNTER_UPDATE", payload: { name: "k", state: wire({ x: 4 }, {}) } }])
      expect(cluster.broadcasts).toEqual([])
      expect(counters.state("k")).toEqual({ p: { x: 4 }, n: {} })
    }))

  it.scoped("subscriptions end on disconnect", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination()
      const counters = Context.get(ctx, Counters)
      const [a, b] = connect(ctx, "a", "b")
      yield* counters.request(a!.connection, { name: "k" })
      yield* counters.sync(b!.connection, { name: "k", state: { p: { b: 1 } } })
      expect(counters.subscriberCount("k")).toBe(2)
      yield* disconnect(ctx, a!)
      expect(counters.subscriberCount("k")).toBe(1)
      yield* disconnect(ctx, b!)
      expect(counters.subscriberCount("k")).toBe(0)
      expect(counters.state("k")).toEqual({ p: { b: 1 }, n: {} }) // the state itself stays
    }))

  it.live("merged states survive a restart on durable storage", () =>
    Effect.gen(function* () {
      const storage = durableMemoryStorage()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* buildCoordination({ storage })
          const counters = Context.get(ctx, Counters)
          const [a] = connect(ctx, "a")
          yield* counters.sync(a!.connection, { name: "k", state: { positive: { a: 7 }, negative: { a: 2 } } })
          yield* counters.sync(a!.connection, { name: "other", state: { p: { z: 1 } } })
          yield* Context.get(ctx, WriteBehind).flush
        })
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* buildCoordination({ storage })
          const counters = Context.get(ctx, Counters)
          expect(counters.state("k")).toEqual({ p: { a: 7 }, n: { a: 2 } })
          expect(counters.state("other")).toEqual({ p: { z: 1 }, n: {} })
          const [b] = connect(ctx, "b")
          yield* counters.request(b!.connection, { name: "k" })
          expect(b!.sent).toEqual([{ type: "COUNTER_RESPONSE", payload: { name: "k", state: wire({ a: 7 }, { a: 2 }) } }])
        })
      )
    }))
})
