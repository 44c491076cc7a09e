/**
 * Table names, row codecs and the translation of a mutation batch into a few multi-row SQL statements,
 * shared by the SQLite and PostgreSQL layers. Plain code: it runs once per row on the hot paths (write
 * batches, cold loads).
 *
 * Values are stored as the JSON text of the value (LWW tombstone: SQL NULL), timestamps as three columns.
 * Merge awareness (behavior.md §3.26), identical in every layer:
 * - LWW row: replaced only when the incoming HLC is larger, comparing (millis, counter, nodeId). Node ids
 *   are compared byte-wise (SQLite BINARY, PostgreSQL `COLLATE "C"`), which equals the JavaScript string
 *   order for node ids (lowercase ASCII letters, digits and `-`).
 * - OR record: not inserted when its tag is tombstoned in that map; a same-tag record is replaced only by
 *   a larger HLC. A tombstone keeps its first `storedAt` and deletes the map's records with that tag.
 * - Map type: the first one wins. Meta: the last write wins.
 */
import type { LWWRecord, MapType, ORMapRecord, Timestamp } from "../../crdt/types.js"
import type { LoadedLww, LoadedOrRecord, LoadedOrTombstone, LwwRow, StorageMutation } from "../Storage.js"

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Table names are interpolated into SQL, so they are checked once here (behavior.md §3.13). */
export const identifier = (name: string): string => {
  if (!IDENTIFIER.test(name)) throw new Error(`Invalid SQL identifier: ${JSON.stringify(name)}`)
  return name
}

export const T = {
  lww: identifier("tessera_lww"),
  orRecords: identifier("tessera_or_records"),
  orTombstones: identifier("tessera_or_tombstones"),
  maps: identifier("tessera_maps"),
  meta: identifier("tessera_meta"),
  migrations: identifier("tessera_migrations"),
  // Cluster on PostgreSQL (behavior.md §3.26): change feed, membership, leader, locks.
  changes: identifier("tessera_changes"),
  changeSeq: identifier("tessera_change_seq"),
  clusterNodes: identifier("tessera_cluster_nodes"),
  clusterLeader: identifier("tessera_cluster_leader"),
  locks: identifier("tessera_locks"),
  lockQueue: identifier("tessera_lock_queue")
} as const

/** Node-metadata keys with this prefix hold PN counter states; PostgreSQL merges them (per-entry max). */
export const COUNTER_META_PREFIX = "counter:"

export type SqlArg = string | number | null

export interface SqlStatement<A = SqlArg> {
  readonly sql: string
  /** Scalars; PostgreSQL `unnest` statements take one array per column (`PgStatement`). */
  readonly args: Array<A>
  /**
   * Set when the statement ends with RETURNING the identities of the rows it really changed (PostgreSQL,
   * `batchStatements(…, { returning: true })`): which mutations must be published as change rows.
   */
  readonly returns?: "LwwPut" | "OrPut" | "OrTombstone"
}

export type PgStatement = SqlStatement<SqlArg | ReadonlyArray<SqlArg>>

/** How the two dialects spell a bind parameter; PostgreSQL casts so VALUES lists get column types. */
export interface Dialect<N extends "sqlite" | "postgres" = "sqlite" | "postgres"> {
  readonly name: N
  /** `n` is 1-based. */
  readonly param: (n: number, type: "text" | "int" | "bigint") => string
}

export const sqliteDialect: Dialect<"sqlite"> = { name: "sqlite", param: () => "?" }
export const postgresDialect: Dialect<"postgres"> = { name: "postgres", param: (n, type) => `$${n}::${type}` }

// ---------------------------------------------------------------------------------------------------------
// Value codec

/** JSON text of a value; `undefined` (never valid in a record) is stored as JSON null. */
export const encodeValue = (value: unknown): string => JSON.stringify(value) ?? "null"

const encodeLwwValue = (record: LWWRecord): string | null => (record.value === null ? null : encodeValue(record.value))

export { NodeIdInterner } from "../../crdt/node-ids.js"
import type { NodeIdInterner } from "../../crdt/node-ids.js"

const timestamp = (millis: number, counter: number, nodeId: string): Timestamp => ({ millis, counter, nodeId })

