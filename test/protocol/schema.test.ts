import { Either, Match, Schema } from "effect"
import { describe, expect, it } from "vitest"
import {
  ClientMessage,
  clientMessageSchemas,
  decodeClientMessage,
  decodeFrame,
  decodeHttpSyncRequest,
  encodeMessage,
  HttpSyncResponseSchema,
  LWWRecordSchema,
  PNCounterStateSchema,
  PredicateNodeSchema,
  QuerySchema,
  ServerMessage,
  serverMessageSchemas,
  TimestampSchema,
  validateClientOp
} from "../../src/protocol/index.js"
import { clientSamples, serverSamples } from "./samples.js"

const MAX_DEPTH = { maxDepth: 256 }

/** encode → frame decode (msgpack) */
function wire(msg: object): unknown {
  const frame = decodeFrame(encodeMessage(msg), MAX_DEPTH)
  if (frame._tag !== "Ok") throw new Error(`frame not decodable: ${frame._tag}`)
  return frame.value
}

/** Buffers come back from msgpackr as Buffer; compare bytes as plain Uint8Array. */
function normalizeBytes(u: unknown): unknown {
  if (u instanceof Uint8Array) return Array.from(u)
  if (Array.isArray(u)) return u.map(normalizeBytes)
  if (typeof u === "object" && u !== null) {
    return Object.fromEntries(Object.entries(u).map(([k, v]) => [k, normalizeBytes(v)]))
  }
  return u
}

describe("client message round trip (encode → decodeFrame → decodeClientMessage)", () => {
  for (const [type, sample] of Object.entries(clientSamples)) {
    it(type, () => {
      const result = decodeClientMessage(wire(sample))
      if (result._tag !== "Ok") throw new Error(JSON.stringify(result))
      expect(result.message.type).toBe(type)
      expect(normalizeBytes(result.message)).toEqual(normalizeBytes(sample))
    })
  }

  it("covers every member of the ClientMessage union and nothing else", () => {
    const unionTypes = ClientMessage.members.map((m) => m.fields.type.literals[0]).sort()
    expect(Object.keys(clientMessageSchemas).sort()).toEqual(unionTypes)
    expect(Object.keys(clientSamples).sort()).toEqual(unionTypes)
  })

  it("routes exhaustively with Match.discriminatorsExhaustive (a missing type is a compile error)", () => {
    const route = Match.type<ClientMessage>().pipe(
      Match.discriminatorsExhaustive("type")({
        AUTH: (m) => m.token, PING: (m) => String(m.timestamp), CLIENT_OP: () => "op", OP_BATCH: (m) => String(m.payload.ops.length),
        BATCH: (m) => String(m.data.length), SYNC_INIT: (m) => m.mapName, MERKLE_REQ_BUCKET: (m) => m.payload.path,
        ORMAP_SYNC_INIT: (m) => m.mapName, ORMAP_MERKLE_REQ_BUCKET: (m) => m.payload.path,
        ORMAP_DIFF_REQUEST: (m) => m.payload.keys.join(), ORMAP_PUSH_DIFF: (m) => m.payload.mapName,
        QUERY_SUB: (m) => m.payload.queryId, QUERY_UNSUB: (m) => m.payload.queryId, SEARCH: (m) => m.payload.query,
        SEARCH_SUB: (m) => m.payload.subscriptionId, SEARCH_UNSUB: (m) => m.payload.subscriptionId,
        TOPIC_SUB: (m) => m.payload.topic, TOPIC_UNSUB: (m) => m.payload.topic, TOPIC_PUB: (m) => m.payload.topic,
        LOCK_REQUEST: (m) => m.payload.name, LOCK_RELEASE: (m) => m.payload.name, COUNTER_REQUEST: (m) => m.payload.name,
        COUNTER_SYNC: (m) => m.payload.name, ENTRY_PROCESS: (m) => m.key, ENTRY_PROCESS_BATCH: (m) => m.keys.join(),
        REGISTER_RESOLVER: (m) => m.resolver.name, UNREGISTER_RESOLVER: (m) => m.resolverName,
        LIST_RESOLVERS: (m) => m.requestId, PARTITION_MAP_REQUEST: (m) => String(m.payload?.currentVersion ?? 0),
        JOURNAL_SUBSCRIBE: (m) => m.requestId, JOURNAL_UNSUBSCRIBE: (m) => m.subscriptionId, JOURNAL_READ: (m) => m.fromSequence,
        DEVICE_HELLO: () => "device", CLIENT_APPLY_ACK: (m) => String(m.cursor), QUERY_SYNC_INIT: (m) => m.payload.queryId,
        SQL_QUERY: (m) => m.payload.sql, VECTOR_SEARCH: (m) => m.payload.id, HYBRID_SEARCH: (m) => m.payload.requestId,
        HYBRID_SEARCH_SUB: (m) => m.payload.subscriptionId, HYBRID_SEARCH_UNSUB: (m) => m.payload.subscriptionId,
        HYBRID_QUERY_SUBSCRIBE: () => "ignored", HYBRID_QUERY_UNSUBSCRIBE: () => "ignored"
      })
    )
    expect(route(clientSamples.SYNC_INIT)).toBe("todos")
    expect(route(clientSamples.OP_BATCH)).toBe("2")
    expect(route(clientSamples.PARTITION_MAP_REQUEST)).toBe("3")
  })

  it("the union schema also decodes every sample", () => {
    const decode = Schema.decodeUnknownEither(ClientMessage)
    for (const sample of Object.values(clientSamples)) expect(Either.isRight(decode(wire(sample)))).toBe(true)
  })
})

