/**
 * The wire contract as `effect/Schema` values (protocol.md §3, Appendix B). Every message is
 * `Schema.Struct({ type: Schema.Literal("X"), ... })` with its exact envelope: payload-wrapped,
 * flat, or event-wrapped (§1.4).
 *
 * Leniency (§1.3, Appendix C): unknown keys are ignored (decode with the default
 * `onExcessProperty: "ignore"`); integer fields accept any integral number, float64 included;
 * `record: null` / `orRecord: null` / `orTag: null` are accepted; both sort forms and both
 * counter-state forms are accepted; `PARTITION_MAP_REQUEST.payload` is optional. Record and user
 * values are `Schema.Unknown`: their inner shape belongs to the subsystem that uses them. A field
 * declared `Schema.Unknown` also accepts an absent key (the client strips `undefined` values).
 *
 * Ops inside `CLIENT_OP` / `OP_BATCH` are deliberately `unknown` at the message level: a malformed op
 * must be refused on its own (OP_REJECTED, §3.2.1), not fail the whole message. The write pipeline
 * validates each op with `validateClientOp` (./client-op.ts).
 *
 * Optional fields use `optionalWith(..., { exact: true })` so that decoded types have `a?: T`
 * (without `| undefined`) under `exactOptionalPropertyTypes`, and outbound objects built from these
 * types omit absent fields instead of carrying `undefined`.
 */
import { Schema } from "effect"
import type { LWWRecord, ORMapRecord, Timestamp, WriteConcern } from "../crdt/types.js"

// ---------------------------------------------------------------------------------------------------
// Scalars

/** A finite integral number; float64-encoded integers (1700000000000, 3.0) are accepted (§1.3 E2). */
export const Int = Schema.Number.pipe(
  Schema.filter((n) => Number.isInteger(n), { message: () => "expected an integral number" }),
  Schema.annotations({ identifier: "Int" })
)

/** A finite, non-negative integral number. */
export const NonNegativeInt = Schema.Number.pipe(
  Schema.filter((n) => Number.isInteger(n) && n >= 0, { message: () => "expected a non-negative integral number" }),
  Schema.annotations({ identifier: "NonNegativeInt" })
)

/** A finite number greater than 0 (`ttlMs`). */
export const PositiveFinite = Schema.Number.pipe(
  Schema.filter((n) => Number.isFinite(n) && n > 0, { message: () => "expected a positive finite number" }),
  Schema.annotations({ identifier: "PositiveFinite" })
)

/**
 * Names, keys, tags and node ids end up in storage columns; PostgreSQL text cannot hold U+0000, so a
 * string containing it would fail every write-behind attempt. Refused at the door instead.
 */
export const StorableString = Schema.String.pipe(
  Schema.filter((s) => !s.includes("\u0000"), { message: () => "must not contain U+0000" }),
  Schema.annotations({ identifier: "StorableString" })
)

/**
 * An array whose elements are checked elsewhere (ops, validated one by one). Same as
 * `Schema.Array(Schema.Unknown)` but without walking and copying the elements: half the decode cost of an
 * OP_BATCH envelope.
 */
export const UnknownArray = Schema.declare((u: unknown): u is ReadonlyArray<unknown> => Array.isArray(u), {
  identifier: "Array",
  description: "an array"
})

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

const payloadMessage = <T extends string, F extends Schema.Struct.Fields>(type: T, fields: F) =>
  Schema.Struct({ type: Schema.Literal(type), payload: Schema.Struct(fields) })

const flatMessage = <T extends string, F extends Schema.Struct.Fields>(type: T, fields: F) =>
  Schema.Struct({ type: Schema.Literal(type), ...fields })

// ---------------------------------------------------------------------------------------------------
// Shared types (§3.0)

export const TimestampSchema = Schema.Struct({
  millis: NonNegativeInt,
  counter: NonNegativeInt,
  nodeId: StorableString
}).annotations({ identifier: "Timestamp" })

export const LWWRecordSchema = Schema.Struct({
  value: Schema.Unknown,
  timestamp: TimestampSchema,
  ttlMs: opt(PositiveFinite)
}).annotations({ identifier: "LWWRecord" })

export const ORMapRecordSchema = Schema.Struct({
  value: Schema.Unknown,
  timestamp: TimestampSchema,
  tag: StorableString,
  ttlMs: opt(PositiveFinite)
}).annotations({ identifier: "ORMapRecord" })

export const WriteConcernSchema = Schema.Literal("FIRE_AND_FORGET", "MEMORY", "APPLIED", "REPLICATED", "PERSISTED")

export const ChangeEventTypeSchema = Schema.Literal("ENTER", "UPDATE", "LEAVE")
export type ChangeEventType = typeof ChangeEventTypeSchema.Type

/**
 * Strict ClientOp (§3.0). Not used to decode messages (ops are validated one by one with
 * `validateClientOp`); kept for typing, tests and tools.
 */
export const ClientOpSchema = Schema.Struct({
  id: opt(Schema.String),
  mapName: StorableString,
  key: StorableString,
  opType: opt(Schema.String),
  record: opt(Schema.NullOr(LWWRecordSchema)),
  orRecord: opt(Schema.NullOr(ORMapRecordSchema)),
  orTag: opt(Schema.NullOr(StorableString)),
  writeConcern: opt(WriteConcernSchema),
  timeout: opt(NonNegativeInt)
}).annotations({ identifier: "ClientOp" })
export type ClientOp = typeof ClientOpSchema.Type

export const ClientOpKindSchema = Schema.Literal("PUT", "REMOVE", "OR_ADD", "OR_REMOVE")
export type ClientOpKind = typeof ClientOpKindSchema.Type

export const ORMapEntrySchema = Schema.Struct({
  key: StorableString,
  records: Schema.Array(ORMapRecordSchema),
  tombstones: Schema.Array(StorableString)
}).annotations({ identifier: "ORMapEntry" })
export type ORMapEntry = typeof ORMapEntrySchema.Type

export const OpResultSchema = Schema.Struct({
  opId: Schema.String,
  success: Schema.Boolean,
  achievedLevel: WriteConcernSchema,
  error: opt(Schema.String)
}).annotations({ identifier: "OpResult" })
export type OpResult = typeof OpResultSchema.Type

