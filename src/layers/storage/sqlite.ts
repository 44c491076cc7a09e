/**
 * The default store: a SQLite-compatible file `<dataDir>/tessera.db` through `@effect/sql-libsql`
 * (prebuilt binaries, nothing to compile on install).
 *
 * @libsql/client runs a local file on the calling thread, so the two heavy paths run in a worker thread
 * with its own connection (sqlite-worker.ts, WAL: readers here proceed during its commits), and the event
 * loop only posts the request and awaits the answer:
 * - `write`: the whole batch is one `batch(..., "write")` call — BEGIN IMMEDIATE, one statement per run of
 *   mutations with the rows as one JSON parameter (sqlite-batch.ts), COMMIT.
 * - loads: each chunk is ONE row holding a JSON array built by SQLite (`json_group_array`), parsed here with
 *   one `JSON.parse`. libsql builds a property-defined object per row and column otherwise, which alone
 *   would take seconds for a million rows. Page sizes adapt to the row size (load.ts).
 * The worker starts after the migrations (this thread's connection) and is closed before that connection,
 * after the requests sent to it. Everything else (metadata, map types, readiness) uses the `SqlClient`.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as LibsqlClient from "@effect/sql-libsql/LibsqlClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Libsql from "@libsql/client"
import { type Context, Effect, Layer, Option, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import type { MapType } from "../../crdt/types.js"
import type { LoadedChunk, Storage, StorageService } from "../Storage.js"
import { describeCause, StorageError, storageError } from "./errors.js"
import { collectMap, mapChunks, type Page, pages, YOUNG_PAGE_CHAR_BUDGET } from "./load.js"
import { LwwPage } from "./lww-page.js"
import { migrationsTableSql, runMigrations } from "./migrations.js"
import { SqliteWorkerClient } from "./sqlite-writer.js"
import {
  decodeOrRecord,
  decodeOrTombstone,
  isMapType,
  NodeIdInterner,
  sqliteDialect,
  T
} from "./schema.js"

export const SQLITE_FILE_NAME = "tessera.db"

/** Every connection to the store: WAL (readers never wait for the writer), durable commits, patience with locks. */
const PRAGMAS = ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000"]