/** `storedAt` equal to the record's own timestamp shares its object (server timestamp mode). */
const storedAtOf = (ts: Timestamp, millis: number, counter: number, nodeId: string): Timestamp =>
  ts.millis === millis && ts.counter === counter && ts.nodeId === nodeId ? ts : timestamp(millis, counter, nodeId)

const toNumber = (v: unknown): number => (typeof v === "number" ? v : Number(v))

/** The record timestamp, storage time and optional `ttlMs` shared by LWW and OR rows. */
const decodeStamps = (
  ids: NodeIdInterner,
  millis: unknown,
  counter: unknown,
  nodeId: string,
  ttlMs: unknown,
  sMillis: unknown,
  sCounter: unknown,
  sNodeId: string
) => {
  const ts = timestamp(toNumber(millis), toNumber(counter), ids.intern(nodeId))
  const storedAt = storedAtOf(ts, toNumber(sMillis), toNumber(sCounter), ids.intern(sNodeId))
  const ttl = ttlMs === null || ttlMs === undefined ? {} : { ttlMs: toNumber(ttlMs) }
  return { ts, storedAt, ttl }
}

/**
 * Checks a stored LWW row `[key, valueJson, millis, counter, nodeId, ttlMs, storedMillis, storedCounter,
 * storedNodeId]` and makes its numbers numbers, in place (PostgreSQL's BIGINT may arrive as strings).
 * Throws on a malformed row (the caller reports the map as corrupt).
 */
export const toLwwRow = (r: Array<unknown>): LwwRow => {
  if (typeof r[0] !== "string" || (r[1] !== null && typeof r[1] !== "string") || typeof r[4] !== "string" || typeof r[8] !== "string") {
    throw new Error(`Malformed LWW row for key ${JSON.stringify(r[0])}`)
  }
  if (typeof r[2] !== "number") r[2] = toNumber(r[2])
  if (typeof r[3] !== "number") r[3] = toNumber(r[3])
  r[5] = r[5] === null || r[5] === undefined ? null : toNumber(r[5])
  if (typeof r[6] !== "number") r[6] = toNumber(r[6])
  if (typeof r[7] !== "number") r[7] = toNumber(r[7])
  return r as unknown as LwwRow
}

/** A flat row as a `LoadedLww` (value parsed): for callers that want records, not the loading map. */
export const loadedOfLwwRow = (ids: NodeIdInterner, r: LwwRow): LoadedLww =>
  decodeLww(ids, r[0], r[1] === null ? null : JSON.parse(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8])

/** Builds a loaded LWW row from column values (ints may arrive as strings from PostgreSQL's BIGINT). */
export const decodeLww = (
  ids: NodeIdInterner,
  key: string,
  value: unknown,
  millis: unknown,
  counter: unknown,
  nodeId: string,
  ttlMs: unknown,
  sMillis: unknown,
  sCounter: unknown,
  sNodeId: string
): LoadedLww => {
  const { ts, storedAt, ttl } = decodeStamps(ids, millis, counter, nodeId, ttlMs, sMillis, sCounter, sNodeId)
  const record: LWWRecord = { value, timestamp: ts, ...ttl }
  return { key, record, storedAt }
}

export const decodeOrRecord = (
  ids: NodeIdInterner,
  key: string,
  tag: string,
  value: unknown,
  millis: unknown,
  counter: unknown,
  nodeId: string,
  ttlMs: unknown,
  sMillis: unknown,
  sCounter: unknown,
  sNodeId: string
): LoadedOrRecord => {
  const { ts, storedAt, ttl } = decodeStamps(ids, millis, counter, nodeId, ttlMs, sMillis, sCounter, sNodeId)
  const record: ORMapRecord = { value, timestamp: ts, tag, ...ttl }
  return { key, record, storedAt }
}

export const decodeOrTombstone = (
  ids: NodeIdInterner,
  tag: string,
  sMillis: unknown,
  sCounter: unknown,
  sNodeId: string
): LoadedOrTombstone => ({ tag, storedAt: timestamp(toNumber(sMillis), toNumber(sCounter), ids.intern(sNodeId)) })

export const isMapType = (s: unknown): s is MapType => s === "LWW" || s === "OR"

// ---------------------------------------------------------------------------------------------------------
// Mutation batch → statements