describe("server message round trip (encode → decodeFrame → Schema decode)", () => {
  for (const [type, sample] of Object.entries(serverSamples)) {
    it(type, () => {
      const schema = serverMessageSchemas[type as keyof typeof serverMessageSchemas] as Schema.Schema<unknown>
      const decoded = Schema.decodeUnknownSync(schema)(wire(sample))
      expect(normalizeBytes(decoded)).toEqual(normalizeBytes(sample))
      // the encoded sample is also valid against the strict outbound schema before encoding
      expect(Either.isRight(Schema.decodeUnknownEither(schema)(sample))).toBe(true)
    })
  }

  it("covers every member of the ServerMessage union", () => {
    const unionTypes = ServerMessage.members.map((m) => m.fields.type.literals[0]).sort()
    expect(Object.keys(serverMessageSchemas).sort()).toEqual(unionTypes)
    expect(Object.keys(serverSamples).sort()).toEqual(unionTypes)
  })
})

describe("decodeClientMessage", () => {
  it("reports server → client and unknown types as UnknownType", () => {
    expect(decodeClientMessage({ type: "OP_ACK", payload: { lastId: "1" } })).toEqual({ _tag: "UnknownType", type: "OP_ACK" })
    expect(decodeClientMessage({ type: "NOPE" })).toEqual({ _tag: "UnknownType", type: "NOPE" })
  })

  it("reports schema failures with paths", () => {
    const r = decodeClientMessage({ type: "QUERY_SUB", payload: { queryId: 1, mapName: "m", query: { limit: 1.5 } } })
    expect(r._tag).toBe("Invalid")
    if (r._tag !== "Invalid") return
    expect(r.details.some((d) => d.startsWith("payload.queryId"))).toBe(true)
    expect(r.details.some((d) => d.startsWith("payload.query.limit"))).toBe(true)
  })

  it("refuses U+0000 in names, keys, tags and node ids (not storable in PostgreSQL text)", () => {
    const nul = "a\u0000b"
    const cases: ReadonlyArray<[unknown, string]> = [
      [{ type: "QUERY_SUB", payload: { queryId: "q", mapName: nul, query: {} } }, "payload.mapName"],
      [{ type: "COUNTER_REQUEST", payload: { name: nul } }, "payload.name"],
      [{ type: "ORMAP_PUSH_DIFF", payload: { mapName: "m", entries: [{ key: "k", records: [{ value: 1, tag: nul, timestamp: { millis: 1, counter: 0, nodeId: "n" } }], tombstones: [] }] } }, "payload.entries.0.records.0.tag"],
      [{ type: "ORMAP_PUSH_DIFF", payload: { mapName: "m", entries: [{ key: "k", records: [{ value: 1, tag: "t", timestamp: { millis: 1, counter: 0, nodeId: nul } }], tombstones: [] }] } }, "payload.entries.0.records.0.timestamp.nodeId"]
    ]
    for (const [message, path] of cases) {
      const r = decodeClientMessage(message)
      expect(r._tag).toBe("Invalid")
      if (r._tag === "Invalid") expect(r.details.some((d) => d.startsWith(path) && d.includes("U+0000"))).toBe(true)
    }
    expect(decodeClientMessage({ type: "QUERY_SUB", payload: { queryId: "q", mapName: "a\u0001b", query: {} } })._tag).toBe("Ok")
  })

  it("ignores unknown keys and strips them from the decoded message", () => {
    const r = decodeClientMessage({ type: "QUERY_UNSUB", extra: 1, payload: { queryId: "q", junk: true } })
    expect(r).toEqual({ _tag: "Ok", message: { type: "QUERY_UNSUB", payload: { queryId: "q" } } })
  })

  it("accepts PARTITION_MAP_REQUEST without payload", () => {
    expect(decodeClientMessage({ type: "PARTITION_MAP_REQUEST" })._tag).toBe("Ok")
    expect(decodeClientMessage({ type: "PARTITION_MAP_REQUEST", payload: {} })._tag).toBe("Ok")
  })

  it("keeps a malformed op inside OP_BATCH (it is refused per op later)", () => {
    const r = decodeClientMessage({ type: "OP_BATCH", payload: { ops: [{ mapName: 5 }, "junk"] } })
    expect(r._tag).toBe("Ok")
  })

  it("refuses OP_BATCH whose batch-level fields are invalid", () => {
    expect(decodeClientMessage({ type: "OP_BATCH", payload: { ops: [], writeConcern: "NOPE" } })._tag).toBe("Invalid")
    expect(decodeClientMessage({ type: "OP_BATCH", payload: {} })._tag).toBe("Invalid")
  })

  it("decodes a typical 10-op OP_BATCH fast (reported number)", () => {
    const ops = Array.from({ length: 10 }, (_, i) => ({
      id: String(100 + i), mapName: "todos", key: `k${i}`, opType: "PUT",
      record: { value: { title: `item ${i}`, done: i % 2 === 0, n: i }, timestamp: { millis: 1700000000000 + i, counter: 0, nodeId: "c1" } },
      timestamp: { millis: 1700000000000 + i, counter: 0, nodeId: "c1" }, synced: false
    }))
    const bytes = encodeMessage({ type: "OP_BATCH", payload: { ops } })
    const frame = decodeFrame(bytes, MAX_DEPTH)
    if (frame._tag !== "Ok") throw new Error("frame")
    const decodeBytes = () => void decodeFrame(bytes, MAX_DEPTH)
    const validate = () => {
      const m = decodeClientMessage(frame.value)
      if (m._tag !== "Ok" || m.message.type !== "OP_BATCH") throw new Error("message")
      for (const op of m.message.payload.ops) if (!validateClientOp(op).ok) throw new Error("op")
    }
    // Interleaved rounds so that both phases see the same machine load.
    let frameMs = 0
    let validateMs = 0
    const rounds = 40
    const perRound = 100
    for (let r = -5; r < rounds; r++) {
      const t0 = performance.now()
      for (let i = 0; i < perRound; i++) decodeBytes()
      const t1 = performance.now()
      for (let i = 0; i < perRound; i++) validate()
      const t2 = performance.now()
      if (r >= 0) {
        frameMs += t1 - t0
        validateMs += t2 - t1
      }
    }
    const frameUs = (frameMs * 1000) / (rounds * perRound)
    const validateUs = (validateMs * 1000) / (rounds * perRound)
    console.log(
      `OP_BATCH with 10 ops (${bytes.length} bytes): decodeFrame ${frameUs.toFixed(2)} µs, ` +
        `decodeClientMessage + 10 × validateClientOp ${validateUs.toFixed(2)} µs`
    )
    // Relative bound (the machine is shared, absolute timings swing 10×): schema validation must
    // cost less than the msgpack decode of the same frame (measured ≈ 1/5 of it in isolation).
    expect(validateUs).toBeLessThan(frameUs)
  })
})

