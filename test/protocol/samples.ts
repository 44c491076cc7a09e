/**
 * One realistic sample per message type. Typed by `type`, so a message type added to the unions
 * without a sample is a compile error.
 */
import type { ClientMessage, ClientMessageType, ServerMessage, ServerMessageType } from "../../src/protocol/index.js"
import { encodeMessage, packClientBatch } from "../../src/protocol/index.js"

type ByType<M extends { type: string }, T extends string> = { readonly [K in T]: Extract<M, { type: K }> }

const ts = { millis: 1700000000000, counter: 2, nodeId: "client-a1" }
const serverTs = { millis: 1700000000123, counter: 0, nodeId: "tessera-1" }

export const op1 = {
  id: "11",
  mapName: "todos",
  key: "t1",
  opType: "PUT",
  record: { value: { title: "Buy milk", done: false, tags: ["home"] }, timestamp: ts },
  timestamp: ts,
  synced: false
}
export const op2 = { id: "12", mapName: "todos", key: "t2", opType: "REMOVE", record: null }

const pred = {
  op: "and",
  children: [
    { op: "eq", attribute: "done", value: false },
    { op: "not", children: [{ op: "like", attribute: "title", value: "%milk%" }] }
  ]
}

const counterOut = { p: { a: 3 }, n: { b: 1 }, positive: { a: 3 }, negative: { b: 1 } }