/** Predicate ops the base evaluator knows (§4.9.2) plus the [head] ones (§3.16). */
export const PredicateOpSchema = Schema.Literal(
  "eq", "neq", "gt", "gte", "lt", "lte", "like", "regex", "and", "or", "not",
  "in", "between", "isNull", "isNotNull", "containsAll", "containsAny", "startsWith", "endsWith"
)
export type PredicateOp = typeof PredicateOpSchema.Type

/**
 * `op` is any string: an op the server does not implement evaluates that leaf to false (§3.0),
 * it does not invalidate the message. Extra node fields (`query`, `slop`, …) are ignored.
 */
export interface PredicateNode {
  readonly op: string
  readonly attribute?: string
  readonly value?: unknown
  readonly children?: ReadonlyArray<PredicateNode>
}

export const PredicateNodeSchema: Schema.Schema<PredicateNode> = Schema.Struct({
  op: Schema.String,
  attribute: opt(Schema.String),
  value: opt(Schema.Unknown),
  children: opt(Schema.Array(Schema.suspend((): Schema.Schema<PredicateNode> => PredicateNodeSchema)))
}).annotations({ identifier: "PredicateNode" })

export const SortDirectionSchema = Schema.Literal("asc", "desc")

/** Older object form `{ field: "asc" | "desc" }` (ordered by key order). */
export const SortObjectSchema = Schema.Record({ key: StorableString, value: SortDirectionSchema })
/** Newer array form `[{ field, direction }]`. */
export const SortArraySchema = Schema.Array(Schema.Struct({ field: Schema.String, direction: SortDirectionSchema }))
export const SortSpecSchema = Schema.Union(SortArraySchema, SortObjectSchema)
export type SortSpec = typeof SortSpecSchema.Type

export const AggregationSchema = Schema.Struct({
  func: Schema.Literal("count", "sum", "min", "max", "avg"),
  field: opt(Schema.String)
})
export type Aggregation = typeof AggregationSchema.Type

export const QuerySchema = Schema.Struct({
  where: opt(Schema.Record({ key: StorableString, value: Schema.Unknown })),
  predicate: opt(PredicateNodeSchema),
  sort: opt(SortSpecSchema),
  limit: opt(Int),
  cursor: opt(Schema.String),
  groupBy: opt(Schema.Array(Schema.String)),
  aggregations: opt(Schema.Array(AggregationSchema))
}).annotations({ identifier: "Query" })
export type Query = typeof QuerySchema.Type

export const SearchOptionsSchema = Schema.Struct({
  limit: opt(Int),
  minScore: opt(Schema.Number),
  boost: opt(Schema.Record({ key: StorableString, value: Schema.Number }))
}).annotations({ identifier: "SearchOptions" })
export type SearchOptions = typeof SearchOptionsSchema.Type

const CounterMap = Schema.Record({ key: StorableString, value: Schema.Number })

/** Inbound counter state: `{p, n}` (wire schema) and/or `{positive, negative}` (client), §3.8. */
export const PNCounterStateSchema = Schema.Struct({
  p: opt(CounterMap),
  n: opt(CounterMap),
  positive: opt(CounterMap),
  negative: opt(CounterMap)
}).annotations({ identifier: "PNCounterState" })
export type PNCounterState = typeof PNCounterStateSchema.Type

/** Outbound counter state: always all four keys (`positive` = `p`, `negative` = `n`). */
export const PNCounterStateOutSchema = Schema.Struct({
  p: CounterMap,
  n: CounterMap,
  positive: CounterMap,
  negative: CounterMap
}).annotations({ identifier: "PNCounterStateOut" })
export type PNCounterStateOut = typeof PNCounterStateOutSchema.Type

export const JournalEventTypeSchema = Schema.Literal("PUT", "UPDATE", "DELETE")
export type JournalEventType = typeof JournalEventTypeSchema.Type

export const JournalEventDataSchema = Schema.Struct({
  sequence: Schema.String,
  type: JournalEventTypeSchema,
  mapName: StorableString,
  key: StorableString,
  value: opt(Schema.Unknown),
  previousValue: opt(Schema.Unknown),
  timestamp: TimestampSchema,
  nodeId: StorableString,
  metadata: opt(Schema.Record({ key: StorableString, value: Schema.Unknown }))
}).annotations({ identifier: "JournalEventData" })
export type JournalEventData = typeof JournalEventDataSchema.Type

export const NodeStatusSchema = Schema.Literal("ACTIVE", "JOINING", "LEAVING", "SUSPECTED", "FAILED")

export const PartitionMapPayloadSchema = Schema.Struct({
  version: Int,
  partitionCount: Int,
  nodes: Schema.Array(Schema.Struct({
    nodeId: StorableString,
    endpoints: Schema.Struct({ websocket: Schema.String, http: opt(Schema.String) }),
    status: NodeStatusSchema
  })),
  partitions: Schema.Array(Schema.Struct({
    partitionId: Int,
    ownerNodeId: Schema.String,
    backupNodeIds: Schema.Array(Schema.String)
  })),
  generatedAt: Int
}).annotations({ identifier: "PartitionMapPayload" })
export type PartitionMapPayload = typeof PartitionMapPayloadSchema.Type

export const ServerEventPayloadSchema = Schema.Struct({
  mapName: StorableString,
  eventType: ClientOpKindSchema,
  key: StorableString,
  record: opt(LWWRecordSchema),
  orRecord: opt(ORMapRecordSchema),
  orTag: opt(StorableString)
}).annotations({ identifier: "ServerEventPayload" })
export type ServerEventPayload = typeof ServerEventPayloadSchema.Type

// ---------------------------------------------------------------------------------------------------
// Client → server messages

export const AuthMessage = flatMessage("AUTH", {
  token: Schema.String,
  protocolVersion: opt(Schema.Number),
  deviceToken: opt(Schema.String)
})
export type AuthMessage = typeof AuthMessage.Type

/** `timestamp` is echoed back in PONG; any number is accepted. */
export const PingMessage = flatMessage("PING", { timestamp: Schema.Number })
export type PingMessage = typeof PingMessage.Type

/** `payload` is validated per op by `validateClientOp` (refusal = OP_REJECTED / ERROR for this op). */
export const ClientOpMessage = Schema.Struct({ type: Schema.Literal("CLIENT_OP"), payload: Schema.Unknown })
export type ClientOpMessage = typeof ClientOpMessage.Type

