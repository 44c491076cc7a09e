/**
 * PostgreSQL store through `@effect/sql-pg`. Same tables and merge-aware upserts as the SQLite file
 * (schema.ts), so several nodes may share one database (behavior.md §3.26). A batch is one transaction
 * of a few multi-row statements; loads read key ranges as row arrays (`rowMode: "array"`).
 *
 * Limitation: PostgreSQL text cannot hold U+0000, so a map name, key, tag or node id containing it fails
 * its batch (values are JSON text, where it is escaped). Such names should be refused at validation.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import { type Context, Duration, Effect, Layer, Option, Redacted, type Stream } from "effect"
import type { MapType } from "../../crdt/types.js"
import type { LoadedChunk, Storage, StorageService } from "../Storage.js"
import { describeCause, StorageError } from "./errors.js"
import { migrationsTableSql, runMigrations } from "./migrations.js"
import { batchStatements, decodeOrRecord, decodeOrTombstone, isMapType, NodeIdInterner, postgresDialect, T, toLwwRow } from "./schema.js"
import { collectMap, lwwRowChunks, mapChunks, type Page, pages } from "./load.js"
import { appendChangeRows, changeRowsFor, emptyChangedRows, recordReturned } from "../cluster/change-rows.js"

export interface PostgresStorageOptions {
  readonly url: string
  /**
   * Cluster mode (behavior.md §3.26): every batch also writes, in its own transaction, a change row per
   * row it really changed (RETURNING), attributed to `nodeId`, and NOTIFYs the partitions.
   */
  readonly changeFeed?: { readonly nodeId: string }
}

/** Serializes concurrent migrations of several nodes starting on one database. */
const MIGRATION_LOCK_ID = 0x7e55e7a

/** The URL without its password, for messages and logs. */
export const redactUrl = (url: string): string => {
  try {
    const u = new URL(url)
    if (u.password !== "") u.password = "***"
    return u.toString()
  } catch {
    return "<invalid PostgreSQL URL>"
  }
}

const failed = (what: string) => (e: unknown) => new StorageError({ message: `${what}: ${describeCause(e)}`, cause: e })

const parseValue = (text: unknown): unknown => (text === null || text === undefined ? null : JSON.parse(String(text)))