export const clientSamples: ByType<ClientMessage, ClientMessageType> = {
  AUTH: { type: "AUTH", token: "eyJhbGciOiJIUzI1NiJ9.e30.sig", protocolVersion: 1 },
  PING: { type: "PING", timestamp: 1700000000000 },
  CLIENT_OP: { type: "CLIENT_OP", payload: op1 },
  OP_BATCH: { type: "OP_BATCH", payload: { ops: [op1, op2], writeConcern: "APPLIED", timeout: 5000 } },
  BATCH: { type: "BATCH", count: 1, data: packClientBatch([encodeMessage({ type: "PING", timestamp: 1 })]) },
  SYNC_INIT: { type: "SYNC_INIT", mapName: "todos", lastSyncTimestamp: 1700000000000 },
  MERKLE_REQ_BUCKET: { type: "MERKLE_REQ_BUCKET", payload: { mapName: "todos", path: "a3" } },
  ORMAP_SYNC_INIT: {
    type: "ORMAP_SYNC_INIT", mapName: "tags", rootHash: 4294967295, bucketHashes: { "0": 12, f: 99 },
    lastSyncTimestamp: 0
  },
  ORMAP_MERKLE_REQ_BUCKET: { type: "ORMAP_MERKLE_REQ_BUCKET", payload: { mapName: "tags", path: "" } },
  ORMAP_DIFF_REQUEST: { type: "ORMAP_DIFF_REQUEST", payload: { mapName: "tags", keys: ["k1", "k2"] } },
  ORMAP_PUSH_DIFF: {
    type: "ORMAP_PUSH_DIFF",
    payload: {
      mapName: "tags",
      entries: [{
        key: "k1",
        records: [{ value: "red", timestamp: ts, tag: "1700000000000:2:client-a1", ttlMs: 60000 }],
        tombstones: ["1600000000000:0:client-b"]
      }]
    }
  },
  QUERY_SUB: {
    type: "QUERY_SUB",
    payload: {
      queryId: "q1", mapName: "todos",
      query: { predicate: pred, sort: [{ field: "title", direction: "asc" }], limit: 20, cursor: "abc" },
      fields: ["title"]
    }
  },
  QUERY_UNSUB: { type: "QUERY_UNSUB", payload: { queryId: "q1" } },
  SEARCH: {
    type: "SEARCH",
    payload: { requestId: "s1", mapName: "docs", query: "hello world", options: { limit: 10, minScore: 0.5, boost: { title: 2 } } }
  },
  SEARCH_SUB: { type: "SEARCH_SUB", payload: { subscriptionId: "ss1", mapName: "docs", query: "hello" } },
  SEARCH_UNSUB: { type: "SEARCH_UNSUB", payload: { subscriptionId: "ss1" } },
  TOPIC_SUB: { type: "TOPIC_SUB", payload: { topic: "chat/room-1" } },
  TOPIC_UNSUB: { type: "TOPIC_UNSUB", payload: { topic: "chat/room-1" } },
  TOPIC_PUB: { type: "TOPIC_PUB", payload: { topic: "chat/room-1", data: { text: "hi", n: null } } },
  LOCK_REQUEST: { type: "LOCK_REQUEST", payload: { requestId: "l1", name: "jobs", ttl: 10000 } },
  LOCK_RELEASE: { type: "LOCK_RELEASE", payload: { requestId: "l2", name: "jobs", fencingToken: 7 } },
  COUNTER_REQUEST: { type: "COUNTER_REQUEST", payload: { name: "likes" } },
  COUNTER_SYNC: { type: "COUNTER_SYNC", payload: { name: "likes", state: { positive: { a: 3 }, negative: {} } } },
  ENTRY_PROCESS: {
    type: "ENTRY_PROCESS", requestId: "e1", mapName: "stock", key: "sku-1",
    processor: { name: "decrement", code: "return { value: value - args }", args: 2 }
  },
  ENTRY_PROCESS_BATCH: {
    type: "ENTRY_PROCESS_BATCH", requestId: "e2", mapName: "stock", keys: ["a", "b"],
    processor: { name: "touch", code: "return { value }" }
  },
  REGISTER_RESOLVER: {
    type: "REGISTER_RESOLVER", requestId: "r1", mapName: "todos",
    resolver: { name: "keep-done", code: "return { action: 'local' }", priority: 60, keyPattern: "t*" }
  },
  UNREGISTER_RESOLVER: { type: "UNREGISTER_RESOLVER", requestId: "r2", mapName: "todos", resolverName: "keep-done" },
  LIST_RESOLVERS: { type: "LIST_RESOLVERS", requestId: "r3", mapName: "todos" },
  PARTITION_MAP_REQUEST: { type: "PARTITION_MAP_REQUEST", payload: { currentVersion: 3 } },
  JOURNAL_SUBSCRIBE: { type: "JOURNAL_SUBSCRIBE", requestId: "j1", fromSequence: "10", mapName: "todos", types: ["PUT", "DELETE"] },
  JOURNAL_UNSUBSCRIBE: { type: "JOURNAL_UNSUBSCRIBE", subscriptionId: "j1" },
  JOURNAL_READ: { type: "JOURNAL_READ", requestId: "j2", fromSequence: "1", limit: 100 },
  DEVICE_HELLO: { type: "DEVICE_HELLO", deviceToken: "dev-token" },
  CLIENT_APPLY_ACK: { type: "CLIENT_APPLY_ACK", cursor: 42 },
  QUERY_SYNC_INIT: { type: "QUERY_SYNC_INIT", payload: { queryId: "q1", rootHash: 1234 } },
  SQL_QUERY: { type: "SQL_QUERY", payload: { sql: "SELECT * FROM todos", queryId: "sq1" } },
  VECTOR_SEARCH: {
    type: "VECTOR_SEARCH",
    payload: {
      id: "v1", mapName: "docs", queryVector: { "0": 1, "1": 2, "2": 3 }, k: 5, efSearch: 64,
      options: { includeValue: true, minScore: 0.2 }
    }
  },
  HYBRID_SEARCH: {
    type: "HYBRID_SEARCH",
    payload: { requestId: "h1", mapName: "docs", queryText: "red shoes", methods: ["fullText", "semantic"], k: 10, predicate: pred }
  },
  HYBRID_SEARCH_SUB: {
    type: "HYBRID_SEARCH_SUB",
    payload: { subscriptionId: "hs1", mapName: "docs", queryText: "red", methods: ["exact"], k: 3, includeValue: true }
  },
  HYBRID_SEARCH_UNSUB: { type: "HYBRID_SEARCH_UNSUB", payload: { subscriptionId: "hs1" } },
  HYBRID_QUERY_SUBSCRIBE: { type: "HYBRID_QUERY_SUBSCRIBE", payload: { queryId: "x", mapName: "docs" } },
  HYBRID_QUERY_UNSUBSCRIBE: { type: "HYBRID_QUERY_UNSUBSCRIBE", payload: { queryId: "x" } }
}

const lwwRecord = { value: { title: "Buy milk", done: true }, timestamp: ts }
const orRecord = { value: "red", timestamp: ts, tag: "1700000000000:2:client-a1" }
const journalEvent = {
  sequence: "17", type: "UPDATE" as const, mapName: "todos", key: "t1", value: { done: true },
  previousValue: { done: false }, timestamp: ts, nodeId: "tessera-1"
}