export const makeSqliteStorage = (opts: { readonly dataDir: string }) =>
  Effect.gen(function*() {
    const dir = path.resolve(opts.dataDir)
    const file = path.join(dir, SQLITE_FILE_NAME)
    yield* Effect.tryPromise({
      try: () => fs.mkdir(dir, { recursive: true }),
      catch: storageError(`Cannot create the data directory ${dir}`)
    })
    const openFailed = storageError(`Cannot open the SQLite store at ${file}`)
    const url = pathToFileURL(file).href
    const sdk = yield* Effect.acquireRelease(
      Effect.try({ try: () => Libsql.createClient({ url, intMode: "number" }), catch: openFailed }),
      (client) => Effect.sync(() => client.close())
    )
    const exec = (what: string, stmt: Libsql.InStatement) =>
      Effect.tryPromise({ try: () => sdk.execute(stmt), catch: storageError(what) })

    // A garbage or foreign file fails here (SQLITE_NOTADB), before anything is read or written.
    for (const pragma of PRAGMAS) {
      yield* Effect.tryPromise({ try: () => sdk.execute(pragma), catch: openFailed })
    }
    yield* runMigrations({
      dialect: sqliteDialect,
      appliedVersions: Effect.gen(function*() {
        yield* exec(`Cannot prepare the SQLite store at ${file}`, migrationsTableSql(sqliteDialect))
        const rs = yield* exec(`Cannot read the schema version of ${file}`, `SELECT version FROM ${T.migrations}`)
        return rs.rows.map((r) => Number(r[0]))
      }),
      apply: (m, statements) =>
        Effect.tryPromise({
          try: () =>
            sdk.batch([
              ...statements,
              { sql: `INSERT INTO ${T.migrations} (version, name, applied_at) VALUES (?, ?, ?)`, args: [m.version, m.name, Date.now()] }
            ], "write"),
          catch: storageError(`Migration ${m.version} (${m.name}) failed on ${file}`)
        }).pipe(Effect.asVoid)
    }).pipe(Effect.mapError((e) => e.message.includes(file) ? e : new StorageError({ message: `${file}: ${e.message}`, cause: e })))

    // Started in the background: this connection already proved the file opens, and a worker that fails to
    // start fails the first request instead (the write-behind retries). Released first (finalizers run in
    // reverse): pending writes finish, then this thread's connection closes.
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() => SqliteWorkerClient.open({ url, pragmas: PRAGMAS })),
      (w) => Effect.promise(() => w.close())
    )

    const sql: SqlClient.SqlClient = yield* LibsqlClient.make({ liveClient: sdk }).pipe(Effect.provide(Reactivity.layer))
    const sqlFailed = (what: string) => (e: unknown) => new StorageError({ message: `${what}: ${describeCause(e)}`, cause: e })

    /**
     * One page as a single JSON text. For LWW rows and tombstones the aggregate is unordered (an ordered
     * aggregate costs ~40% of the load) and the keyset cursor is `max(<key>)`, exact whatever the order.
     * OR records need a (key, tag) cursor, so they keep the ordered aggregate and use the last element.
     */
    const pageQuery = (table: string, cols: string, order: string, keyset: string | undefined, extra = "") => {
      const from = `FROM (SELECT * FROM ${table} WHERE map_name = ? ${keyset === undefined ? "" : `AND ${keyset}`} ORDER BY ${order} LIMIT ?)`
      return order.includes(",")
        ? `SELECT json_group_array(json_array(${cols}) ORDER BY ${order}), NULL${extra} ${from}`
        : `SELECT json_group_array(json_array(${cols})), max(${order})${extra} ${from}`
    }

    // `LwwRow` column order; `json()` validates the value and embeds it as JSON, which the loading map
    // copies as text straight out of the page (lww-page.ts). The page also reports its row count.
    const LWW_COLS = "key, json(value), ts_millis, ts_counter, ts_node_id, ttl_ms, stored_millis, stored_counter, stored_node_id"
    const OR_COLS = "key, tag, ts_millis, ts_counter, ts_node_id, ttl_ms, stored_millis, stored_counter, stored_node_id, json(value)"
    const TOMB_COLS = "tag, stored_millis, stored_counter, stored_node_id"
    const lwwFirst = pageQuery(T.lww, LWW_COLS, "key", undefined, ", count(*)")
    const lwwNext = pageQuery(T.lww, LWW_COLS, "key", "key > ?", ", count(*)")
    const orFirst = pageQuery(T.orRecords, OR_COLS, "key, tag", undefined)
    const orNext = pageQuery(T.orRecords, OR_COLS, "key, tag", "(key, tag) > (?, ?)")
    const tombFirst = pageQuery(T.orTombstones, TOMB_COLS, "tag", undefined)
    const tombNext = pageQuery(T.orTombstones, TOMB_COLS, "tag", "tag > ?")

    type Rows = ReadonlyArray<ReadonlyArray<unknown>>
    /**
     * Fetches one page and decodes its rows. The keyset cursor is the query's second column when present
     * (`max(key)`), else the first `cursorCols` values of the last (ordered) row.
     * With a `max(key)` cursor the next page is asked of the worker as soon as a page arrives (same limit),
     * so SQLite reads it while this thread parses and decodes; it is used if the loader asks for that cursor.
     */
    const fetchPage = <A>(
      name: string,
      first: string,
      next: string,
      cursorCols: number,
      decode: (row: Array<any>) => A
    ) => {
      const query = (cursor: ReadonlyArray<unknown> | undefined, limit: number): Promise<Rows> =>
        worker.query(
          cursor === undefined ? first : next,
          cursor === undefined ? [name, limit] : [name, ...(cursor as Array<string>), limit]
        )
      let ahead: { readonly cursor: unknown; readonly rows: Promise<Rows> } | undefined
      const fetchRows = (cursor: ReadonlyArray<unknown> | undefined, limit: number): Promise<Rows> => {
        const prefetched = ahead
        ahead = undefined
        const rows = prefetched !== undefined && cursor?.length === 1 && cursor[0] === prefetched.cursor
          ? prefetched.rows
          : query(cursor, limit)
        return rows.then((rows) => {
          const max = rows[0]?.[1]
          if (max !== null && max !== undefined) {
            const nextRows = query([max], limit)
            nextRows.catch(() => undefined) // reported when (if) the loader asks for it
            ahead = { cursor: max, rows: nextRows }
          }
          return rows
        })
      }
      return (cursor: ReadonlyArray<unknown> | undefined, limit: number): Effect.Effect<Page<A>, StorageError> =>
        Effect.flatMap(
          Effect.tryPromise({
            try: () => fetchRows(cursor, limit),
            catch: storageError(`Cannot load map ${JSON.stringify(name)} from ${file}`)
          }),
          (rows) =>
            Effect.try({
              try: (): Page<A> => {
                const row = rows[0]
                const text = String(row?.[0] ?? "[]")
                if (decode === LWW_PAGE) {
                  // Kept as text: the loading map scans it in place (lww-page.ts).
                  const count = Number(row?.[2] ?? 0)
                  return {
                    rows: count === 0 ? [] : [new LwwPage(text, count) as A],
                    last: count === 0 ? undefined : [row?.[1]],
                    chars: text.length,
                    count
                  }
                }
                const arr = JSON.parse(text) as Array<Array<any>>
                const max = row?.[1]
                const last = arr.length === 0
                  ? undefined
                  : max !== null && max !== undefined
                  ? [max]
                  : arr[arr.length - 1]!.slice(0, cursorCols)
                return { rows: arr.map(decode), last, chars: text.length }
              },
              catch: storageError(`Corrupt rows in map ${JSON.stringify(name)} in ${file}`)
            })
        )
    }

    /** `fetchPage`'s decoder for LWW pages: a marker, pages are not decoded row by row. */
    const LWW_PAGE = (_row: Array<any>): LwwPage => {
      throw new Error("LWW pages are scanned, not decoded")
    }

    const streamMap = (name: string, chunkSize = 1000): Stream.Stream<LoadedChunk, StorageError> => {
      const ids = new NodeIdInterner()
      return mapChunks(
        pages(chunkSize, fetchPage(name, tombFirst, tombNext, 1, (r) => decodeOrTombstone(ids, r[0], r[1], r[2], r[3]))),
        pages(chunkSize, fetchPage(name, orFirst, orNext, 2, (r) => decodeOrRecord(ids, r[0], r[1], r[9], r[2], r[3], r[4], r[5], r[6], r[7], r[8]))),
        pages(chunkSize, fetchPage(name, lwwFirst, lwwNext, 1, LWW_PAGE), YOUNG_PAGE_CHAR_BUDGET).pipe(Stream.flattenIterables)
      )
    }

    const getMapType = (name: string): Effect.Effect<Option.Option<MapType>, StorageError> =>
      sql<{ map_type: string }>`SELECT map_type FROM ${sql(T.maps)} WHERE map_name = ${name}`.pipe(
        Effect.map((rows) => Option.filter(Option.fromNullable(rows[0]?.map_type), isMapType)),
        Effect.mapError(sqlFailed(`Cannot read the type of map ${JSON.stringify(name)}`))
      )

    const service: StorageService = {
      kind: "sqlite",
      durable: true,
      listMaps: sql<{ map_name: string; map_type: string }>`SELECT map_name, map_type FROM ${sql(T.maps)} ORDER BY map_name`.pipe(
        Effect.map((rows) => rows.filter((r) => isMapType(r.map_type)).map((r) => ({ name: r.map_name, mapType: r.map_type as MapType }))),
        Effect.mapError(sqlFailed("Cannot list maps"))
      ),
      loadMap: (name) => collectMap(getMapType(name), streamMap(name)),
      streamMap,
      getMapType,
      write: (batch) =>
        batch.length === 0
          ? Effect.void
          : Effect.tryPromise({
            try: () => worker.write(batch),
            catch: storageError(`Cannot write ${batch.length} mutations to ${file}`)
          }),
      getMeta: (key) =>
        sql<{ value: string }>`SELECT value FROM ${sql(T.meta)} WHERE key = ${key}`.pipe(
          Effect.map((rows) => Option.fromNullable(rows[0]?.value)),
          Effect.mapError(sqlFailed(`Cannot read meta ${JSON.stringify(key)}`))
        ),
      metaByPrefix: (prefix) =>
        sql<{ key: string; value: string }>`SELECT key, value FROM ${sql(T.meta)} WHERE substr(key, 1, length(${prefix})) = ${prefix} ORDER BY key`.pipe(
          Effect.map((rows) => rows.map((r) => [r.key, r.value] as const)),
          Effect.mapError(sqlFailed(`Cannot read meta with prefix ${JSON.stringify(prefix)}`))
        ),
      ping: sql`SELECT 1`.pipe(Effect.asVoid, Effect.mapError(sqlFailed(`The SQLite store at ${file} does not answer`)))
    }
    return service
  })

export const makeSqliteLayer = (
  tag: Context.Tag<Storage, StorageService>,
  opts: { readonly dataDir: string }
): Layer.Layer<Storage, StorageError> => Layer.scoped(tag, makeSqliteStorage(opts))
