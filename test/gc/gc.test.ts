/**
 * One node, TestClock only: TTL sweep, pruning by the safe point, GC_PRUNE, storage, commit validation,
 * failure recovery and scope-bound fibers.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option, PubSub, Scope, Stream, SubscriptionRef, TestClock } from "effect"
import { LWWMap } from "../../src/crdt/lww-map.js"
import { type Change, ChangeStage } from "../../src/layers/Changes.js"
import { Cluster, type ClusterMessage, type ClusterService, type Inbound, type Membership } from "../../src/layers/Cluster.js"
import { GC_HORIZON_META_KEY, type GcEvent } from "../../src/layers/Gc.js"
import { Queries } from "../../src/layers/Queries.js"
import { Security } from "../../src/layers/Security.js"
import { buildNode, durableMemory, fakeConnection, type Node, nodeFromContext, nodeLayer, storedLww, ts, writeLww } from "./support.js"

const tombstone = (millis: number) => ({ value: null, timestamp: ts(millis) })

const keysOf = (node: Node, mapName: string) => Array.from(node.maps.peek(mapName)?.lww.keys() ?? []).sort()

describe("TTL sweep", () => {
  it.scoped("turns expired LWW and OR records into tombstones that a live query sees leave", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(10_000)
      const layer = nodeLayer({ nodeId: "srv", settings: { gcIntervalMs: 3_600_000, ttlSweepIntervalMs: 1000 } })
      const context = yield* Layer.build(Queries.Default.pipe(Layer.provide(Security.Default), Layer.provideMerge(layer)))
      const queries = Context.get(context, Queries)
      const node = nodeFromContext("srv", context)
      const changes: Change[] = []
      node.changes.subscribe(ChangeStage.Journal, "test", (c) => changes.push(c))

      yield* writeLww(node, "tasks", "short", { value: { title: "a" }, timestamp: ts(10_000), ttlMs: 1500 })
      yield* writeLww(node, "tasks", "long", { value: { title: "b" }, timestamp: ts(10_000), ttlMs: 60_000 })
      changes.length = 0
      const reader = fakeConnection("reader", ts(10_000))
      node.connections.register(reader)
      yield* queries.subscribe(reader, { queryId: "q", mapName: "tasks", query: {} })
      expect(reader.sent.at(-1)).toMatchObject({ type: "QUERY_RESP", payload: { results: [{ key: "short" }, { key: "long" }] } })

      const bag = yield* Effect.orDie(node.maps.get("bag"))
      node.maps.applyOrAdd(bag, "k", { value: 1, timestamp: ts(10_000), tag: "10000:0:client", ttlMs: 500 }, { origin: "client" })
      node.maps.applyOrAdd(bag, "k", { value: 2, timestamp: ts(10_001), tag: "10001:0:client" }, { origin: "client" })
      changes.length = 0

      yield* TestClock.adjust(1000) // 11 000: the OR record expired at 10 500, "short" not yet (11 500)
      expect(changes.map((c) => [c.eventType, c.key, c.origin])).toEqual([["OR_REMOVE", "k", "ttl"]])
      expect(bag.or.isTombstoned("10000:0:client")).toBe(true)
      expect(bag.or.getRecords("k").map((r) => r.value)).toEqual([2])
      expect(reader.sent.filter((m) => m.type === "QUERY_UPDATE")).toEqual([])

      yield* TestClock.adjust(1000) // 12 000: "short" expired
      expect(Option.getOrThrow(storedLww(node, "tasks", "short")).record).toEqual({
        value: null,
        timestamp: { millis: 11_500, counter: 0, nodeId: "srv" }
      })
      // Already invisible before the sweep (expired records are hidden at once), so `before` is undefined.
      expect(changes.at(-1)).toMatchObject({ eventType: "REMOVE", key: "short", origin: "ttl" })
      expect(reader.sent.filter((m) => m.type === "QUERY_UPDATE").map((m) => m.payload)).toEqual([
        { queryId: "q", key: "short", value: null, changeType: "LEAVE" }
      ])
      expect(Option.getOrThrow(storedLww(node, "tasks", "long")).record.value).toEqual({ title: "b" })
      expect((yield* node.gc.status).ttlExpired).toBe(2)

      // A tombstone is a change only once: later sweeps are quiet.
      const before = changes.length
      yield* TestClock.adjust(3000)
      expect(changes.length).toBe(before)
    }))

  it.scoped("a write that replaced an expired version is not tombstoned", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(5000)
      const node = yield* buildNode({ nodeId: "srv", settings: { gcIntervalMs: 3_600_000 } })
      yield* writeLww(node, "m", "k", { value: 1, timestamp: ts(1000), ttlMs: 100 })
      yield* writeLww(node, "m", "k", { value: 2, timestamp: ts(4000) })
      yield* TestClock.adjust(1000)
      expect(Option.getOrThrow(storedLww(node, "m", "k")).record.value).toBe(2)
    }))
})

describe("pruning (single node: its own leader, a round per tick)", () => {
  it.scoped("prunes tombstones older than the safe point after one interval, younger ones only later", () =>
    Effect.gen(function* () {
      // interval 1000, age 500: the tick at 1000 commits safe = 1000 − 500 = 500.
      const storage = durableMemory()
      const node = yield* buildNode({ nodeId: "srv", settings: { gcIntervalMs: 1000, gcAgeMs: 500 }, storage })
      const client = fakeConnection("c1", ts(0))
      const anonymous = fakeConnection("anon", ts(0), false)
      node.connections.register(client)
      node.connections.register(anonymous)
      yield* writeLww(node, "m", "live", { value: 1, timestamp: ts(0) })
      yield* writeLww(node, "m", "old", tombstone(0)) // stored at 0
      const bag = yield* Effect.orDie(node.maps.get("bag"))
      node.maps.applyOrAdd(bag, "x", { value: 1, timestamp: ts(0), tag: "t-old" }, { origin: "client" })
      node.maps.applyOrTombstone(bag, "x", "t-old", { origin: "client" }) // stored at 0
      node.maps.flushPersistence()
      yield* TestClock.adjust(600)
      yield* writeLww(node, "m", "young", tombstone(600)) // stored at 600
      node.maps.applyOrTombstone(bag, "y", "t-young", { origin: "client" })
      node.maps.flushPersistence()
      // The client keeps being active, so it never holds the safe point back here.
      client.lastActiveHlc = ts(5000)

      yield* TestClock.adjust(399) // 999: no tick yet
      expect(keysOf(node, "m")).toEqual(["live", "old", "young"])

      yield* TestClock.adjust(1) // 1000: safe = 500
      const status = yield* node.gc.status
      expect(status.lastSafeTimestamp).toEqual({ millis: 500, counter: 0, nodeId: "srv" })
      expect(keysOf(node, "m")).toEqual(["live", "young"])
      expect(bag.or.isTombstoned("t-old")).toBe(false)
      expect(bag.or.isTombstoned("t-young")).toBe(true)
      expect(status).toMatchObject({ roundsCompleted: 1, commitsIssued: 1, prunedLww: 1, prunedOr: 1 })
      // The Merkle tree forgot the key: same root as a map that never held it.
      expect(node.maps.peek("m")!.lww.merkle.rootHash).toBe(yield* rootOf([["live", 1, 0], ["young", null, 600]]))
      // GC_PRUNE to the authenticated connection only.
      expect(client.sent).toEqual([{ type: "GC_PRUNE", payload: { olderThan: { millis: 500, counter: 0, nodeId: "srv" } } }])
      expect(anonymous.sent).toEqual([])

      yield* TestClock.adjust(1000) // 2000: safe = 1500, "young" goes too
      expect(keysOf(node, "m")).toEqual(["live"])
      expect(bag.or.tombstoneCount).toBe(0)
      expect(client.sent.length).toBe(2)

      // Storage followed: rows deleted, horizon persisted.
      yield* TestClock.adjust(10)
      const loaded = yield* Effect.orDie(storage.loadMap("m"))
      expect(loaded.lww.map((r) => r.key)).toEqual(["live"])
      expect((yield* Effect.orDie(storage.loadMap("bag"))).orTombstones).toEqual([])
      const horizon = yield* Effect.orDie(storage.getMeta(GC_HORIZON_META_KEY))
      expect(JSON.parse(Option.getOrThrow(horizon))).toEqual({ millis: 1500, counter: 0, nodeId: "srv" })
    }))

  it.scoped("age 0 prunes everything stored before the tick; a lagging client holds the safe point back", () =>
    Effect.gen(function* () {
      const node = yield* buildNode({ nodeId: "srv", settings: { gcIntervalMs: 1000, gcAgeMs: 0 } })
      const lagging = fakeConnection("lag", ts(300, 0, "phone"))
      const unauthenticated = fakeConnection("anon", ts(1, 0, "x"), false) // ignored: not authenticated
      node.connections.register(lagging)
      node.connections.register(unauthenticated)
      yield* TestClock.adjust(200)
      yield* writeLww(node, "m", "a", tombstone(200))
      yield* TestClock.adjust(400)
      yield* writeLww(node, "m", "b", tombstone(600))
      yield* TestClock.adjust(400) // 1000
      expect((yield* node.gc.status).lastSafeTimestamp).toEqual({ millis: 300, counter: 0, nodeId: "phone" })
      expect(keysOf(node, "m")).toEqual(["b"])
      lagging.lastActiveHlc = ts(1500, 0, "phone")
      yield* TestClock.adjust(1000) // 2000: min(own 2000, client 1500) − 0
      expect((yield* node.gc.status).lastSafeTimestamp).toEqual({ millis: 1500, counter: 0, nodeId: "phone" })
      expect(keysOf(node, "m")).toEqual([])
    }))

  it.scoped("closing the layer's scope interrupts the loops: nothing runs afterwards", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const node = yield* buildNode({ nodeId: "srv", settings: { gcIntervalMs: 1000, gcAgeMs: 0, ttlSweepIntervalMs: 1000 } }, scope)
      const client = fakeConnection("c", ts(1_000_000_000))
      node.connections.register(client)
      yield* TestClock.adjust(1000)
      expect((yield* node.gc.status).roundsCompleted).toBe(1)
      yield* writeLww(node, "m", "dead", tombstone(1000))
      yield* writeLww(node, "m", "ttl", { value: 1, timestamp: ts(1000), ttlMs: 1 })

      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("24 hours")
      const status = yield* node.gc.status
      expect(status.roundsCompleted).toBe(1)
      expect(status.ttlExpired).toBe(0)
      expect(keysOf(node, "m")).toEqual(["dead", "ttl"])
      expect(Option.getOrThrow(storedLww(node, "m", "ttl")).record.value).toBe(1)
      expect(client.sent.length).toBe(1)
    }))
})

/** A hand-driven cluster: the test sets the membership and injects inbound messages. */
const manualCluster = (nodeId: string, initial: Membership) =>
  Effect.gen(function* () {
    const view = yield* SubscriptionRef.make(initial)
    const hub = yield* PubSub.unbounded<Inbound>()
    const sent: Array<{ to: string | "*"; message: ClusterMessage }> = []
    let failSends = 0
    const service: ClusterService = {
      nodeId,
      membership: SubscriptionRef.get(view),
      membershipChanges: view.changes,
      send: (to, message) =>
        Effect.suspend(() => {
          if (failSends > 0) {
            failSends--
            return Effect.die(new Error("link down"))
          }
          sent.push({ to, message })
          return Effect.void
        }),
      broadcast: (message) => Effect.sync(() => void sent.push({ to: "*", message })),
      inbound: Stream.fromPubSub(hub)
    }
    return {
      layer: Layer.succeed(Cluster, service),
      sent,
      setView: (next: Membership) => SubscriptionRef.set(view, next),
      deliver: (from: string, message: ClusterMessage) => PubSub.publish(hub, { from, message }),
      failNextSends: (n: number) => {
        failSends = n
      }
    }
  })