export const serverSamples: ByType<ServerMessage, ServerMessageType> = {
  AUTH_REQUIRED: { type: "AUTH_REQUIRED" },
  AUTH_ACK: { type: "AUTH_ACK", protocolVersion: 1, userId: "user-1" },
  AUTH_FAIL: { type: "AUTH_FAIL", error: "jwt expired" },
  PONG: { type: "PONG", timestamp: 1700000000000, serverTime: 1700000000005 },
  OP_ACK: {
    type: "OP_ACK",
    payload: {
      lastId: "12", achievedLevel: "MEMORY",
      results: [
        { opId: "11", success: true, achievedLevel: "MEMORY" },
        { opId: "12", success: false, achievedLevel: "FIRE_AND_FORGET", error: "Access Denied" }
      ]
    }
  },
  OP_REJECTED: { type: "OP_REJECTED", payload: { opId: "12", reason: "Access Denied", code: 403 } },
  BATCH: { type: "BATCH", count: 0, data: new Uint8Array([0, 0, 0, 0]) },
  SERVER_EVENT: {
    type: "SERVER_EVENT",
    payload: { mapName: "todos", eventType: "REMOVE", key: "t2", record: { value: null, timestamp: ts } },
    timestamp: serverTs
  },
  SERVER_BATCH_EVENT: {
    type: "SERVER_BATCH_EVENT",
    payload: {
      events: [
        { mapName: "todos", eventType: "PUT", key: "t1", record: lwwRecord },
        { mapName: "tags", eventType: "OR_ADD", key: "k1", orRecord },
        { mapName: "tags", eventType: "OR_REMOVE", key: "k1", orTag: "1:0:x" }
      ]
    }
  },
  QUERY_RESP: {
    type: "QUERY_RESP",
    payload: { queryId: "q1", results: [{ key: "t1", value: { title: "Buy milk" } }], hasMore: true, nextCursor: "eyJ9", cursorStatus: "none" }
  },
  QUERY_UPDATE: { type: "QUERY_UPDATE", payload: { queryId: "q1", key: "t1", value: null, changeType: "LEAVE" } },
  SEARCH_RESP: {
    type: "SEARCH_RESP",
    payload: { requestId: "s1", results: [{ key: "d1", value: { body: "hello" }, score: 1.25, matchedTerms: ["hello"] }], totalCount: 1 }
  },
  SEARCH_UPDATE: {
    type: "SEARCH_UPDATE",
    payload: { subscriptionId: "ss1", key: "d1", value: { body: "hello" }, score: 0.7, matchedTerms: ["hello"], changeType: "ENTER" }
  },
  SYNC_RESP_ROOT: { type: "SYNC_RESP_ROOT", payload: { mapName: "todos", rootHash: 3735928559, timestamp: serverTs } },
  SYNC_RESP_BUCKETS: { type: "SYNC_RESP_BUCKETS", payload: { mapName: "todos", path: "a", buckets: { "0": 1, e: 0 } } },
  SYNC_RESP_LEAF: {
    type: "SYNC_RESP_LEAF",
    payload: { mapName: "todos", path: "a3f", records: [{ key: "t1", record: lwwRecord }, { key: "t2", record: { value: null, timestamp: ts } }] }
  },
  SYNC_RESET_REQUIRED: { type: "SYNC_RESET_REQUIRED", payload: { mapName: "todos", reason: "GC_AGE_EXCEEDED" } },
  ORMAP_SYNC_RESP_ROOT: { type: "ORMAP_SYNC_RESP_ROOT", payload: { mapName: "tags", rootHash: 0, timestamp: serverTs } },
  ORMAP_SYNC_RESP_BUCKETS: { type: "ORMAP_SYNC_RESP_BUCKETS", payload: { mapName: "tags", path: "", buckets: {} } },
  ORMAP_SYNC_RESP_LEAF: {
    type: "ORMAP_SYNC_RESP_LEAF",
    payload: { mapName: "tags", path: "12", entries: [{ key: "k1", records: [orRecord], tombstones: [] }] }
  },
  ORMAP_DIFF_RESPONSE: {
    type: "ORMAP_DIFF_RESPONSE",
    payload: { mapName: "tags", entries: [{ key: "k9", records: [], tombstones: ["1:0:x"] }] }
  },
  TOPIC_MESSAGE: { type: "TOPIC_MESSAGE", payload: { topic: "chat/room-1", data: null, publisherId: "conn-1", timestamp: 1700000000001 } },
  LOCK_GRANTED: { type: "LOCK_GRANTED", payload: { requestId: "l1", name: "jobs", fencingToken: 8 } },
  LOCK_RELEASED: { type: "LOCK_RELEASED", payload: { requestId: "l2", name: "jobs", success: true } },
  COUNTER_RESPONSE: { type: "COUNTER_RESPONSE", payload: { name: "likes", state: counterOut } },
  COUNTER_UPDATE: { type: "COUNTER_UPDATE", payload: { name: "likes", state: counterOut } },
  ENTRY_PROCESS_RESPONSE: { type: "ENTRY_PROCESS_RESPONSE", requestId: "e1", success: true, result: 5, newValue: 3 },
  ENTRY_PROCESS_BATCH_RESPONSE: {
    type: "ENTRY_PROCESS_BATCH_RESPONSE", requestId: "e2",
    results: { a: { success: true, newValue: 1 }, b: { success: false, error: "Access Denied for map stock" } }
  },
  REGISTER_RESOLVER_RESPONSE: { type: "REGISTER_RESOLVER_RESPONSE", requestId: "r1", success: true },
  UNREGISTER_RESOLVER_RESPONSE: {
    type: "UNREGISTER_RESOLVER_RESPONSE", requestId: "r2", success: false,
    error: "Resolver not found or not owned by this client"
  },
  LIST_RESOLVERS_RESPONSE: {
    type: "LIST_RESOLVERS_RESPONSE", requestId: "r3",
    resolvers: [{ mapName: "todos", name: "keep-done", priority: 60, keyPattern: "t*" }]
  },
  MERGE_REJECTED: {
    type: "MERGE_REJECTED", mapName: "todos", key: "t1", attemptedValue: { title: "x" }, reason: "immutable",
    timestamp: serverTs
  },
  PARTITION_MAP: {
    type: "PARTITION_MAP",
    payload: {
      version: 1, partitionCount: 271,
      nodes: [{ nodeId: "tessera-1", endpoints: { websocket: "ws://localhost:8080/ws" }, status: "ACTIVE" }],
      partitions: [{ partitionId: 0, ownerNodeId: "tessera-1", backupNodeIds: [] }],
      generatedAt: 1700000000000
    }
  },
  PARTITION_MAP_DELTA: {
    type: "PARTITION_MAP_DELTA",
    payload: {
      version: 2, previousVersion: 1,
      changes: [{ partitionId: 5, previousOwner: "n1", newOwner: "n2", reason: "FAILOVER" }],
      timestamp: 1700000000000
    }
  },
  JOURNAL_EVENT: { type: "JOURNAL_EVENT", event: journalEvent },
  JOURNAL_READ_RESPONSE: { type: "JOURNAL_READ_RESPONSE", requestId: "j2", events: [journalEvent], hasMore: false },
  GC_PRUNE: { type: "GC_PRUNE", payload: { olderThan: serverTs } },
  ERROR: { type: "ERROR", payload: { code: 400, message: "Invalid message format", details: ["payload.mapName: is missing"] } },
  SHUTDOWN_PENDING: { type: "SHUTDOWN_PENDING", retryAfter: 5000 },
  DEVICE_ACK: { type: "DEVICE_ACK", deviceId: "dev-1", deviceToken: "tok" },
  SQL_QUERY_RESP: {
    type: "SQL_QUERY_RESP",
    payload: { queryId: "sq1", columns: [], rows: [], code: "FEATURE_DISABLED", error: "SQL is not available on this server" }
  },
  VECTOR_SEARCH_RESP: {
    type: "VECTOR_SEARCH_RESP",
    payload: { id: "v1", results: [], totalCandidates: 0, searchTimeMs: 0.1, error: "Vector search not available" }
  },
  HYBRID_SEARCH_RESP: {
    type: "HYBRID_SEARCH_RESP",
    payload: { requestId: "h1", results: [{ key: "d1", score: 0.03, methodScores: { fullText: 2.1 }, value: { a: 1 } }], searchTimeMs: 1.5 }
  },
  HYBRID_SEARCH_UPDATE: {
    type: "HYBRID_SEARCH_UPDATE",
    payload: { subscriptionId: "hs1", key: "d1", score: 0.03, methodScores: { exact: 1 }, changeType: "UPDATE" }
  }
}
