/**
 * SQLite statements for a mutation batch with ONE bound parameter per statement: the rows of a run as one
 * JSON array, unpacked by SQLite with `json_each` (as bench/coldstart.ts prepares its fixture). Binding ten
 * parameters per row and parsing a fresh 4 000-placeholder statement per chunk cost ~9 µs per row; this costs
 * a fraction of that. Same statements otherwise as `batchStatements` (schema.ts), merge-aware conditions
 * included, and the same run splitting: one kind per statement, no row twice in one statement, batch order.
 *
 * SQLite's JSON decoding differs from binding a JS string in one corner: a `\uXXXX` escape of a lone
 * surrogate (or of a control character, NUL included) in a key, tag, map name or node id. A run whose JSON
 * holds such an escape therefore falls back to `batchStatements` (bound parameters): exact in every case, and
 * only slower in a rare one. (Escapes inside a value's JSON text are doubled, `\\u`, and do not count.)
 */
import type { StorageMutation } from "../Storage.js"
import { batchStatements, encodeValue, rowIdentity, type SqlStatement, sqliteDialect, T } from "./schema.js"

type Cell = string | number | null

/** Integer columns get integers (as `batchStatements` does): a NaN or fraction never reaches the store. */
const int = (n: number): number => (Number.isSafeInteger(n) ? n : Number.isFinite(n) ? Math.trunc(n) : 0)
const optInt = (n: number | undefined): number | null => (n === undefined ? null : int(n))

/** `j.value->>0, j.value->>1, …` for `n` columns of the current json_each element. */
const cols = (n: number): string => Array.from({ length: n }, (_, i) => `j.value->>${i}`).join(",")

const LWW_COLS = "map_name,key,value,ts_millis,ts_counter,ts_node_id,ttl_ms,stored_millis,stored_counter,stored_node_id"
const OR_COLS = "map_name,key,tag,value,ts_millis,ts_counter,ts_node_id,ttl_ms,stored_millis,stored_counter,stored_node_id"
const updateAll = (columns: string, skip: ReadonlyArray<string>): string =>
  columns.split(",").filter((c) => !skip.includes(c)).map((c) => `${c}=excluded.${c}`).join(",")
const newerThan = (table: string): string =>
  `(excluded.ts_millis,excluded.ts_counter,excluded.ts_node_id) > (${table}.ts_millis,${table}.ts_counter,${table}.ts_node_id)`

/** `WHERE true` disambiguates SQLite's INSERT … SELECT … ON CONFLICT parse. */
const SQL = {
  LwwPut: `INSERT INTO ${T.lww} (${LWW_COLS}) SELECT ${cols(10)} FROM json_each(?) AS j WHERE true ` +
    `ON CONFLICT (map_name,key) DO UPDATE SET ${updateAll(LWW_COLS, ["map_name", "key"])} WHERE ${newerThan(T.lww)}`,
  LwwDelete: `DELETE FROM ${T.lww} WHERE (map_name,key) IN (SELECT ${cols(2)} FROM json_each(?) AS j)`,
  // A tombstoned tag is never re-added.
  OrPut: `INSERT INTO ${T.orRecords} (${OR_COLS}) SELECT ${cols(11)} FROM json_each(?) AS j ` +
    `WHERE NOT EXISTS (SELECT 1 FROM ${T.orTombstones} t WHERE t.map_name = j.value->>0 AND t.tag = j.value->>2) ` +
    `ON CONFLICT (map_name,key,tag) DO UPDATE SET ${updateAll(OR_COLS, ["map_name", "key", "tag"])} WHERE ${newerThan(T.orRecords)}`,
  OrRemove: `DELETE FROM ${T.orRecords} WHERE (map_name,key,tag) IN (SELECT ${cols(3)} FROM json_each(?) AS j)`,
  OrTombstone: `INSERT INTO ${T.orTombstones} (map_name,tag,stored_millis,stored_counter,stored_node_id) ` +
    `SELECT ${cols(5)} FROM json_each(?) AS j WHERE true ON CONFLICT (map_name,tag) DO NOTHING`,
  /** Second statement of a tombstone run, over the same parameter: its tag's records go away. */
  OrTombstoneRecords: `DELETE FROM ${T.orRecords} WHERE (map_name,tag) IN (SELECT ${cols(2)} FROM json_each(?) AS j)`,
  OrPruneTombstone: `DELETE FROM ${T.orTombstones} WHERE (map_name,tag) IN (SELECT ${cols(2)} FROM json_each(?) AS j)`,
  MapType: `INSERT INTO ${T.maps} (map_name,map_type) SELECT ${cols(2)} FROM json_each(?) AS j WHERE true ` +
    `ON CONFLICT (map_name) DO NOTHING`,
  Meta: `INSERT INTO ${T.meta} (key,value) SELECT ${cols(2)} FROM json_each(?) AS j WHERE true ` +
    `ON CONFLICT (key) DO UPDATE SET value=excluded.value`
} as const