/** Each element of `ops` is validated by `validateClientOp`; a bad op does not fail the batch. */
export const OpBatchMessage = payloadMessage("OP_BATCH", {
  ops: UnknownArray,
  writeConcern: opt(WriteConcernSchema),
  timeout: opt(NonNegativeInt)
})
export type OpBatchMessage = typeof OpBatchMessage.Type

/**
 * Transport container (§1.5). Inbound [head] layout: `data` = `[u32 BE len][msg]…`, see ./batch.ts.
 * `count` is not trusted. Also listed as a server message for completeness; Tessera never sends it.
 */
export const BatchMessage = flatMessage("BATCH", {
  count: opt(Schema.Number),
  data: Schema.Uint8ArrayFromSelf
})
export type BatchMessage = typeof BatchMessage.Type

export const SyncInitMessage = flatMessage("SYNC_INIT", {
  mapName: StorableString,
  lastSyncTimestamp: opt(Int)
})
export type SyncInitMessage = typeof SyncInitMessage.Type

export const MerkleReqBucketMessage = payloadMessage("MERKLE_REQ_BUCKET", {
  mapName: StorableString,
  path: Schema.String
})
export type MerkleReqBucketMessage = typeof MerkleReqBucketMessage.Type

export const ORMapSyncInitMessage = flatMessage("ORMAP_SYNC_INIT", {
  mapName: StorableString,
  rootHash: Schema.Number,
  bucketHashes: Schema.Record({ key: StorableString, value: Schema.Number }),
  lastSyncTimestamp: opt(Int),
  claimedEpoch: opt(Schema.Number)
})
export type ORMapSyncInitMessage = typeof ORMapSyncInitMessage.Type

export const ORMapMerkleReqBucketMessage = payloadMessage("ORMAP_MERKLE_REQ_BUCKET", {
  mapName: StorableString,
  path: Schema.String
})
export type ORMapMerkleReqBucketMessage = typeof ORMapMerkleReqBucketMessage.Type

export const ORMapDiffRequestMessage = payloadMessage("ORMAP_DIFF_REQUEST", {
  mapName: StorableString,
  keys: Schema.Array(Schema.String)
})
export type ORMapDiffRequestMessage = typeof ORMapDiffRequestMessage.Type

export const ORMapPushDiffMessage = payloadMessage("ORMAP_PUSH_DIFF", {
  mapName: StorableString,
  entries: Schema.Array(ORMapEntrySchema)
})
export type ORMapPushDiffMessage = typeof ORMapPushDiffMessage.Type

export const QuerySubMessage = payloadMessage("QUERY_SUB", {
  queryId: Schema.String,
  mapName: StorableString,
  query: QuerySchema,
  fields: opt(Schema.Array(Schema.String))
})
export type QuerySubMessage = typeof QuerySubMessage.Type

export const QueryUnsubMessage = payloadMessage("QUERY_UNSUB", { queryId: Schema.String })
export type QueryUnsubMessage = typeof QueryUnsubMessage.Type

export const SearchMessage = payloadMessage("SEARCH", {
  requestId: Schema.String,
  mapName: StorableString,
  query: Schema.String,
  options: opt(SearchOptionsSchema)
})
export type SearchMessage = typeof SearchMessage.Type

export const SearchSubMessage = payloadMessage("SEARCH_SUB", {
  subscriptionId: Schema.String,
  mapName: StorableString,
  query: Schema.String,
  options: opt(SearchOptionsSchema)
})
export type SearchSubMessage = typeof SearchSubMessage.Type

export const SearchUnsubMessage = payloadMessage("SEARCH_UNSUB", { subscriptionId: Schema.String })
export type SearchUnsubMessage = typeof SearchUnsubMessage.Type

/** Topic names are validated by the topic subsystem (ERROR 400 "Invalid topic name"). */
export const TopicSubMessage = payloadMessage("TOPIC_SUB", { topic: Schema.String })
export type TopicSubMessage = typeof TopicSubMessage.Type

export const TopicUnsubMessage = payloadMessage("TOPIC_UNSUB", { topic: Schema.String })
export type TopicUnsubMessage = typeof TopicUnsubMessage.Type

/** `data` may be absent (the client strips an `undefined` value); treat absent as null. */
export const TopicPubMessage = payloadMessage("TOPIC_PUB", { topic: Schema.String, data: Schema.Unknown })
export type TopicPubMessage = typeof TopicPubMessage.Type

export const LockRequestMessage = payloadMessage("LOCK_REQUEST", {
  requestId: Schema.String,
  name: StorableString,
  ttl: opt(Int)
})
export type LockRequestMessage = typeof LockRequestMessage.Type

export const LockReleaseMessage = payloadMessage("LOCK_RELEASE", {
  requestId: opt(Schema.String),
  name: StorableString,
  fencingToken: Int
})
export type LockReleaseMessage = typeof LockReleaseMessage.Type

export const CounterRequestMessage = payloadMessage("COUNTER_REQUEST", { name: StorableString })
export type CounterRequestMessage = typeof CounterRequestMessage.Type

export const CounterSyncMessage = payloadMessage("COUNTER_SYNC", {
  name: StorableString,
  state: PNCounterStateSchema
})
export type CounterSyncMessage = typeof CounterSyncMessage.Type

/** Length limits (name 1–100, code 1–10 000) are checked by the processor subsystem (§3.10). */
export const EntryProcessorDefSchema = Schema.Struct({
  name: StorableString,
  code: Schema.String,
  args: opt(Schema.Unknown)
})
export type EntryProcessorDef = typeof EntryProcessorDefSchema.Type

export const EntryProcessMessage = flatMessage("ENTRY_PROCESS", {
  requestId: Schema.String,
  mapName: StorableString,
  key: StorableString,
  processor: EntryProcessorDefSchema
})
export type EntryProcessMessage = typeof EntryProcessMessage.Type

export const EntryProcessBatchMessage = flatMessage("ENTRY_PROCESS_BATCH", {
  requestId: Schema.String,
  mapName: StorableString,
  keys: Schema.Array(Schema.String),
  processor: EntryProcessorDefSchema
})
export type EntryProcessBatchMessage = typeof EntryProcessBatchMessage.Type