/** Rows per multi-row statement: far below both engines' bind-parameter limits (SQLite 32766, PG 65535). */
const ROWS_PER_STATEMENT = 400

type Tag = StorageMutation["_tag"]

/** The row a mutation touches, for splitting a run where one row would be written twice by one statement. */
export const rowIdentity = (m: StorageMutation): string => {
  switch (m._tag) {
    case "LwwPut":
    case "LwwDelete":
      return `${m.mapName}\u0000${m.key}`
    case "OrPut":
      return `${m.mapName}\u0000${m.key}\u0000${m.record.tag}`
    case "OrRemove":
      return `${m.mapName}\u0000${m.key}\u0000${m.tag}`
    case "OrTombstone":
    case "OrPruneTombstone":
      return `${m.mapName}\u0000${m.tag}`
    case "MapType":
      return m.mapName
    case "Meta":
      return m.key
  }
}

/**
 * Splits the batch into runs of one mutation kind with distinct rows; runs keep batch order. Inside a run
 * the rows are sorted by identity (order is free there: the rows are distinct), so writers sharing one
 * database lock rows in one order and rarely deadlock.
 */
const runs = (batch: ReadonlyArray<StorageMutation>): Array<Array<StorageMutation>> => {
  const out = unsortedRuns(batch)
  for (const run of out) {
    if (run.length > 1) run.sort((a, b) => (rowIdentity(a) < rowIdentity(b) ? -1 : rowIdentity(a) > rowIdentity(b) ? 1 : 0))
  }
  return out
}

const unsortedRuns = (batch: ReadonlyArray<StorageMutation>): Array<Array<StorageMutation>> => {
  const out: Array<Array<StorageMutation>> = []
  let current: Array<StorageMutation> = []
  let tag: Tag | undefined
  let seen = new Set<string>()
  for (const m of batch) {
    const id = rowIdentity(m)
    if (m._tag !== tag || current.length >= ROWS_PER_STATEMENT || seen.has(id)) {
      if (current.length > 0) out.push(current)
      current = []
      seen = new Set()
      tag = m._tag
    }
    current.push(m)
    seen.add(id)
  }
  if (current.length > 0) out.push(current)
  return out
}

type ColType = "text" | "int" | "bigint"

/**
 * Integer columns get integers: a fractional number would be rejected by PostgreSQL's BIGINT and, retried
 * forever, block the write-behind queue. Validation upstream should already guarantee integers.
 */
const int = (n: number): number => (Number.isSafeInteger(n) ? n : Number.isFinite(n) ? Math.trunc(n) : 0)
const optInt = (n: number | undefined): number | null => (n === undefined ? null : int(n))

/** `(p1, p2, ...), (...)` for `rows` rows of the given column types, numbering from 1. */
const valuesList = (d: Dialect, rows: number, types: ReadonlyArray<ColType>): string => {
  const parts: Array<string> = []
  let n = 1
  for (let r = 0; r < rows; r++) {
    const cols: Array<string> = []
    for (const type of types) cols.push(d.param(n++, type))
    parts.push(`(${cols.join(",")})`)
  }
  return parts.join(",")
}

const LWW_COLS = "map_name,key,value,ts_millis,ts_counter,ts_node_id,ttl_ms,stored_millis,stored_counter,stored_node_id"
const LWW_TYPES: ReadonlyArray<ColType> = ["text", "text", "text", "bigint", "bigint", "text", "bigint", "bigint", "bigint", "text"]
const OR_COLS = "map_name,key,tag,value,ts_millis,ts_counter,ts_node_id,ttl_ms,stored_millis,stored_counter,stored_node_id"
const OR_TYPES: ReadonlyArray<ColType> = ["text", "text", "text", "text", "bigint", "bigint", "text", "bigint", "bigint", "bigint", "text"]

const updateAll = (cols: string, skip: ReadonlyArray<string>): string =>
  cols.split(",").filter((c) => !skip.includes(c)).map((c) => `${c}=excluded.${c}`).join(",")

const newerThan = (table: string): string =>
  `(excluded.ts_millis,excluded.ts_counter,excluded.ts_node_id) > (${table}.ts_millis,${table}.ts_counter,${table}.ts_node_id)`

