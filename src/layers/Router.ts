import { Effect, Match } from "effect"
import { encodeOpAck } from "../protocol/op-ack.js"
import type { ClientMessage } from "../protocol/schema.js"
import type { Connection } from "./Connections.js"
import { lowestSuccessfulLevel, type OpResult, Operations, type WriteOutcome } from "./Operations.js"
import { Journal } from "./Journal.js"
import { Counters } from "./Counters.js"
import { Locks } from "./Locks.js"
import { Partitions } from "./Partitions.js"
import { Processors } from "./Processors.js"
import { Resolvers } from "./Resolvers.js"
import { Queries } from "./Queries.js"
import { Search } from "./Search.js"
import { ServerConfig } from "./ServerConfig.js"
import { Sync } from "./Sync.js"
import { Topics } from "./Topics.js"

/** The two write messages, which share one pipeline and a synchronous fast path. */
export type WriteMessage = Extract<ClientMessage, { type: "CLIENT_OP" | "OP_BATCH" }>

/**
 * The single exhaustive dispatch over the client message union (architecture.md): adding a message
 * type to the schema without a handler here is a compile error. [head] extensions Tessera does not
 * implement are ignored or answered "not available" at once (protocol.md §3.16).
 */
export class Router extends Effect.Service<Router>()("tessera/Router", {
  effect: Effect.gen(function* () {
    const operations = yield* Operations
    const { tracing } = yield* ServerConfig
    const sync = yield* Sync
    const partitions = yield* Partitions
    const queries = yield* Queries
    const journal = yield* Journal
    const processors = yield* Processors
    const resolvers = yield* Resolvers
    const topics = yield* Topics
    const locks = yield* Locks
    const counters = yield* Counters
    const search = yield* Search

    const ignore = () => (_connection: Connection) => Effect.void

    /** OP_REJECTED for refusals with an op id, ERROR for those without. */
    const sendRefusals = (connection: Connection, outcome: WriteOutcome, firstOnly: boolean) => {
      for (const refusal of firstOnly ? outcome.refusals.slice(0, 1) : outcome.refusals) {
        if (refusal.opId !== undefined) {
          connection.send({ type: "OP_REJECTED", payload: { opId: refusal.opId, reason: refusal.reason, code: refusal.code } })
        } else {
          connection.send({ type: "ERROR", payload: { code: refusal.code, message: refusal.reason } })
        }
      }
    }

    // OP_ACK is the write hot path: written straight into bytes (protocol/op-ack.ts).
    const clientOpAck = (connection: Connection) => (results: ReadonlyArray<OpResult>) => {
      const result = results[0]
      if (result === undefined) return // no id: no OP_ACK
      connection.sendEncoded(encodeOpAck(result.opId, result.achievedLevel, [result]))
    }

    const opBatchAck = (connection: Connection, ops: ReadonlyArray<unknown>) => {
      let lastId = ""
      for (let i = ops.length - 1; i >= 0; i--) {
        const id = (ops[i] as { id?: unknown } | null)?.id
        if (typeof id === "string" || typeof id === "number") {
          lastId = String(id)
          break
        }
      }
      return (results: ReadonlyArray<OpResult>) =>
        connection.sendEncoded(encodeOpAck(lastId, lowestSuccessfulLevel(results), results))
    }

    /**
     * Sends the answers that are ready now: CLIENT_OP its first refusal and nothing else, OP_BATCH every
     * refusal, and the ack once every op reached its level (now, or from the commit or timeout callback).
     */
    const respond = (connection: Connection, outcome: WriteOutcome, message: WriteMessage): void => {
      const single = message.type === "CLIENT_OP"
      sendRefusals(connection, outcome, single)
      if (single && outcome.refusals.length > 0) return
      outcome.whenResults(single ? clientOpAck(connection) : opBatchAck(connection, message.payload.ops))
    }

    const writeSource = (connection: Connection) => ({ principal: connection.principal!, connection, origin: "client" }) as const
    const opsOf = (message: WriteMessage): ReadonlyArray<unknown> => (message.type === "CLIENT_OP" ? [message.payload] : message.payload.ops)
    const batchConcern = (message: WriteMessage) => (message.type === "OP_BATCH" ? operations.levelOf(message.payload.writeConcern) : undefined)
    const batchTimeout = (message: WriteMessage) => (message.type === "OP_BATCH" ? operations.timeoutOf(message.payload.timeout) : undefined)

    const write = (connection: Connection, message: WriteMessage): Effect.Effect<void> => {
      const ops = opsOf(message)
      if (ops.length === 0) return Effect.void // an empty OP_BATCH: nothing to acknowledge
      // A waiting ack is a callback: the inbound fiber goes on with the connection's next messages.
      return operations.processOps(writeSource(connection), ops, batchConcern(message), batchTimeout(message)).pipe(
        Effect.map((outcome) => respond(connection, outcome, message))
      )
    }

    /**
     * The write fast path: handles CLIENT_OP / OP_BATCH in the caller's synchronous run when nothing has
     * to wait (see `Operations.processOpsNow`); returns false when the message must go through `route`.
     * Only the session calls it, and only when its inbound queue is empty, so message order is kept.
     */
    const writeNow = (connection: Connection, message: WriteMessage): boolean => {
      if (tracing) return false
      const ops = opsOf(message)
      if (ops.length === 0) return true
      const outcome = operations.processOpsNow(writeSource(connection), ops, batchConcern(message), batchTimeout(message))
      if (outcome === undefined) return false
      respond(connection, outcome, message)
      return true
    }

    const route = Match.type<ClientMessage>().pipe(
      Match.discriminatorsExhaustive("type")({
        // Handled by Sessions before routing; present for exhaustiveness.
        AUTH: ignore,
        PING: ignore,
        BATCH: ignore,
        CLIENT_OP: (m) => (c: Connection) => write(c, m),
        OP_BATCH: (m) => (c: Connection) => write(c, m),
        SYNC_INIT: (m) => (c: Connection) => sync.syncInit(c, m.mapName, m.lastSyncTimestamp),
        MERKLE_REQ_BUCKET: (m) => (c: Connection) => sync.merkleReqBucket(c, m.payload.mapName, m.payload.path),
        ORMAP_SYNC_INIT: (m) => (c: Connection) => sync.orSyncInit(c, m.mapName, m.lastSyncTimestamp),
        ORMAP_MERKLE_REQ_BUCKET: (m) => (c: Connection) => sync.orMerkleReqBucket(c, m.payload.mapName, m.payload.path),
        ORMAP_DIFF_REQUEST: (m) => (c: Connection) => sync.orDiffRequest(c, m.payload.mapName, m.payload.keys),
        ORMAP_PUSH_DIFF: (m) => (c: Connection) => sync.orPushDiff(c, m.payload.mapName, m.payload.entries),
        QUERY_SUB: (m) => (c: Connection) => queries.subscribe(c, m.payload),
        QUERY_UNSUB: (m) => (c: Connection) => queries.unsubscribe(c, m.payload.queryId),
        SEARCH: (m) => (c: Connection) => search.search(c, m.payload),
        SEARCH_SUB: (m) => (c: Connection) => search.subscribe(c, m.payload),
        SEARCH_UNSUB: (m) => (c: Connection) => search.unsubscribe(c, m.payload.subscriptionId),
        TOPIC_SUB: (m) => (c: Connection) => topics.subscribe(c, m.payload),
        TOPIC_UNSUB: (m) => (c: Connection) => topics.unsubscribe(c, m.payload),
        TOPIC_PUB: (m) => (c: Connection) => topics.publish(c, m.payload),
        LOCK_REQUEST: (m) => (c: Connection) => locks.request(c, m.payload),
        LOCK_RELEASE: (m) => (c: Connection) => locks.release(c, m.payload),
        COUNTER_REQUEST: (m) => (c: Connection) => counters.request(c, m.payload),
        COUNTER_SYNC: (m) => (c: Connection) => counters.sync(c, m.payload),
        ENTRY_PROCESS: (m) => (c: Connection) => processors.process(c, m),
        ENTRY_PROCESS_BATCH: (m) => (c: Connection) => processors.processBatch(c, m),
        REGISTER_RESOLVER: (m) => (c: Connection) => resolvers.register(c, m),
        UNREGISTER_RESOLVER: (m) => (c: Connection) => resolvers.unregister(c, m),
        LIST_RESOLVERS: (m) => (c: Connection) => resolvers.list(c, m),
        PARTITION_MAP_REQUEST: (m) => (c: Connection) => partitions.request(c, m.payload?.currentVersion),
        JOURNAL_SUBSCRIBE: (m) => (c: Connection) => journal.subscribe(c, m),
        JOURNAL_UNSUBSCRIBE: (m) => (c: Connection) => journal.unsubscribe(c, m.subscriptionId),
        JOURNAL_READ: (m) => (c: Connection) => journal.read(c, m),
        // [head] extensions (protocol.md §3.16): ignored or answered "not available" promptly.
        DEVICE_HELLO: ignore,
        CLIENT_APPLY_ACK: ignore,
        QUERY_SYNC_INIT: ignore,
        HYBRID_QUERY_SUBSCRIBE: ignore,
        HYBRID_QUERY_UNSUBSCRIBE: ignore,
        HYBRID_SEARCH_UNSUB: ignore,
        SQL_QUERY: (m) => (c: Connection) =>
          Effect.sync(() =>
            c.send({ type: "SQL_QUERY_RESP", payload: { queryId: m.payload.queryId, columns: [], rows: [], code: "FEATURE_DISABLED", error: "SQL is not available on this server" } })
          ),
        VECTOR_SEARCH: (m) => (c: Connection) =>
          Effect.sync(() =>
            c.send({ type: "VECTOR_SEARCH_RESP", payload: { id: m.payload.id, results: [], totalCandidates: 0, searchTimeMs: 0, error: "Vector search is not available on this server" } })
          ),
        HYBRID_SEARCH: (m) => (c: Connection) =>
          Effect.sync(() =>
            c.send({ type: "HYBRID_SEARCH_RESP", payload: { requestId: m.payload.requestId, results: [], searchTimeMs: 0, error: "Hybrid search is not available on this server" } })
          ),
        HYBRID_SEARCH_SUB: (m) => (c: Connection) =>
          Effect.sync(() =>
            c.send({ type: "HYBRID_SEARCH_RESP", payload: { requestId: m.payload.subscriptionId, results: [], searchTimeMs: 0, error: "Hybrid search is not available on this server" } })
          )
      })
    )

    return {
      /** Dispatches one message; with tracing on, each handling is a span named after the message type. */
      route: (connection: Connection, message: ClientMessage): Effect.Effect<void> => {
        const handled = (route(message) as (c: Connection) => Effect.Effect<void>)(connection)
        return tracing
          ? Effect.withSpan(handled, message.type, { kind: "server", captureStackTrace: false, attributes: { "tessera.connection": connection.id } })
          : handled
      },
      writeNow
    } as const
  })
}) {}