/** The columns of one mutation, in the order of its statement's `j.value->>i`. */
const row = (m: StorageMutation): Array<Cell> => {
  switch (m._tag) {
    case "LwwPut": {
      const r = m.record
      return [m.mapName, m.key, r.value === null ? null : encodeValue(r.value), int(r.timestamp.millis), int(r.timestamp.counter),
        r.timestamp.nodeId, optInt(r.ttlMs), int(m.storedAt.millis), int(m.storedAt.counter), m.storedAt.nodeId]
    }
    case "OrPut": {
      const r = m.record
      return [m.mapName, m.key, r.tag, encodeValue(r.value), int(r.timestamp.millis), int(r.timestamp.counter), r.timestamp.nodeId,
        optInt(r.ttlMs), int(m.storedAt.millis), int(m.storedAt.counter), m.storedAt.nodeId]
    }
    case "OrTombstone":
      return [m.mapName, m.tag, int(m.storedAt.millis), int(m.storedAt.counter), m.storedAt.nodeId]
    case "LwwDelete":
      return [m.mapName, m.key]
    case "OrRemove":
      return [m.mapName, m.key, m.tag]
    case "OrPruneTombstone":
      return [m.mapName, m.tag]
    case "MapType":
      return [m.mapName, m.mapType]
    case "Meta":
      return [m.key, m.value]
  }
}

/** Whether the JSON text holds a `\uXXXX` escape (one not itself preceded by an escaping backslash). */
export const hasUnicodeEscape = (json: string): boolean => {
  for (let at = json.indexOf("\\u"); at !== -1; at = json.indexOf("\\u", at + 2)) {
    let backslashes = 1
    while (at - backslashes >= 0 && json.charCodeAt(at - backslashes) === 92) backslashes++
    if (backslashes % 2 === 1) return true
  }
  return false
}

const runStatements = (run: ReadonlyArray<StorageMutation>, out: Array<SqlStatement>): void => {
  const rows: Array<Array<Cell>> = new Array(run.length)
  for (let i = 0; i < run.length; i++) rows[i] = row(run[i]!)
  const json = JSON.stringify(rows)
  if (hasUnicodeEscape(json)) {
    for (const s of batchStatements(sqliteDialect, run)) out.push(s)
    return
  }
  const tag = run[0]!._tag
  out.push({ sql: SQL[tag], args: [json] })
  if (tag === "OrTombstone") out.push({ sql: SQL.OrTombstoneRecords, args: [json] })
}

/** The statements that apply `batch` in order; run them in one transaction. */
export const sqliteBatchStatements = (batch: ReadonlyArray<StorageMutation>): Array<SqlStatement> => {
  const out: Array<SqlStatement> = []
  let run: Array<StorageMutation> = []
  let seen = new Set<string>()
  for (const m of batch) {
    const id = rowIdentity(m)
    if (run.length > 0 && (m._tag !== run[0]!._tag || seen.has(id))) {
      runStatements(run, out)
      run = []
      seen = new Set()
    }
    run.push(m)
    seen.add(id)
  }
  if (run.length > 0) runStatements(run, out)
  return out
}