/**
 * PostgreSQL LWW upserts take one array per column (`unnest`): the statement text is the same for every
 * batch size, so the server parses and plans it once instead of once per distinct row count, and ten
 * parameters replace up to 4,000.
 */
const lwwPutUnnest = (run: ReadonlyArray<Extract<StorageMutation, { _tag: "LwwPut" }>>, returning: boolean): PgStatement => {
  const columns: Array<Array<string | number | null>> = LWW_TYPES.map(() => [])
  for (const m of run) {
    const r = m.record
    columns[0]!.push(m.mapName)
    columns[1]!.push(m.key)
    columns[2]!.push(encodeLwwValue(r))
    columns[3]!.push(int(r.timestamp.millis))
    columns[4]!.push(int(r.timestamp.counter))
    columns[5]!.push(r.timestamp.nodeId)
    columns[6]!.push(optInt(r.ttlMs))
    columns[7]!.push(int(m.storedAt.millis))
    columns[8]!.push(int(m.storedAt.counter))
    columns[9]!.push(m.storedAt.nodeId)
  }
  return {
    sql: `INSERT INTO ${T.lww} (${LWW_COLS}) SELECT * FROM unnest(${LWW_TYPES.map((t, i) => `$${i + 1}::${t}[]`).join(",")}) ` +
      `ON CONFLICT (map_name,key) DO UPDATE SET ${updateAll(LWW_COLS, ["map_name", "key"])} WHERE ${newerThan(T.lww)}` +
      (returning ? " RETURNING map_name, key" : ""),
    args: columns,
    ...(returning ? { returns: "LwwPut" as const } : {})
  }
}