/** Limits (name 1–100, code ≤ 50 000, priority integer 0–100) are checked by the resolver subsystem. */
export const ConflictResolverDefSchema = Schema.Struct({
  name: StorableString,
  code: Schema.String,
  priority: opt(Schema.Number),
  keyPattern: opt(Schema.String)
})
export type ConflictResolverDef = typeof ConflictResolverDefSchema.Type

export const RegisterResolverMessage = flatMessage("REGISTER_RESOLVER", {
  requestId: Schema.String,
  mapName: StorableString,
  resolver: ConflictResolverDefSchema
})
export type RegisterResolverMessage = typeof RegisterResolverMessage.Type

export const UnregisterResolverMessage = flatMessage("UNREGISTER_RESOLVER", {
  requestId: Schema.String,
  mapName: StorableString,
  resolverName: Schema.String
})
export type UnregisterResolverMessage = typeof UnregisterResolverMessage.Type

export const ListResolversMessage = flatMessage("LIST_RESOLVERS", {
  requestId: Schema.String,
  mapName: opt(StorableString)
})
export type ListResolversMessage = typeof ListResolversMessage.Type

export const PartitionMapRequestMessage = Schema.Struct({
  type: Schema.Literal("PARTITION_MAP_REQUEST"),
  payload: opt(Schema.Struct({ currentVersion: opt(Int) }))
})
export type PartitionMapRequestMessage = typeof PartitionMapRequestMessage.Type

export const JournalSubscribeMessage = flatMessage("JOURNAL_SUBSCRIBE", {
  requestId: Schema.String,
  fromSequence: opt(Schema.String),
  mapName: opt(StorableString),
  types: opt(Schema.Array(JournalEventTypeSchema))
})
export type JournalSubscribeMessage = typeof JournalSubscribeMessage.Type

export const JournalUnsubscribeMessage = flatMessage("JOURNAL_UNSUBSCRIBE", { subscriptionId: Schema.String })
export type JournalUnsubscribeMessage = typeof JournalUnsubscribeMessage.Type

export const JournalReadMessage = flatMessage("JOURNAL_READ", {
  requestId: Schema.String,
  fromSequence: Schema.String,
  limit: opt(Int),
  mapName: opt(StorableString)
})
export type JournalReadMessage = typeof JournalReadMessage.Type

// [head] client → server (§2.6, §3.4.2, §3.16)

export const DeviceHelloMessage = flatMessage("DEVICE_HELLO", { deviceToken: opt(Schema.String) })
export type DeviceHelloMessage = typeof DeviceHelloMessage.Type

export const ClientApplyAckMessage = flatMessage("CLIENT_APPLY_ACK", { cursor: Schema.Number })
export type ClientApplyAckMessage = typeof ClientApplyAckMessage.Type

export const QuerySyncInitMessage = payloadMessage("QUERY_SYNC_INIT", {
  queryId: Schema.String,
  rootHash: Schema.Number
})
export type QuerySyncInitMessage = typeof QuerySyncInitMessage.Type

export const SqlQueryMessage = payloadMessage("SQL_QUERY", { sql: Schema.String, queryId: Schema.String })
export type SqlQueryMessage = typeof SqlQueryMessage.Type

/**
 * `queryVector` is `bin` on the wire, but the client's pre-pass turns a Uint8Array into a
 * `{ "0": b0, … }` map (§1.3 E4), so it is left `unknown` for the vector subsystem.
 */
export const VectorSearchMessage = payloadMessage("VECTOR_SEARCH", {
  id: Schema.String,
  mapName: StorableString,
  indexName: opt(Schema.String),
  queryVector: Schema.Unknown,
  k: Int,
  efSearch: opt(Int),
  options: opt(Schema.Struct({
    includeValue: opt(Schema.Boolean),
    includeVectors: opt(Schema.Boolean),
    minScore: opt(Schema.Number),
    filter: opt(Schema.Unknown)
  }))
})
export type VectorSearchMessage = typeof VectorSearchMessage.Type

/** Methods are plain strings: a method the server cannot run is answered with an `error` (§3.16). */
const hybridSearchFields = {
  mapName: StorableString,
  queryText: Schema.String,
  methods: Schema.Array(Schema.String),
  k: Int,
  queryVector: opt(Schema.Unknown),
  predicate: opt(PredicateNodeSchema),
  includeValue: opt(Schema.Boolean),
  minScore: opt(Schema.Number)
}

export const HybridSearchMessage = payloadMessage("HYBRID_SEARCH", { requestId: Schema.String, ...hybridSearchFields })
export type HybridSearchMessage = typeof HybridSearchMessage.Type

export const HybridSearchSubMessage = payloadMessage("HYBRID_SEARCH_SUB", {
  subscriptionId: Schema.String,
  ...hybridSearchFields
})
export type HybridSearchSubMessage = typeof HybridSearchSubMessage.Type

export const HybridSearchUnsubMessage = payloadMessage("HYBRID_SEARCH_UNSUB", { subscriptionId: Schema.String })
export type HybridSearchUnsubMessage = typeof HybridSearchUnsubMessage.Type

/** Sent by the client but never implemented by TopGun servers: tolerated with any payload. */
export const HybridQuerySubscribeMessage = Schema.Struct({
  type: Schema.Literal("HYBRID_QUERY_SUBSCRIBE"),
  payload: opt(Schema.Unknown)
})
export type HybridQuerySubscribeMessage = typeof HybridQuerySubscribeMessage.Type

export const HybridQueryUnsubscribeMessage = Schema.Struct({
  type: Schema.Literal("HYBRID_QUERY_UNSUBSCRIBE"),
  payload: opt(Schema.Unknown)
})
export type HybridQueryUnsubscribeMessage = typeof HybridQueryUnsubscribeMessage.Type