const settle = Effect.gen(function* () {
  for (let i = 0; i < 30; i++) yield* Effect.yieldNow()
})

describe("consensus as a member and as a leader (hand-driven cluster)", () => {
  it.scoped("a member reports to the leader and validates commits: leader, epoch, not too new", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(100_000)
      const cluster = yield* manualCluster("b", { members: ["a", "b"], leader: "a", epoch: 3 })
      const node = yield* buildNode({ nodeId: "b", settings: { gcIntervalMs: 1000, gcAgeMs: 10_000 }, cluster: cluster.layer })
      const events: GcEvent[] = []
      node.gc.observe((e) => events.push(e))
      node.connections.register(fakeConnection("c", ts(99_000, 2, "cl")))
      yield* writeLww(node, "m", "k", tombstone(100_000)) // stored at 100 000

      yield* TestClock.adjust(1000)
      expect(cluster.sent).toEqual([{ to: "a", message: { _tag: "GcReport", epoch: 3, minHlc: ts(99_000, 2, "cl") } }])

      const commit = (millis: number, epoch = 3) => ({ _tag: "GcCommit" as const, epoch, safeTimestamp: ts(millis, 0, "x") })
      yield* cluster.deliver("c", commit(90_000)) // not the leader
      yield* cluster.deliver("a", commit(90_000, 2)) // stale epoch
      yield* cluster.deliver("a", commit(91_001)) // now 101 000 − 10 000 = 91 000 < 91 001: too new
      yield* settle
      expect(events.map((e) => e._tag === "Rejected" ? e.error.reason : e._tag)).toEqual(["not-from-leader", "stale-epoch", "too-new"])
      expect(keysOf(node, "m")).toEqual(["k"])

      yield* cluster.deliver("a", commit(91_000))
      yield* cluster.deliver("a", commit(91_000)) // duplicate: no second prune
      yield* settle
      expect(events.filter((e) => e._tag === "Pruned")).toHaveLength(1)
      expect(keysOf(node, "m")).toEqual(["k"]) // stored at 100 000 ≥ safe
      expect((yield* node.gc.status)).toMatchObject({ roundsCompleted: 1, commitsRejected: 3, lastSafeTimestamp: ts(91_000, 0, "x") })
    }))

  it.scoped("the leader waits for every member, forgets members that leave, and drops the round on a new epoch", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(50_000)
      const cluster = yield* manualCluster("a", { members: ["a", "b", "c"], leader: "a", epoch: 1 })
      const node = yield* buildNode({ nodeId: "a", settings: { gcIntervalMs: 1000, gcAgeMs: 1000 }, cluster: cluster.layer })
      const events: GcEvent[] = []
      node.gc.observe((e) => events.push(e))
      const committed = () => events.filter((e) => e._tag === "Committed").map((e) => e._tag === "Committed" ? [e.epoch, e.safeTimestamp.millis] : [])

      yield* TestClock.adjust(1000) // own report at 51 000
      yield* cluster.deliver("b", { _tag: "GcReport", epoch: 1, minHlc: ts(40_000, 0, "b") })
      yield* cluster.deliver("c", { _tag: "GcReport", epoch: 0, minHlc: ts(10_000, 0, "c") }) // old epoch: discarded
      yield* settle
      expect(committed()).toEqual([])
      yield* cluster.deliver("c", { _tag: "GcReport", epoch: 1, minHlc: ts(45_000, 0, "c") })
      yield* settle
      expect(committed()).toEqual([[1, 39_000]])
      expect(cluster.sent.filter((s) => s.to === "*").map((s) => s.message)).toEqual([
        { _tag: "GcCommit", epoch: 1, safeTimestamp: ts(39_000, 0, "b") }
      ])

      // Next round: b reports, c never does; c leaving completes the round.
      yield* TestClock.adjust(1000)
      yield* cluster.deliver("b", { _tag: "GcReport", epoch: 1, minHlc: ts(52_000, 0, "b") })
      yield* settle
      expect(committed()).toHaveLength(1)
      yield* cluster.setView({ members: ["a", "b"], leader: "a", epoch: 1 })
      yield* settle
      expect(committed()).toEqual([[1, 39_000], [1, 51_000]])

      // Reports of the old epoch do not count after a change of epoch.
      yield* TestClock.adjust(1000)
      yield* cluster.setView({ members: ["a", "b"], leader: "a", epoch: 2 })
      yield* cluster.deliver("b", { _tag: "GcReport", epoch: 1, minHlc: ts(53_000, 0, "b") })
      yield* settle
      expect(committed()).toHaveLength(2)
      yield* TestClock.adjust(1000) // own report for epoch 2
      yield* cluster.deliver("b", { _tag: "GcReport", epoch: 2, minHlc: ts(54_000, 0, "b") })
      yield* settle
      expect(committed()).toEqual([[1, 39_000], [1, 51_000], [2, 53_000]])
    }))

  it.scoped("a failing round is logged and the loop goes on", () =>
    Effect.gen(function* () {
      const cluster = yield* manualCluster("b", { members: ["a", "b"], leader: "a", epoch: 1 })
      const node = yield* buildNode({ nodeId: "b", settings: { gcIntervalMs: 1000 }, cluster: cluster.layer })
      cluster.failNextSends(2)
      yield* TestClock.adjust(3000)
      expect((yield* node.gc.status).roundsFailed).toBe(2)
      expect(cluster.sent.map((s) => s.message._tag)).toEqual(["GcReport"])
    }))
})

/** Merkle root of an LWW map holding exactly `rows` ([key, value, millis]). */
const rootOf = (rows: ReadonlyArray<readonly [string, unknown, number]>) =>
  Effect.sync(() => {
    const map = new LWWMap()
    for (const [key, value, millis] of rows) map.merge(key, { value, timestamp: ts(millis) }, ts(millis))
    return map.merkle.rootHash
  })