describe("shared schema leniency", () => {
  const decodeTs = Schema.decodeUnknownEither(TimestampSchema)

  it("accepts float64-encoded integral millis/counter, rejects non-integral and negative", () => {
    // 1700000000000 is encoded as float64 by msgpackr (and by the client)
    const bytes = encodeMessage({ type: "X", ts: { millis: 1700000000000, counter: 3, nodeId: "n" } })
    expect(Array.from(bytes).includes(0xcb)).toBe(true)
    const value = wire({ type: "X", ts: { millis: 1700000000000, counter: 3, nodeId: "n" } }) as { ts: unknown }
    expect(Either.isRight(decodeTs(value.ts))).toBe(true)
    expect(Either.isLeft(decodeTs({ millis: 1.5, counter: 0, nodeId: "n" }))).toBe(true)
    expect(Either.isLeft(decodeTs({ millis: 1, counter: -1, nodeId: "n" }))).toBe(true)
    expect(Either.isLeft(decodeTs({ millis: Infinity, counter: 0, nodeId: "n" }))).toBe(true)
  })

  it("integer fields: limit, ttl, fencingToken accept integral float64, reject fractions", () => {
    // 5e9 does not fit uint32, so it travels as float64 like the client encodes it
    const cases: Array<[object, boolean]> = [
      [{ type: "LOCK_REQUEST", payload: { requestId: "r", name: "n", ttl: 5e9 } }, true],
      [{ type: "LOCK_REQUEST", payload: { requestId: "r", name: "n", ttl: 10.5 } }, false],
      [{ type: "LOCK_RELEASE", payload: { name: "n", fencingToken: 5e9 } }, true],
      [{ type: "LOCK_RELEASE", payload: { name: "n", fencingToken: 1.25 } }, false],
      [{ type: "QUERY_SUB", payload: { queryId: "q", mapName: "m", query: { limit: 5e9 } } }, true],
      [{ type: "QUERY_SUB", payload: { queryId: "q", mapName: "m", query: { limit: 2.5 } } }, false],
      [{ type: "JOURNAL_READ", requestId: "r", fromSequence: "1", limit: 2.5 }, false],
      [{ type: "SYNC_INIT", mapName: "m", lastSyncTimestamp: 1700000000000 }, true]
    ]
    for (const [msg, ok] of cases) {
      expect(decodeClientMessage(wire(msg))._tag, JSON.stringify(msg)).toBe(ok ? "Ok" : "Invalid")
    }
  })

  it("ttlMs must be positive and finite", () => {
    const decode = Schema.decodeUnknownEither(LWWRecordSchema)
    const timestamp = { millis: 1, counter: 0, nodeId: "n" }
    expect(Either.isRight(decode({ value: 1, timestamp, ttlMs: 1000 }))).toBe(true)
    expect(Either.isLeft(decode({ value: 1, timestamp, ttlMs: 0 }))).toBe(true)
    expect(Either.isLeft(decode({ value: 1, timestamp, ttlMs: Infinity }))).toBe(true)
  })

  it("accepts both sort forms and keeps object-form key order", () => {
    const decode = Schema.decodeUnknownSync(QuerySchema)
    const objectForm = decode({ sort: { priority: "desc", title: "asc" } })
    expect(Object.keys(objectForm.sort as object)).toEqual(["priority", "title"])
    expect(decode({ sort: [{ field: "title", direction: "desc" }] }).sort).toEqual([{ field: "title", direction: "desc" }])
    expect(() => decode({ sort: { title: "up" } })).toThrow()
  })

  it("predicate nodes are recursive and accept unknown ops", () => {
    const decode = Schema.decodeUnknownSync(PredicateNodeSchema)
    const node = { op: "or", children: [{ op: "matchPhrase", attribute: "t", value: "x", slop: 2 }, { op: "eq", attribute: "a", value: [1] }] }
    expect(decode(node)).toEqual({ op: "or", children: [{ op: "matchPhrase", attribute: "t", value: "x" }, { op: "eq", attribute: "a", value: [1] }] })
    expect(() => decode({ op: "and", children: [{ attribute: "a" }] })).toThrow()
  })

  it("accepts both counter state encodings", () => {
    const decode = Schema.decodeUnknownSync(PNCounterStateSchema)
    expect(decode({ p: { a: 1 }, n: {} })).toEqual({ p: { a: 1 }, n: {} })
    expect(decode({ positive: { a: 1 }, negative: { b: 2 } })).toEqual({ positive: { a: 1 }, negative: { b: 2 } })
    expect(decode({})).toEqual({})
  })
})