/** Every client → server message, by `type`. */
export const clientMessageSchemas = {
  AUTH: AuthMessage,
  PING: PingMessage,
  CLIENT_OP: ClientOpMessage,
  OP_BATCH: OpBatchMessage,
  BATCH: BatchMessage,
  SYNC_INIT: SyncInitMessage,
  MERKLE_REQ_BUCKET: MerkleReqBucketMessage,
  ORMAP_SYNC_INIT: ORMapSyncInitMessage,
  ORMAP_MERKLE_REQ_BUCKET: ORMapMerkleReqBucketMessage,
  ORMAP_DIFF_REQUEST: ORMapDiffRequestMessage,
  ORMAP_PUSH_DIFF: ORMapPushDiffMessage,
  QUERY_SUB: QuerySubMessage,
  QUERY_UNSUB: QueryUnsubMessage,
  SEARCH: SearchMessage,
  SEARCH_SUB: SearchSubMessage,
  SEARCH_UNSUB: SearchUnsubMessage,
  TOPIC_SUB: TopicSubMessage,
  TOPIC_UNSUB: TopicUnsubMessage,
  TOPIC_PUB: TopicPubMessage,
  LOCK_REQUEST: LockRequestMessage,
  LOCK_RELEASE: LockReleaseMessage,
  COUNTER_REQUEST: CounterRequestMessage,
  COUNTER_SYNC: CounterSyncMessage,
  ENTRY_PROCESS: EntryProcessMessage,
  ENTRY_PROCESS_BATCH: EntryProcessBatchMessage,
  REGISTER_RESOLVER: RegisterResolverMessage,
  UNREGISTER_RESOLVER: UnregisterResolverMessage,
  LIST_RESOLVERS: ListResolversMessage,
  PARTITION_MAP_REQUEST: PartitionMapRequestMessage,
  JOURNAL_SUBSCRIBE: JournalSubscribeMessage,
  JOURNAL_UNSUBSCRIBE: JournalUnsubscribeMessage,
  JOURNAL_READ: JournalReadMessage,
  DEVICE_HELLO: DeviceHelloMessage,
  CLIENT_APPLY_ACK: ClientApplyAckMessage,
  QUERY_SYNC_INIT: QuerySyncInitMessage,
  SQL_QUERY: SqlQueryMessage,
  VECTOR_SEARCH: VectorSearchMessage,
  HYBRID_SEARCH: HybridSearchMessage,
  HYBRID_SEARCH_SUB: HybridSearchSubMessage,
  HYBRID_SEARCH_UNSUB: HybridSearchUnsubMessage,
  HYBRID_QUERY_SUBSCRIBE: HybridQuerySubscribeMessage,
  HYBRID_QUERY_UNSUBSCRIBE: HybridQueryUnsubscribeMessage
} as const

export const ClientMessage = Schema.Union(
  AuthMessage, PingMessage, ClientOpMessage, OpBatchMessage, BatchMessage, SyncInitMessage,
  MerkleReqBucketMessage, ORMapSyncInitMessage, ORMapMerkleReqBucketMessage, ORMapDiffRequestMessage,
  ORMapPushDiffMessage, QuerySubMessage, QueryUnsubMessage, SearchMessage, SearchSubMessage,
  SearchUnsubMessage, TopicSubMessage, TopicUnsubMessage, TopicPubMessage, LockRequestMessage,
  LockReleaseMessage, CounterRequestMessage, CounterSyncMessage, EntryProcessMessage,
  EntryProcessBatchMessage, RegisterResolverMessage, UnregisterResolverMessage, ListResolversMessage,
  PartitionMapRequestMessage, JournalSubscribeMessage, JournalUnsubscribeMessage, JournalReadMessage,
  DeviceHelloMessage, ClientApplyAckMessage, QuerySyncInitMessage, SqlQueryMessage, VectorSearchMessage,
  HybridSearchMessage, HybridSearchSubMessage, HybridSearchUnsubMessage, HybridQuerySubscribeMessage,
  HybridQueryUnsubscribeMessage
)
export type ClientMessage = typeof ClientMessage.Type
export type ClientMessageType = ClientMessage["type"]

// ---------------------------------------------------------------------------------------------------
// Server → client messages

export const AuthRequiredMessage = flatMessage("AUTH_REQUIRED", {})
export type AuthRequiredMessage = typeof AuthRequiredMessage.Type

export const AuthAckMessage = flatMessage("AUTH_ACK", {
  protocolVersion: opt(Schema.Number),
  userId: opt(Schema.String),
  deviceId: opt(Schema.String),
  deviceToken: opt(Schema.String)
})
export type AuthAckMessage = typeof AuthAckMessage.Type

export const AuthFailMessage = flatMessage("AUTH_FAIL", { error: opt(Schema.String), code: opt(Schema.Number) })
export type AuthFailMessage = typeof AuthFailMessage.Type

export const PongMessage = flatMessage("PONG", { timestamp: Schema.Number, serverTime: Schema.Number })
export type PongMessage = typeof PongMessage.Type

export const OpAckMessage = payloadMessage("OP_ACK", {
  lastId: Schema.String,
  achievedLevel: opt(WriteConcernSchema),
  results: opt(Schema.Array(OpResultSchema))
})
export type OpAckMessage = typeof OpAckMessage.Type

export const OpRejectedMessage = payloadMessage("OP_REJECTED", {
  opId: Schema.String,
  reason: Schema.String,
  code: opt(Int)
})
export type OpRejectedMessage = typeof OpRejectedMessage.Type

export const ServerEventMessage = Schema.Struct({
  type: Schema.Literal("SERVER_EVENT"),
  payload: ServerEventPayloadSchema,
  timestamp: opt(TimestampSchema)
})
export type ServerEventMessage = typeof ServerEventMessage.Type

export const ServerBatchEventMessage = Schema.Struct({
  type: Schema.Literal("SERVER_BATCH_EVENT"),
  payload: Schema.Struct({ events: Schema.Array(ServerEventPayloadSchema) }),
  timestamp: opt(TimestampSchema)
})
export type ServerBatchEventMessage = typeof ServerBatchEventMessage.Type

export const CursorStatusSchema = Schema.Literal("valid", "expired", "invalid", "none")
export type CursorStatus = typeof CursorStatusSchema.Type

export const QueryResultRowSchema = Schema.Struct({ key: StorableString, value: Schema.Unknown })

export const QueryRespMessage = payloadMessage("QUERY_RESP", {
  queryId: Schema.String,
  results: Schema.Array(QueryResultRowSchema),
  nextCursor: opt(Schema.String),
  hasMore: opt(Schema.Boolean),
  cursorStatus: opt(CursorStatusSchema),
  error: opt(Schema.String),
  code: opt(Schema.String)
})
export type QueryRespMessage = typeof QueryRespMessage.Type

/** `value` is null on LEAVE. */
export const QueryUpdateMessage = payloadMessage("QUERY_UPDATE", {
  queryId: Schema.String,
  key: StorableString,
  value: Schema.Unknown,
  changeType: ChangeEventTypeSchema
})
export type QueryUpdateMessage = typeof QueryUpdateMessage.Type