export const makePostgresStorage = (opts: PostgresStorageOptions) =>
  Effect.gen(function*() {
    const where = `PostgreSQL at ${redactUrl(opts.url)}`
    const sql: SqlClient.SqlClient = yield* PgClient.make({
      url: Redacted.make(opts.url),
      connectTimeout: Duration.seconds(10),
      applicationName: "tessera"
    }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.mapError(failed(`Cannot connect to ${where}`))
    )
    const unsafe = (text: string, args: ReadonlyArray<unknown>) => sql.unsafe(text, args as Array<unknown>)

    // One transaction under an advisory lock: nodes starting together migrate one after the other.
    yield* sql.withTransaction(
      Effect.gen(function*() {
        yield* unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_ID})`, [])
        yield* runMigrations({
          dialect: postgresDialect,
          appliedVersions: Effect.gen(function*() {
            yield* unsafe(migrationsTableSql(postgresDialect), [])
            const rows = yield* unsafe(`SELECT version FROM ${T.migrations}`, []).values
            return rows.map((r) => Number(r[0]))
          }).pipe(Effect.mapError(failed(`Cannot read the schema version of ${where}`))),
          apply: (m, statements) =>
            Effect.gen(function*() {
              for (const s of statements) yield* unsafe(s, [])
              yield* unsafe(`INSERT INTO ${T.migrations} (version, name, applied_at) VALUES ($1, $2, $3)`, [m.version, m.name, Date.now()])
            }).pipe(Effect.mapError(failed(`Migration ${m.version} (${m.name}) failed on ${where}`)))
        })
      })
    ).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(failed(`Cannot migrate ${where}`)(e))))

    const pageQuery = (table: string, cols: string, order: string, keyset: string | undefined, limitParam: number) =>
      `SELECT ${cols} FROM ${table} WHERE map_name = $1 ${keyset === undefined ? "" : `AND ${keyset}`} ORDER BY ${order} LIMIT $${limitParam}`

    // `value::json::text`: validated, verbatim (`LwwRow` column order; the loading map keeps the text).
    const LWW_COLS = "key, value::json::text, ts_millis, ts_counter, ts_node_id, ttl_ms, stored_millis, stored_counter, stored_node_id"
    const OR_COLS = "key, tag, value, ts_millis, ts_counter, ts_node_id, ttl_ms, stored_millis, stored_counter, stored_node_id"
    const TOMB_COLS = "tag, stored_millis, stored_counter, stored_node_id"
    const lwwFirst = pageQuery(T.lww, LWW_COLS, "key", undefined, 2)
    const lwwNext = pageQuery(T.lww, LWW_COLS, "key", "key > $2", 3)
    const orFirst = pageQuery(T.orRecords, OR_COLS, "key, tag", undefined, 2)
    const orNext = pageQuery(T.orRecords, OR_COLS, "key, tag", "(key, tag) > ($2, $3)", 4)
    const tombFirst = pageQuery(T.orTombstones, TOMB_COLS, "tag", undefined, 2)
    const tombNext = pageQuery(T.orTombstones, TOMB_COLS, "tag", "tag > $2", 3)

    /** One page as row arrays; `valueCol` (or -1) is the JSON text column, measured for page sizing. */
    const fetchPage = <A>(
      name: string,
      first: string,
      next: string,
      cursorCols: number,
      valueCol: number,
      decode: (row: ReadonlyArray<any>) => A
    ) =>
    (cursor: ReadonlyArray<unknown> | undefined, limit: number): Effect.Effect<Page<A>, StorageError> =>
      unsafe(cursor === undefined ? first : next, cursor === undefined ? [name, limit] : [name, ...cursor, limit]).values.pipe(
        Effect.mapError(failed(`Cannot load map ${JSON.stringify(name)} from ${where}`)),
        Effect.flatMap((rows) =>
          Effect.try({
            try: (): Page<A> => {
              let chars = 0
              for (const r of rows) chars += 64 + (valueCol >= 0 && typeof r[valueCol] === "string" ? (r[valueCol] as string).length : 0)
              return { rows: rows.map(decode), last: rows.length === 0 ? undefined : rows[rows.length - 1]!.slice(0, cursorCols), chars }
            },
            catch: failed(`Corrupt rows in map ${JSON.stringify(name)} in ${where}`)
          })
        )
      )

    const streamMap = (name: string, chunkSize = 5000): Stream.Stream<LoadedChunk, StorageError> => {
      const ids = new NodeIdInterner()
      return mapChunks(
        pages(chunkSize, fetchPage(name, tombFirst, tombNext, 1, -1, (r) => decodeOrTombstone(ids, r[0], r[1], r[2], r[3]))),
        pages(chunkSize, fetchPage(name, orFirst, orNext, 2, 2, (r) =>
          decodeOrRecord(ids, r[0], r[1], parseValue(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9]))),
        lwwRowChunks(pages(chunkSize, fetchPage(name, lwwFirst, lwwNext, 1, 1, (r) => toLwwRow(r as Array<unknown>))))
      )
    }

    const getMapType = (name: string): Effect.Effect<Option.Option<MapType>, StorageError> =>
      unsafe(`SELECT map_type FROM ${T.maps} WHERE map_name = $1`, [name]).values.pipe(
        Effect.map((rows) => Option.filter(Option.fromNullable(rows[0]?.[0]), isMapType)),
        Effect.mapError(failed(`Cannot read the type of map ${JSON.stringify(name)} from ${where}`))
      )

    const service: StorageService = {
      kind: "postgres",
      durable: true,
      listMaps: unsafe(`SELECT map_name, map_type FROM ${T.maps} ORDER BY map_name`, []).values.pipe(
        Effect.map((rows) =>
          rows.filter((r) => isMapType(r[1])).map((r) => ({ name: r[0] as string, mapType: r[1] as MapType }))
        ),
        Effect.mapError(failed(`Cannot list maps in ${where}`))
      ),
      loadMap: (name) => collectMap(getMapType(name), streamMap(name)),
      streamMap,
      getMapType,
      write: (batch) => {
        if (batch.length === 0) return Effect.void
        const feed = opts.changeFeed
        if (feed === undefined) {
          return Effect.suspend(() => {
            const statements = batchStatements(postgresDialect, batch)
            // One statement is atomic on its own: no BEGIN/COMMIT round trips (the common all-LWW batch).
            if (statements.length === 1) return unsafe(statements[0]!.sql, statements[0]!.args)
            return sql.withTransaction(Effect.forEach(statements, (s) => unsafe(s.sql, s.args), { discard: true }))
          }).pipe(Effect.mapError(failed(`Cannot write ${batch.length} mutations to ${where}`)))
        }
        return Effect.suspend(() => {
          const statements = batchStatements(postgresDialect, batch, { returning: true })
          const changed = emptyChangedRows()
          return sql.withTransaction(
            Effect.gen(function*() {
              for (const s of statements) {
                const rows = yield* unsafe(s.sql, s.args).values
                if (s.returns !== undefined) for (const r of rows) recordReturned(changed, s.returns, r)
              }
              yield* appendChangeRows(unsafe, feed.nodeId, changeRowsFor(batch, changed), Date.now())
            })
          )
        }).pipe(Effect.mapError(failed(`Cannot write ${batch.length} mutations to ${where}`)))
      },
      getMeta: (key) =>
        unsafe(`SELECT value FROM ${T.meta} WHERE key = $1`, [key]).values.pipe(
          Effect.map((rows) => Option.fromNullable(rows[0]?.[0] as string | undefined)),
          Effect.mapError(failed(`Cannot read meta ${JSON.stringify(key)} from ${where}`))
        ),
      metaByPrefix: (prefix) =>
        unsafe(`SELECT key, value FROM ${T.meta} WHERE starts_with(key, $1) ORDER BY key`, [prefix]).values.pipe(
          Effect.map((rows) => rows.map((r) => [r[0] as string, r[1] as string] as const)),
          Effect.mapError(failed(`Cannot read meta with prefix ${JSON.stringify(prefix)} from ${where}`))
        ),
      ping: unsafe("SELECT 1", []).pipe(Effect.asVoid, Effect.mapError(failed(`${where} does not answer`)))
    }
    return service
  })

export const makePostgresLayer = (
  tag: Context.Tag<Storage, StorageService>,
  opts: PostgresStorageOptions
): Layer.Layer<Storage, StorageError> => Layer.scoped(tag, makePostgresStorage(opts))