describe("HTTP sync bodies (§3.12)", () => {
  const ts = { millis: 1700000000000, counter: 0, nodeId: "" }

  it("request: first request of a client round-trips; ops stay unknown for per-op validation", () => {
    const body = {
      clientId: "c1", clientHlc: ts,
      operations: [{ id: "1", mapName: "m", key: "k", record: { value: 1, timestamp: ts } }, { broken: true }],
      syncMaps: [{ mapName: "m", lastSyncTimestamp: { millis: 0, counter: 0, nodeId: "" } }],
      queries: [{ queryId: "q", mapName: "m", filter: { done: false }, limit: 10 }],
      searches: [{ searchId: "s", mapName: "m", query: "hello", options: { limit: 5 } }]
    }
    expect(decodeHttpSyncRequest(wire({ type: "X", ...body }))).toEqual({ _tag: "Ok", request: body })
    const json = decodeFrame(JSON.stringify({ type: "X", ...body }), MAX_DEPTH)
    expect(json._tag === "Ok" && decodeHttpSyncRequest(json.value)._tag).toBe("Ok")
  })

  it("request: missing clientHlc is invalid", () => {
    const r = decodeHttpSyncRequest({ operations: [] })
    expect(r._tag).toBe("Invalid")
    expect(r._tag === "Invalid" && r.details.some((d) => d.startsWith("clientHlc"))).toBe(true)
  })

  it("response schema accepts a full response", () => {
    const response = {
      serverHlc: ts,
      ack: { lastId: "http-op-1", results: [{ opId: "http-op-0", success: true, achievedLevel: "MEMORY" }] },
      deltas: [{ mapName: "m", records: [{ key: "k", record: { value: null, timestamp: ts }, eventType: "REMOVE" }], serverSyncTimestamp: ts }],
      queryResults: [{ queryId: "q", results: [{ key: "k", value: 1 }], hasMore: false }],
      searchResults: [{ searchId: "s", results: [], totalCount: 0 }],
      errors: [{ code: 403, message: "Access Denied", context: "http-op-1" }]
    }
    expect(Schema.decodeUnknownSync(HttpSyncResponseSchema)(wire({ type: "X", ...response }))).toEqual(response)
  })
})