export const SearchResultSchema = Schema.Struct({
  key: StorableString,
  value: Schema.Unknown,
  score: Schema.Number,
  matchedTerms: Schema.Array(Schema.String)
})

/** `error` is present only on failure (the client rejects whenever it is present). */
export const SearchRespMessage = payloadMessage("SEARCH_RESP", {
  requestId: Schema.String,
  results: Schema.Array(SearchResultSchema),
  totalCount: Int,
  error: opt(Schema.String)
})
export type SearchRespMessage = typeof SearchRespMessage.Type

export const SearchUpdateMessage = payloadMessage("SEARCH_UPDATE", {
  subscriptionId: Schema.String,
  key: StorableString,
  value: Schema.Unknown,
  score: Schema.Number,
  matchedTerms: Schema.Array(Schema.String),
  changeType: ChangeEventTypeSchema
})
export type SearchUpdateMessage = typeof SearchUpdateMessage.Type

export const SyncRespRootMessage = payloadMessage("SYNC_RESP_ROOT", {
  mapName: StorableString,
  rootHash: Schema.Number,
  timestamp: TimestampSchema
})
export type SyncRespRootMessage = typeof SyncRespRootMessage.Type

const BucketHashes = Schema.Record({ key: StorableString, value: Schema.Number })

export const SyncRespBucketsMessage = payloadMessage("SYNC_RESP_BUCKETS", {
  mapName: StorableString,
  path: Schema.String,
  buckets: BucketHashes
})
export type SyncRespBucketsMessage = typeof SyncRespBucketsMessage.Type

export const SyncRespLeafMessage = payloadMessage("SYNC_RESP_LEAF", {
  mapName: StorableString,
  path: Schema.String,
  records: Schema.Array(Schema.Struct({ key: StorableString, record: LWWRecordSchema }))
})
export type SyncRespLeafMessage = typeof SyncRespLeafMessage.Type

export const SyncResetRequiredMessage = payloadMessage("SYNC_RESET_REQUIRED", {
  mapName: StorableString,
  reason: Schema.String
})
export type SyncResetRequiredMessage = typeof SyncResetRequiredMessage.Type

/** `coveringEpoch` / `fullResync` are [head]; Tessera never sends them (§3.4.2). */
export const ORMapSyncRespRootMessage = payloadMessage("ORMAP_SYNC_RESP_ROOT", {
  mapName: StorableString,
  rootHash: Schema.Number,
  timestamp: TimestampSchema,
  coveringEpoch: opt(Schema.Number),
  fullResync: opt(Schema.Boolean)
})
export type ORMapSyncRespRootMessage = typeof ORMapSyncRespRootMessage.Type

export const ORMapSyncRespBucketsMessage = payloadMessage("ORMAP_SYNC_RESP_BUCKETS", {
  mapName: StorableString,
  path: Schema.String,
  buckets: BucketHashes
})
export type ORMapSyncRespBucketsMessage = typeof ORMapSyncRespBucketsMessage.Type

export const ORMapSyncRespLeafMessage = payloadMessage("ORMAP_SYNC_RESP_LEAF", {
  mapName: StorableString,
  path: Schema.String,
  entries: Schema.Array(ORMapEntrySchema),
  coveringEpoch: opt(Schema.Number)
})
export type ORMapSyncRespLeafMessage = typeof ORMapSyncRespLeafMessage.Type

export const ORMapDiffResponseMessage = payloadMessage("ORMAP_DIFF_RESPONSE", {
  mapName: StorableString,
  entries: Schema.Array(ORMapEntrySchema),
  coveringEpoch: opt(Schema.Number)
})
export type ORMapDiffResponseMessage = typeof ORMapDiffResponseMessage.Type

/** `data` is delivered verbatim (nil stays nil); `timestamp` = server `Date.now()`. */
export const TopicMessageMessage = payloadMessage("TOPIC_MESSAGE", {
  topic: Schema.String,
  data: Schema.Unknown,
  publisherId: opt(Schema.String),
  timestamp: Schema.Number
})
export type TopicMessageMessage = typeof TopicMessageMessage.Type

export const LockGrantedMessage = payloadMessage("LOCK_GRANTED", {
  requestId: Schema.String,
  name: StorableString,
  fencingToken: Int
})
export type LockGrantedMessage = typeof LockGrantedMessage.Type

export const LockReleasedMessage = payloadMessage("LOCK_RELEASED", {
  requestId: opt(Schema.String),
  name: StorableString,
  success: Schema.Boolean
})
export type LockReleasedMessage = typeof LockReleasedMessage.Type

export const CounterResponseMessage = payloadMessage("COUNTER_RESPONSE", {
  name: StorableString,
  state: PNCounterStateOutSchema
})
export type CounterResponseMessage = typeof CounterResponseMessage.Type

export const CounterUpdateMessage = payloadMessage("COUNTER_UPDATE", {
  name: StorableString,
  state: PNCounterStateOutSchema
})
export type CounterUpdateMessage = typeof CounterUpdateMessage.Type

export const EntryProcessResultSchema = Schema.Struct({
  success: Schema.Boolean,
  result: opt(Schema.Unknown),
  newValue: opt(Schema.Unknown),
  error: opt(Schema.String)
})
export type EntryProcessResult = typeof EntryProcessResultSchema.Type

export const EntryProcessResponseMessage = flatMessage("ENTRY_PROCESS_RESPONSE", {
  requestId: Schema.String,
  ...EntryProcessResultSchema.fields
})
export type EntryProcessResponseMessage = typeof EntryProcessResponseMessage.Type

export const EntryProcessBatchResponseMessage = flatMessage("ENTRY_PROCESS_BATCH_RESPONSE", {
  requestId: Schema.String,
  results: Schema.Record({ key: StorableString, value: EntryProcessResultSchema })
})
export type EntryProcessBatchResponseMessage = typeof EntryProcessBatchResponseMessage.Type

export const RegisterResolverResponseMessage = flatMessage("REGISTER_RESOLVER_RESPONSE", {
  requestId: Schema.String,
  success: Schema.Boolean,
  error: opt(Schema.String)
})
export type RegisterResolverResponseMessage = typeof RegisterResolverResponseMessage.Type

