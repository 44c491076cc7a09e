import { Effect, Stream } from "effect"
import { encodeMessage } from "../protocol/codec.js"
import { Cluster } from "./Cluster.js"
import { type Connection, Connections } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { Security } from "./Security.js"

/** protocol.md §1.6: topic subscriptions per connection. */
export const MAX_TOPIC_SUBSCRIPTIONS = 100
/** protocol.md §1.6: topic names are 1–256 characters of this alphabet. */
export const MAX_TOPIC_NAME_LENGTH = 256
const TOPIC_NAME = /^[A-Za-z0-9_\-.:/]+$/

export const isValidTopicName = (topic: unknown): topic is string =>
  typeof topic === "string" && topic.length > 0 && topic.length <= MAX_TOPIC_NAME_LENGTH && TOPIC_NAME.test(topic)

export interface TopicPayload {
  readonly topic: string
}
export interface TopicPubPayload {
  readonly topic: string
  readonly data?: unknown
}

/**
 * Topics (pub/sub; protocol.md §3.7, behavior.md §3.18). Nothing is stored: a publish is encoded once
 * and the same frame is enqueued to every local subscriber except the publisher, then broadcast to the
 * other nodes, which deliver it to their own subscribers without re-forwarding. `sendEncoded` only
 * enqueues, so a slow subscriber never slows the publisher (Sessions closes it past its backlog limit).
 */
export class Topics extends Effect.Service<Topics>()("tessera/Topics", {
  scoped: Effect.gen(function* () {
    const connections = yield* Connections
    const security = yield* Security
    const cluster = yield* Cluster
    const { wallMillis } = yield* Hlc

    /** topic → connection id → subscriber. */
    const subscribers = new Map<string, Map<string, Connection>>()
    /** connection id → its topics (limit check and disconnect cleanup). */
    const topicsOf = new Map<string, Set<string>>()

    const error = (connection: Connection, code: number, message: string): void =>
      connection.send({ type: "ERROR", payload: { code, message } })

    const removeSubscription = (connectionId: string, topic: string): void => {
      const subs = subscribers.get(topic)
      if (subs === undefined) return
      subs.delete(connectionId)
      if (subs.size === 0) subscribers.delete(topic)
    }

    /** Encodes once and enqueues the same bytes to every local subscriber but `excludeId`. */
    const deliver = (topic: string, data: unknown, publisherId: string | undefined, excludeId: string | undefined): void => {
      const subs = subscribers.get(topic)
      if (subs === undefined) return
      if (subs.size === 1 && excludeId !== undefined && subs.has(excludeId)) return
      const payload: Record<string, unknown> = { topic, data, timestamp: wallMillis() }
      if (publisherId !== undefined) payload.publisherId = publisherId
      const frame = encodeMessage({ type: "TOPIC_MESSAGE", payload })
      for (const [id, subscriber] of subs) {
        if (id !== excludeId) subscriber.sendEncoded(frame)
      }
    }

    const subscribe = (connection: Connection, payload: TopicPayload): Effect.Effect<void> =>
      Effect.sync(() => {
        const { topic } = payload
        if (!isValidTopicName(topic)) return error(connection, 400, "Invalid topic name")
        if (!security.checkPermission(connection.principal!, `topic:${topic}`, "READ")) {
          return error(connection, 403, `Access Denied for topic ${topic}`)
        }
        // Disconnect cleanup already ran for this connection: a late subscription would never be removed.
        if (connections.get(connection.id) !== connection) return
        let mine = topicsOf.get(connection.id)
        if (mine?.has(topic)) return // idempotent
        if (mine !== undefined && mine.size >= MAX_TOPIC_SUBSCRIPTIONS) return error(connection, 400, "Subscription limit reached")
        if (mine === undefined) topicsOf.set(connection.id, mine = new Set())
        mine.add(topic)
        let subs = subscribers.get(topic)
        if (subs === undefined) subscribers.set(topic, subs = new Map())
        subs.set(connection.id, connection)
      })

    const unsubscribe = (connection: Connection, payload: TopicPayload): Effect.Effect<void> =>
      Effect.sync(() => {
        const mine = topicsOf.get(connection.id)
        if (mine === undefined || !mine.delete(payload.topic)) return
        if (mine.size === 0) topicsOf.delete(connection.id)
        removeSubscription(connection.id, payload.topic)
      })

    const publish = (connection: Connection, payload: TopicPubPayload): Effect.Effect<void> =>
      Effect.suspend(() => {
        const { topic } = payload
        if (!isValidTopicName(topic)) {
          error(connection, 400, "Invalid topic name")
          return Effect.void
        }
        if (!security.checkPermission(connection.principal!, `topic:${topic}`, "PUT")) {
          error(connection, 403, `Access Denied for topic ${topic}`)
          return Effect.void
        }
        // The client strips an `undefined` value, so absent data is nil.
        const data = payload.data === undefined ? null : payload.data
        deliver(topic, data, connection.id, connection.id)
        return cluster.broadcast({ _tag: "TopicPublish", topic, data, publisherId: connection.id })
      })

    connections.onDisconnect(20, (connection) =>
      Effect.sync(() => {
        const mine = topicsOf.get(connection.id)
        if (mine === undefined) return
        topicsOf.delete(connection.id)
        for (const topic of mine) removeSubscription(connection.id, topic)
      })
    )

    // Publishes from other nodes: deliver locally (the publisher is remote, so nobody is excluded by
    // connection; its id is still passed so an id collision can never echo back).
    yield* cluster.inbound.pipe(
      Stream.runForEach(({ from, message }) =>
        Effect.sync(() => {
          if (message._tag !== "TopicPublish" || from === cluster.nodeId) return
          if (!isValidTopicName(message.topic)) return
          deliver(message.topic, message.data, message.publisherId, message.publisherId)
        })
      ),
      Effect.catchAllCause((cause) => Effect.logWarning("topic inbound stream failed", cause)),
      Effect.annotateLogs({ fiber: "topics-inbound" }),
      Effect.forkScoped
    )

    return {
      subscribe,
      unsubscribe,
      publish,
      /** Number of local subscribers of `topic` (metrics, tests). */
      subscriberCount: (topic: string): number => subscribers.get(topic)?.size ?? 0,
      /** The topics `connectionId` is subscribed to (tests). */
      topicsOf: (connectionId: string): ReadonlySet<string> => topicsOf.get(connectionId) ?? new Set()
    } as const
  })
}) {}
