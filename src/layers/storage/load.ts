/** Chunked map loading shared by the SQL layers: keyset pages → `LoadedChunk` stream → `LoadedMap`. */
import { Effect, Option, Stream } from "effect"
import type { MapType } from "../../crdt/types.js"
import { NodeIdInterner } from "../../crdt/node-ids.js"
import type { LoadedChunk, LoadedLww, LoadedMap, LoadedOrRecord, LoadedOrTombstone, LwwRow } from "../Storage.js"
import { loadedOfLwwRow } from "./schema.js"
import type { StorageError } from "./errors.js"

type Cursor = ReadonlyArray<unknown>
export interface Page<A> {
  readonly rows: ReadonlyArray<A>
  /** Keyset cursor of the last row; undefined when the page is empty (the end). */
  readonly last: Cursor | undefined
  /** Approximate characters the page took to transfer (drives the next page's size). */
  readonly chars: number
  /** Rows in the page when `rows` holds them packed (one `LwwPage`); else `rows.length`. */
  readonly count?: number
}

/** Characters one page should take: small enough to hold twice in memory, big enough to amortize a query. */
const PAGE_CHAR_BUDGET = 8 * 1024 * 1024
/**
 * Characters per page for pages kept as one string while the map loads from it (SQLite LWW pages): small
 * enough for V8 to allocate the string in the young generation (regular objects stop at 128 KiB; two
 * bytes per character at worst), so a page that outlives a scavenge is not promoted, and with it a heap
 * that grows by the whole store's size in dead pages.
 */
export const YOUNG_PAGE_CHAR_BUDGET = 48 * 1024
const FIRST_PAGE_ROWS = 16

/**
 * Reads page by page through `fetch(cursor, limit)` (first page: `cursor` undefined) until a page comes
 * back empty. The row limit adapts to the observed row size so a page stays near the char budget: small
 * rows get `maxRows`, megabyte values a few per page. A page that fails is retried smaller (a string too
 * big for SQLite or V8 is the likely reason) until a single row still fails: then the error stands.
 */
export const pages = <A>(
  maxRows: number,
  fetch: (cursor: Cursor | undefined, limit: number) => Effect.Effect<Page<A>, StorageError>,
  charBudget: number = PAGE_CHAR_BUDGET
): Stream.Stream<ReadonlyArray<A>, StorageError> => {
  const max = Math.max(1, Math.floor(maxRows))
  return Stream.suspend(() => {
  let limit = Math.min(max, FIRST_PAGE_ROWS)
  const fetchAdaptive = (cursor: Cursor | undefined): Effect.Effect<Page<A>, StorageError> =>
    Effect.catchAll(fetch(cursor, limit), (error) => {
      if (limit <= 1) return Effect.fail(error)
      limit = Math.max(1, limit >> 2)
      return fetchAdaptive(cursor)
    })
  return Stream.paginateEffect(undefined as Cursor | undefined, (cursor) =>
    Effect.map(fetchAdaptive(cursor), (page) => {
      const count = page.count ?? page.rows.length
      if (count > 0) {
        const perRow = Math.max(1, page.chars / count)
        limit = Math.max(1, Math.min(max, Math.floor(charBudget / perRow)))
      }
      return [page.rows, page.last === undefined ? Option.none<Cursor | undefined>() : Option.some<Cursor | undefined>(page.last)] as const
    })).pipe(Stream.filter((rows) => rows.length > 0))
  })
}

/** Tombstones first, then OR records, then LWW rows (the order `LoadedChunk` promises). */
export const mapChunks = (
  tombstones: Stream.Stream<ReadonlyArray<LoadedOrTombstone>, StorageError>,
  orRecords: Stream.Stream<ReadonlyArray<LoadedOrRecord>, StorageError>,
  lww: Stream.Stream<LoadedChunk, StorageError>
): Stream.Stream<LoadedChunk, StorageError> =>
  Stream.map(tombstones, (rows): LoadedChunk => ({ _tag: "OrTombstones", rows })).pipe(
    Stream.concat(Stream.map(orRecords, (rows): LoadedChunk => ({ _tag: "OrRecords", rows }))),
    Stream.concat(lww)
  )

/** Flat LWW rows as chunks. */
export const lwwRowChunks = (rows: Stream.Stream<ReadonlyArray<LwwRow>, StorageError>): Stream.Stream<LoadedChunk, StorageError> =>
  Stream.map(rows, (rows): LoadedChunk => ({ _tag: "LwwRows", rows }))

/** The LWW rows of a chunk as records (values parsed); `[]` for OR chunks. */
export const loadedLwwOf = (chunk: LoadedChunk, ids: NodeIdInterner = new NodeIdInterner()): ReadonlyArray<LoadedLww> =>
  chunk._tag === "Lww"
    ? chunk.rows
    : chunk._tag === "LwwRows" || chunk._tag === "LwwPage"
    ? chunk.rows.map((r) => loadedOfLwwRow(ids, r))
    : []

/** Gathers a streamed map into one `LoadedMap` (tests, small maps). */
export const collectMap = (
  mapType: Effect.Effect<Option.Option<MapType>, StorageError>,
  chunks: Stream.Stream<LoadedChunk, StorageError>
): Effect.Effect<LoadedMap, StorageError> =>
  Effect.gen(function*() {
    const type = yield* mapType
    const lww: Array<LoadedLww> = []
    const orRecords: Array<LoadedOrRecord> = []
    const orTombstones: Array<LoadedOrTombstone> = []
    const ids = new NodeIdInterner()
    yield* Stream.runForEach(chunks, (chunk) =>
      Effect.sync(() => {
        if (chunk._tag === "Lww" || chunk._tag === "LwwRows" || chunk._tag === "LwwPage") for (const row of loadedLwwOf(chunk, ids)) lww.push(row)
        else if (chunk._tag === "OrRecords") for (const row of chunk.rows) orRecords.push(row)
        else for (const row of chunk.rows) orTombstones.push(row)
      }))
    return { mapType: Option.getOrUndefined(type), lww, orRecords, orTombstones }
  })