export const UnregisterResolverResponseMessage = flatMessage("UNREGISTER_RESOLVER_RESPONSE", {
  requestId: Schema.String,
  success: Schema.Boolean,
  error: opt(Schema.String)
})
export type UnregisterResolverResponseMessage = typeof UnregisterResolverResponseMessage.Type

export const ResolverInfoSchema = Schema.Struct({
  mapName: StorableString,
  name: StorableString,
  priority: opt(Schema.Number),
  keyPattern: opt(Schema.String)
})

export const ListResolversResponseMessage = flatMessage("LIST_RESOLVERS_RESPONSE", {
  requestId: Schema.String,
  resolvers: Schema.Array(ResolverInfoSchema)
})
export type ListResolversResponseMessage = typeof ListResolversResponseMessage.Type

export const MergeRejectedMessage = flatMessage("MERGE_REJECTED", {
  mapName: StorableString,
  key: StorableString,
  attemptedValue: Schema.Unknown,
  reason: Schema.String,
  timestamp: TimestampSchema
})
export type MergeRejectedMessage = typeof MergeRejectedMessage.Type

export const PartitionMapMessage = Schema.Struct({
  type: Schema.Literal("PARTITION_MAP"),
  payload: PartitionMapPayloadSchema
})
export type PartitionMapMessage = typeof PartitionMapMessage.Type

export const PartitionMapDeltaMessage = payloadMessage("PARTITION_MAP_DELTA", {
  version: Int,
  previousVersion: Int,
  changes: Schema.Array(Schema.Struct({
    partitionId: Int,
    previousOwner: Schema.String,
    newOwner: Schema.String,
    reason: Schema.Literal("REBALANCE", "FAILOVER", "JOIN", "LEAVE")
  })),
  timestamp: Schema.Number
})
export type PartitionMapDeltaMessage = typeof PartitionMapDeltaMessage.Type

/** Event-wrapped: `{ type, event }`, single nesting (`event.event` never exists). */
export const JournalEventMessage = Schema.Struct({
  type: Schema.Literal("JOURNAL_EVENT"),
  event: JournalEventDataSchema
})
export type JournalEventMessage = typeof JournalEventMessage.Type

export const JournalReadResponseMessage = flatMessage("JOURNAL_READ_RESPONSE", {
  requestId: Schema.String,
  events: Schema.Array(JournalEventDataSchema),
  hasMore: Schema.Boolean
})
export type JournalReadResponseMessage = typeof JournalReadResponseMessage.Type

export const GcPruneMessage = payloadMessage("GC_PRUNE", { olderThan: TimestampSchema })
export type GcPruneMessage = typeof GcPruneMessage.Type

export const ErrorMessage = payloadMessage("ERROR", {
  code: Schema.Number,
  message: Schema.String,
  details: opt(Schema.Unknown)
})
export type ErrorMessage = typeof ErrorMessage.Type

export const ShutdownPendingMessage = flatMessage("SHUTDOWN_PENDING", { retryAfter: Schema.Number })
export type ShutdownPendingMessage = typeof ShutdownPendingMessage.Type

// [head] server → client

export const DeviceAckMessage = flatMessage("DEVICE_ACK", {
  deviceId: opt(Schema.String),
  deviceToken: opt(Schema.String)
})
export type DeviceAckMessage = typeof DeviceAckMessage.Type

export const SqlQueryRespMessage = payloadMessage("SQL_QUERY_RESP", {
  queryId: Schema.String,
  columns: Schema.Array(Schema.String),
  rows: Schema.Array(Schema.Array(Schema.Unknown)),
  error: opt(Schema.String),
  code: opt(Schema.String)
})
export type SqlQueryRespMessage = typeof SqlQueryRespMessage.Type

export const VectorSearchRespMessage = payloadMessage("VECTOR_SEARCH_RESP", {
  id: Schema.String,
  results: Schema.Array(Schema.Struct({
    key: StorableString,
    score: Schema.Number,
    value: opt(Schema.Unknown),
    vector: opt(Schema.Unknown)
  })),
  totalCandidates: Int,
  searchTimeMs: Schema.Number,
  error: opt(Schema.String)
})
export type VectorSearchRespMessage = typeof VectorSearchRespMessage.Type

const MethodScores = Schema.Record({ key: StorableString, value: Schema.Number })

export const HybridSearchRespMessage = payloadMessage("HYBRID_SEARCH_RESP", {
  requestId: Schema.String,
  results: Schema.Array(Schema.Struct({
    key: StorableString,
    score: Schema.Number,
    methodScores: MethodScores,
    value: opt(Schema.Unknown)
  })),
  searchTimeMs: Schema.Number,
  error: opt(Schema.String)
})
export type HybridSearchRespMessage = typeof HybridSearchRespMessage.Type

export const HybridSearchUpdateMessage = payloadMessage("HYBRID_SEARCH_UPDATE", {
  subscriptionId: Schema.String,
  key: StorableString,
  score: Schema.Number,
  methodScores: MethodScores,
  value: opt(Schema.Unknown),
  changeType: ChangeEventTypeSchema
})
export type HybridSearchUpdateMessage = typeof HybridSearchUpdateMessage.Type

