import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, TestClock } from "effect"
import { isValidTopicName, Topics } from "../../src/layers/Topics.js"
import { buildCoordination, connect, disconnect, makeTestCluster, settle } from "./support.js"

describe("Topics (unit)", () => {
  it.scoped("publish encodes once, reaches every subscriber but the publisher, stamps the Effect clock", () =>
    Effect.gen(function* () {
      const cluster = yield* makeTestCluster()
      const ctx = yield* buildCoordination({ cluster: cluster.layer })
      const topics = Context.get(ctx, Topics)
      const [pub, s1, s2, other] = connect(ctx, "pub", "s1", "s2", "other")
      for (const c of [pub!, s1!, s2!]) yield* topics.subscribe(c.connection, { topic: "news" })
      yield* topics.subscribe(other!.connection, { topic: "sport" })
      yield* TestClock.adjust(1234)
      yield* topics.publish(pub!.connection, { topic: "news", data: { n: 1 } })
      yield* topics.publish(pub!.connection, { topic: "news" }) // absent data → null

      expect(pub!.sent).toEqual([])
      expect(other!.sent).toEqual([])
      for (const s of [s1!, s2!]) {
        expect(s.sent).toEqual([
          { type: "TOPIC_MESSAGE", payload: { topic: "news", data: { n: 1 }, publisherId: "pub", timestamp: 1234 } },
          { type: "TOPIC_MESSAGE", payload: { topic: "news", data: null, publisherId: "pub", timestamp: 1234 } }
        ])
      }
      // The very same bytes went to both subscribers.
      expect(s1!.frames[0]).toBe(s2!.frames[0])
      expect(cluster.broadcasts).toEqual([
        { _tag: "TopicPublish", topic: "news", data: { n: 1 }, publisherId: "pub" },
        { _tag: "TopicPublish", topic: "news", data: null, publisherId: "pub" }
      ])
    }))

  it.scoped("publishes from other nodes reach local subscribers (and are not re-broadcast)", () =>
    Effect.gen(function* () {
      const cluster = yield* makeTestCluster()
      const ctx = yield* buildCoordination({ cluster: cluster.layer })
      const topics = Context.get(ctx, Topics)
      const [s1] = connect(ctx, "s1")
      yield* topics.subscribe(s1!.connection, { topic: "t" })
      yield* settle
      yield* cluster.inject("node-b", { _tag: "TopicPublish", topic: "t", data: [1, 2], publisherId: "remote-conn" })
      yield* cluster.inject("node-b", { _tag: "TopicPublish", topic: "unrelated", data: 1, publisherId: "remote-conn" })
      // An echo of our own broadcast is ignored.
      yield* cluster.inject("test-node", { _tag: "TopicPublish", topic: "t", data: "echo", publisherId: "x" })
      yield* settle
      expect(s1!.sent).toEqual([{ type: "TOPIC_MESSAGE", payload: { topic: "t", data: [1, 2], publisherId: "remote-conn", timestamp: 0 } }])
      expect(cluster.broadcasts).toEqual([])
    }))

  it.scoped("validation, permissions, limit, idempotence, unsubscribe and disconnect", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination({
        settings: { securityPolicies: [{ role: "USER", mapNamePattern: "topic:open*", actions: ["READ"] }] }
      })
      const topics = Context.get(ctx, Topics)
      const [a, b] = connect(ctx, "a", "b")
      yield* topics.subscribe(a!.connection, { topic: "bad name" })
      yield* topics.subscribe(a!.connection, { topic: "closed" })
      yield* topics.publish(a!.connection, { topic: "open-1", data: 1 }) // READ only: publish denied
      yield* topics.publish(a!.connection, { topic: "", data: 1 })
      expect(a!.sent).toEqual([
        { type: "ERROR", payload: { code: 400, message: "Invalid topic name" } },
        { type: "ERROR", payload: { code: 403, message: "Access Denied for topic closed" } },
        { type: "ERROR", payload: { code: 403, message: "Access Denied for topic open-1" } },
        { type: "ERROR", payload: { code: 400, message: "Invalid topic name" } }
      ])
      a!.sent.length = 0

      for (let i = 0; i < 100; i++) yield* topics.subscribe(a!.connection, { topic: `open-${i}` })
      yield* topics.subscribe(a!.connection, { topic: "open-5" }) // already subscribed: no error
      expect(a!.sent).toEqual([])
      yield* topics.subscribe(a!.connection, { topic: "open-100" })
      expect(a!.sent).toEqual([{ type: "ERROR", payload: { code: 400, message: "Subscription limit reached" } }])
      yield* topics.unsubscribe(a!.connection, { topic: "open-0" })
      yield* topics.unsubscribe(a!.connection, { topic: "never" })
      yield* topics.subscribe(a!.connection, { topic: "open-100" })
      expect(a!.sent).toHaveLength(1)
      expect(topics.topicsOf("a").size).toBe(100)
      expect(topics.subscriberCount("open-0")).toBe(0)

      yield* topics.subscribe(b!.connection, { topic: "open-7" })
      expect(topics.subscriberCount("open-7")).toBe(2)
      yield* disconnect(ctx, a!)
      expect(topics.subscriberCount("open-7")).toBe(1)
      expect(topics.topicsOf("a").size).toBe(0)
      expect(topics.subscriberCount("open-100")).toBe(0)
    }))

  it("topic name rules", () => {
    expect(isValidTopicName("a")).toBe(true)
    expect(isValidTopicName("Chat/room-1.sub_2:x")).toBe(true)
    expect(isValidTopicName("x".repeat(256))).toBe(true)
    expect(isValidTopicName("x".repeat(257))).toBe(false)
    expect(isValidTopicName("")).toBe(false)
    expect(isValidTopicName("a b")).toBe(false)
    expect(isValidTopicName("ä")).toBe(false)
    expect(isValidTopicName("a\n")).toBe(false)
  })
})
