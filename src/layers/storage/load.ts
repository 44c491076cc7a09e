/** Chunked map loading shared by the SQL layers: keyset pages → `LoadedChunk` stream → `LoadedMap`. */
import { Effect, Option, Stream } from "effect"
import type { MapType } from "../../crdt/types.js"
import type { LoadedChunk, LoadedLww, LoadedMap, LoadedOrRecord, LoadedOrTombstone } from "../Storage.js"
import type { StorageError } from "./errors.js"

type Cursor = ReadonlyArray<unknown>
export interface Page<A> {
  readonly rows: ReadonlyArray<A>
  /** Keyset cursor of the last row; undefined when the page is empty (the end). */
  readonly last: Cursor | undefined
}

/** Reads page by page through `fetch(cursor)` (first page: `undefined`) until a page comes back empty. */
export const pages = <A>(
  fetch: (cursor: Cursor | undefined) => Effect.Effect<Page<A>, StorageError>
): Stream.Stream<ReadonlyArray<A>, StorageError> =>
  Stream.paginateEffect(undefined as Cursor | undefined, (cursor) =>
    Effect.map(fetch(cursor), (page) =>
      [page.rows, page.last === undefined ? Option.none<Cursor | undefined>() : Option.some<Cursor | undefined>(page.last)] as const
    )).pipe(Stream.filter((rows) => rows.length > 0))

/** Tombstones first, then OR records, then LWW rows (the order `LoadedChunk` promises). */
export const mapChunks = (
  tombstones: Stream.Stream<ReadonlyArray<LoadedOrTombstone>, StorageError>,
  orRecords: Stream.Stream<ReadonlyArray<LoadedOrRecord>, StorageError>,
  lww: Stream.Stream<ReadonlyArray<LoadedLww>, StorageError>
): Stream.Stream<LoadedChunk, StorageError> =>
  Stream.map(tombstones, (rows): LoadedChunk => ({ _tag: "OrTombstones", rows })).pipe(
    Stream.concat(Stream.map(orRecords, (rows): LoadedChunk => ({ _tag: "OrRecords", rows }))),
    Stream.concat(Stream.map(lww, (rows): LoadedChunk => ({ _tag: "Lww", rows })))
  )

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
    yield* Stream.runForEach(chunks, (chunk) =>
      Effect.sync(() => {
        const target: Array<unknown> = chunk._tag === "Lww" ? lww : chunk._tag === "OrRecords" ? orRecords : orTombstones
        for (const row of chunk.rows) target.push(row)
      }))
    return { mapType: Option.getOrUndefined(type), lww, orRecords, orTombstones }
  })