const statementFor = (d: Dialect, run: ReadonlyArray<StorageMutation>, returning: boolean): Array<PgStatement> => {
  const first = run[0]!
  const args: Array<string | number | null> = []
  switch (first._tag) {
    case "LwwPut": {
      if (d.name === "postgres") return [lwwPutUnnest(run as ReadonlyArray<Extract<StorageMutation, { _tag: "LwwPut" }>>, returning)]
      for (const m of run as ReadonlyArray<Extract<StorageMutation, { _tag: "LwwPut" }>>) {
        const r = m.record
        args.push(m.mapName, m.key, encodeLwwValue(r), int(r.timestamp.millis), int(r.timestamp.counter), r.timestamp.nodeId,
          optInt(r.ttlMs), int(m.storedAt.millis), int(m.storedAt.counter), m.storedAt.nodeId)
      }
      return [{
        sql: `INSERT INTO ${T.lww} (${LWW_COLS}) VALUES ${valuesList(d, run.length, LWW_TYPES)} ` +
          `ON CONFLICT (map_name,key) DO UPDATE SET ${updateAll(LWW_COLS, ["map_name", "key"])} WHERE ${newerThan(T.lww)}` +
          (returning ? " RETURNING map_name, key" : ""),
        args,
        ...(returning ? { returns: "LwwPut" as const } : {})
      }]
    }
    case "LwwDelete": {
      for (const m of run as ReadonlyArray<Extract<StorageMutation, { _tag: "LwwDelete" }>>) args.push(m.mapName, m.key)
      return [{
        sql: `DELETE FROM ${T.lww} WHERE (map_name,key) IN (VALUES ${valuesList(d, run.length, ["text", "text"])})`,
        args
      }]
    }
    case "OrPut": {
      for (const m of run as ReadonlyArray<Extract<StorageMutation, { _tag: "OrPut" }>>) {
        const r = m.record
        args.push(m.mapName, m.key, r.tag, encodeValue(r.value), int(r.timestamp.millis), int(r.timestamp.counter), r.timestamp.nodeId,
          optInt(r.ttlMs), int(m.storedAt.millis), int(m.storedAt.counter), m.storedAt.nodeId)
      }
      // A tombstoned tag is never re-added (the WHERE also disambiguates SQLite's INSERT…SELECT…ON CONFLICT).
      return [{
        sql: `INSERT INTO ${T.orRecords} (${OR_COLS}) SELECT * FROM (VALUES ${valuesList(d, run.length, OR_TYPES)}) AS v ` +
          `WHERE NOT EXISTS (SELECT 1 FROM ${T.orTombstones} t WHERE t.map_name = v.column1 AND t.tag = v.column3) ` +
          `ON CONFLICT (map_name,key,tag) DO UPDATE SET ${updateAll(OR_COLS, ["map_name", "key", "tag"])} WHERE ${newerThan(T.orRecords)}` +
          (returning ? " RETURNING map_name, key, tag" : ""),
        args,
        ...(returning ? { returns: "OrPut" as const } : {})
      }]
    }
    case "OrRemove": {
      for (const m of run as ReadonlyArray<Extract<StorageMutation, { _tag: "OrRemove" }>>) args.push(m.mapName, m.key, m.tag)
      return [{
        sql: `DELETE FROM ${T.orRecords} WHERE (map_name,key,tag) IN (VALUES ${valuesList(d, run.length, ["text", "text", "text"])})`,
        args
      }]
    }
    case "OrTombstone": {
      const tagArgs: Array<string> = []
      for (const m of run as ReadonlyArray<Extract<StorageMutation, { _tag: "OrTombstone" }>>) {
        args.push(m.mapName, m.tag, int(m.storedAt.millis), int(m.storedAt.counter), m.storedAt.nodeId)
        tagArgs.push(m.mapName, m.tag)
      }
      return [
        {
          sql: `INSERT INTO ${T.orTombstones} (map_name,tag,stored_millis,stored_counter,stored_node_id) ` +
            `VALUES ${valuesList(d, run.length, ["text", "text", "bigint", "bigint", "text"])} ON CONFLICT (map_name,tag) DO NOTHING` +
            (returning ? " RETURNING map_name, tag" : ""),
          args,
          ...(returning ? { returns: "OrTombstone" as const } : {})
        },
        {
          sql: `DELETE FROM ${T.orRecords} WHERE (map_name,tag) IN (VALUES ${valuesList(d, run.length, ["text", "text"])})`,
          args: tagArgs
        }
      ]
    }
    case "OrPruneTombstone": {
      for (const m of run as ReadonlyArray<Extract<StorageMutation, { _tag: "OrPruneTombstone" }>>) args.push(m.mapName, m.tag)
      return [{
        sql: `DELETE FROM ${T.orTombstones} WHERE (map_name,tag) IN (VALUES ${valuesList(d, run.length, ["text", "text"])})`,
        args
      }]
    }
    case "MapType": {
      for (const m of run as ReadonlyArray<Extract<StorageMutation, { _tag: "MapType" }>>) args.push(m.mapName, m.mapType)
      return [{
        sql: `INSERT INTO ${T.maps} (map_name,map_type) VALUES ${valuesList(d, run.length, ["text", "text"])} ` +
          `ON CONFLICT (map_name) DO NOTHING`,
        args
      }]
    }
    case "Meta": {
      for (const m of run as ReadonlyArray<Extract<StorageMutation, { _tag: "Meta" }>>) args.push(m.key, m.value)
      return [{
        sql: `INSERT INTO ${T.meta} (key,value) VALUES ${valuesList(d, run.length, ["text", "text"])} ` +
          // PostgreSQL: counter states from several nodes merge (tessera_merge_pn, migration 2), the rest LWW.
          (d.name === "postgres"
            ? `ON CONFLICT (key) DO UPDATE SET value = CASE WHEN starts_with(excluded.key, '${COUNTER_META_PREFIX}') ` +
              `THEN tessera_merge_pn(${T.meta}.value, excluded.value) ELSE excluded.value END`
            : `ON CONFLICT (key) DO UPDATE SET value=excluded.value`),
        args
      }]
    }
  }
}

/** The statements that apply `batch` in order; run them in one transaction. Only PostgreSQL gets array arguments. */
export function batchStatements(d: Dialect<"sqlite">, batch: ReadonlyArray<StorageMutation>): Array<SqlStatement>
export function batchStatements(d: Dialect, batch: ReadonlyArray<StorageMutation>, opts?: { readonly returning?: boolean }): Array<PgStatement>
export function batchStatements(
  d: Dialect,
  batch: ReadonlyArray<StorageMutation>,
  opts: { readonly returning?: boolean } = {}
): Array<PgStatement> {
  const out: Array<PgStatement> = []
  const returning = opts.returning === true && d.name === "postgres"
  for (const run of runs(batch)) for (const s of statementFor(d, run, returning)) out.push(s)
  return out
}