/** Every server → client message, by `type` (BATCH included for completeness; never sent). */
export const serverMessageSchemas = {
  AUTH_REQUIRED: AuthRequiredMessage,
  AUTH_ACK: AuthAckMessage,
  AUTH_FAIL: AuthFailMessage,
  PONG: PongMessage,
  OP_ACK: OpAckMessage,
  OP_REJECTED: OpRejectedMessage,
  BATCH: BatchMessage,
  SERVER_EVENT: ServerEventMessage,
  SERVER_BATCH_EVENT: ServerBatchEventMessage,
  QUERY_RESP: QueryRespMessage,
  QUERY_UPDATE: QueryUpdateMessage,
  SEARCH_RESP: SearchRespMessage,
  SEARCH_UPDATE: SearchUpdateMessage,
  SYNC_RESP_ROOT: SyncRespRootMessage,
  SYNC_RESP_BUCKETS: SyncRespBucketsMessage,
  SYNC_RESP_LEAF: SyncRespLeafMessage,
  SYNC_RESET_REQUIRED: SyncResetRequiredMessage,
  ORMAP_SYNC_RESP_ROOT: ORMapSyncRespRootMessage,
  ORMAP_SYNC_RESP_BUCKETS: ORMapSyncRespBucketsMessage,
  ORMAP_SYNC_RESP_LEAF: ORMapSyncRespLeafMessage,
  ORMAP_DIFF_RESPONSE: ORMapDiffResponseMessage,
  TOPIC_MESSAGE: TopicMessageMessage,
  LOCK_GRANTED: LockGrantedMessage,
  LOCK_RELEASED: LockReleasedMessage,
  COUNTER_RESPONSE: CounterResponseMessage,
  COUNTER_UPDATE: CounterUpdateMessage,
  ENTRY_PROCESS_RESPONSE: EntryProcessResponseMessage,
  ENTRY_PROCESS_BATCH_RESPONSE: EntryProcessBatchResponseMessage,
  REGISTER_RESOLVER_RESPONSE: RegisterResolverResponseMessage,
  UNREGISTER_RESOLVER_RESPONSE: UnregisterResolverResponseMessage,
  LIST_RESOLVERS_RESPONSE: ListResolversResponseMessage,
  MERGE_REJECTED: MergeRejectedMessage,
  PARTITION_MAP: PartitionMapMessage,
  PARTITION_MAP_DELTA: PartitionMapDeltaMessage,
  JOURNAL_EVENT: JournalEventMessage,
  JOURNAL_READ_RESPONSE: JournalReadResponseMessage,
  GC_PRUNE: GcPruneMessage,
  ERROR: ErrorMessage,
  SHUTDOWN_PENDING: ShutdownPendingMessage,
  DEVICE_ACK: DeviceAckMessage,
  SQL_QUERY_RESP: SqlQueryRespMessage,
  VECTOR_SEARCH_RESP: VectorSearchRespMessage,
  HYBRID_SEARCH_RESP: HybridSearchRespMessage,
  HYBRID_SEARCH_UPDATE: HybridSearchUpdateMessage
} as const

export const ServerMessage = Schema.Union(
  AuthRequiredMessage, AuthAckMessage, AuthFailMessage, PongMessage, OpAckMessage, OpRejectedMessage,
  BatchMessage, ServerEventMessage, ServerBatchEventMessage, QueryRespMessage, QueryUpdateMessage,
  SearchRespMessage, SearchUpdateMessage, SyncRespRootMessage, SyncRespBucketsMessage, SyncRespLeafMessage,
  SyncResetRequiredMessage, ORMapSyncRespRootMessage, ORMapSyncRespBucketsMessage, ORMapSyncRespLeafMessage,
  ORMapDiffResponseMessage, TopicMessageMessage, LockGrantedMessage, LockReleasedMessage,
  CounterResponseMessage, CounterUpdateMessage, EntryProcessResponseMessage, EntryProcessBatchResponseMessage,
  RegisterResolverResponseMessage, UnregisterResolverResponseMessage, ListResolversResponseMessage,
  MergeRejectedMessage, PartitionMapMessage, PartitionMapDeltaMessage, JournalEventMessage,
  JournalReadResponseMessage, GcPruneMessage, ErrorMessage, ShutdownPendingMessage, DeviceAckMessage,
  SqlQueryRespMessage, VectorSearchRespMessage, HybridSearchRespMessage, HybridSearchUpdateMessage
)
export type ServerMessage = typeof ServerMessage.Type
export type ServerMessageType = ServerMessage["type"]

// ---------------------------------------------------------------------------------------------------
// HTTP sync (`POST /sync`, §3.12): request and response bodies (not WebSocket messages)

/** `operations` elements are validated one by one with `validateClientOp`, as for OP_BATCH. */
export const HttpSyncRequestSchema = Schema.Struct({
  clientId: opt(Schema.String),
  clientHlc: TimestampSchema,
  operations: opt(UnknownArray),
  syncMaps: opt(Schema.Array(Schema.Struct({ mapName: StorableString, lastSyncTimestamp: TimestampSchema }))),
  queries: opt(Schema.Array(Schema.Struct({
    queryId: Schema.String,
    mapName: StorableString,
    filter: Schema.Unknown,
    limit: opt(Int),
    offset: opt(Int),
    cursor: opt(Schema.String)
  }))),
  searches: opt(Schema.Array(Schema.Struct({
    searchId: Schema.String,
    mapName: StorableString,
    query: Schema.String,
    options: opt(SearchOptionsSchema)
  })))
}).annotations({ identifier: "HttpSyncRequest" })
export type HttpSyncRequest = typeof HttpSyncRequestSchema.Type

export const HttpSyncResponseSchema = Schema.Struct({
  serverHlc: TimestampSchema,
  ack: opt(Schema.Struct({ lastId: Schema.String, results: opt(Schema.Array(OpResultSchema)) })),
  deltas: opt(Schema.Array(Schema.Struct({
    mapName: StorableString,
    records: Schema.Array(Schema.Struct({
      key: StorableString,
      record: LWWRecordSchema,
      eventType: Schema.Literal("PUT", "REMOVE")
    })),
    serverSyncTimestamp: TimestampSchema
  }))),
  queryResults: opt(Schema.Array(Schema.Struct({
    queryId: Schema.String,
    results: Schema.Array(QueryResultRowSchema),
    hasMore: opt(Schema.Boolean),
    nextCursor: opt(Schema.String)
  }))),
  searchResults: opt(Schema.Array(Schema.Struct({
    searchId: Schema.String,
    results: Schema.Array(Schema.Unknown),
    totalCount: opt(Int)
  }))),
  errors: opt(Schema.Array(Schema.Struct({
    code: Schema.Number,
    message: Schema.String,
    context: opt(Schema.String)
  })))
}).annotations({ identifier: "HttpSyncResponse" })
export type HttpSyncResponse = typeof HttpSyncResponseSchema.Type

// ---------------------------------------------------------------------------------------------------
// Compile-time checks: decoded shared types fit the CRDT interfaces (src/crdt/types.ts).

type Assignable<A extends B, B> = A
type _TimestampFits = Assignable<typeof TimestampSchema.Type, Timestamp>
type _LWWRecordFits = Assignable<typeof LWWRecordSchema.Type, LWWRecord>
type _ORMapRecordFits = Assignable<typeof ORMapRecordSchema.Type, ORMapRecord>
type _WriteConcernFits = Assignable<typeof WriteConcernSchema.Type, WriteConcern>
type _WriteConcernExact = Assignable<WriteConcern, typeof WriteConcernSchema.Type>
