/**
 * Durable records behind one interface (behavior.md §3.13), with three layers that pass one conformance
 * suite: the embedded SQLite-compatible file (default), PostgreSQL, and memory (nothing survives).
 *
 * Writes carry the RESULTING state of a key after the merge, in apply order; `write` applies one batch in
 * one transaction. The SQL layers are merge-aware (behavior.md §3.26): an LWW row is only replaced by a
 * record with a larger HLC, an OR record is not re-added once its tag is tombstoned, and a tombstone
 * removes the records carrying its tag — so several writers sharing one database converge.
 */
import { Context, type Effect, type Layer, type Option, type Stream } from "effect"
import type { LWWRecord, MapType, ORMapRecord, Timestamp } from "../crdt/types.js"
import { StorageError } from "./storage/errors.js"
import { makeMemoryLayer } from "./storage/memory.js"
import { makePostgresLayer } from "./storage/postgres.js"
import { makeSqliteLayer } from "./storage/sqlite.js"
import type { LwwPage } from "./storage/lww-page.js"

export { StorageError }

export type StorageMutation =
  /** Upsert the full state of the key (tombstones included: `record.value === null`). */
  | { readonly _tag: "LwwPut"; readonly mapName: string; readonly key: string; readonly record: LWWRecord; readonly storedAt: Timestamp }
  /** GC prune of a tombstone: the row goes away unconditionally. */
  | { readonly _tag: "LwwDelete"; readonly mapName: string; readonly key: string }
  | { readonly _tag: "OrPut"; readonly mapName: string; readonly key: string; readonly record: ORMapRecord; readonly storedAt: Timestamp }
  /** A record removed by a tombstone. */
  | { readonly _tag: "OrRemove"; readonly mapName: string; readonly key: string; readonly tag: string }
  | { readonly _tag: "OrTombstone"; readonly mapName: string; readonly tag: string; readonly storedAt: Timestamp }
  | { readonly _tag: "OrPruneTombstone"; readonly mapName: string; readonly tag: string }
  | { readonly _tag: "MapType"; readonly mapName: string; readonly mapType: MapType }
  /** Node metadata: journal sequence, fencing tokens, counters, resolvers (JSON strings). */
  | { readonly _tag: "Meta"; readonly key: string; readonly value: string }

export interface LoadedLww {
  readonly key: string
  readonly record: LWWRecord
  readonly storedAt: Timestamp
}
export interface LoadedOrRecord {
  readonly key: string
  readonly record: ORMapRecord
  readonly storedAt: Timestamp
}
export interface LoadedOrTombstone {
  readonly tag: string
  readonly storedAt: Timestamp
}

export interface LoadedMap {
  readonly mapType: MapType | undefined
  readonly lww: ReadonlyArray<LoadedLww>
  readonly orRecords: ReadonlyArray<LoadedOrRecord>
  readonly orTombstones: ReadonlyArray<LoadedOrTombstone>
}

/**
 * An LWW row as the SQL stores hand it to a loading map: flat, with the value still JSON text (null: a
 * tombstone). The map keeps values encoded, so a load never builds the value objects.
 * `[key, valueJson, millis, counter, nodeId, ttlMs | null, storedMillis, storedCounter, storedNodeId]`.
 */
export type LwwRow = readonly [
  key: string,
  valueJson: string | null,
  millis: number,
  counter: number,
  nodeId: string,
  ttlMs: number | null,
  storedMillis: number,
  storedCounter: number,
  storedNodeId: string
]

/**
 * One chunk of a streamed map load. Chunks come in this order: all tombstones, then all OR records, then
 * all LWW rows (tombstones first, so a loader can drop records whose tag is already dead).
 */
export type LoadedChunk =
  | { readonly _tag: "OrTombstones"; readonly rows: ReadonlyArray<LoadedOrTombstone> }
  | { readonly _tag: "OrRecords"; readonly rows: ReadonlyArray<LoadedOrRecord> }
  | { readonly _tag: "Lww"; readonly rows: ReadonlyArray<LoadedLww> }
  | { readonly _tag: "LwwRows"; readonly rows: ReadonlyArray<LwwRow> }
  /** A page of LWW rows still as the store's JSON text (SQLite): scanned in place by the loading map. */
  | LwwPage

export interface StorageService {
  readonly kind: "memory" | "sqlite" | "postgres"
  /** False for memory: PERSISTED is refused at once. */
  readonly durable: boolean
  readonly listMaps: Effect.Effect<ReadonlyArray<{ readonly name: string; readonly mapType: MapType }>, StorageError>
  /** The whole map at once (built on `streamMap`). */
  readonly loadMap: (name: string) => Effect.Effect<LoadedMap, StorageError>
  /**
   * The map in chunks of at most `chunkSize` rows (default 5000), read by key ranges, so a cold start of
   * a million rows never holds the driver's rows for more than one chunk. Use with `getMapType`.
   */
  readonly streamMap: (name: string, chunkSize?: number) => Stream.Stream<LoadedChunk, StorageError>
  readonly getMapType: (name: string) => Effect.Effect<Option.Option<MapType>, StorageError>
  /** ONE transaction, applied in order. */
  readonly write: (batch: ReadonlyArray<StorageMutation>) => Effect.Effect<void, StorageError>
  readonly getMeta: (key: string) => Effect.Effect<Option.Option<string>, StorageError>
  readonly metaByPrefix: (prefix: string) => Effect.Effect<ReadonlyArray<readonly [string, string]>, StorageError>
  /** A cheap round trip to the store, for readiness. */
  readonly ping: Effect.Effect<void, StorageError>
}

export class Storage extends Context.Tag("tessera/Storage")<Storage, StorageService>() {
  /** In-process only: nothing survives a restart (`durable: false`). */
  static readonly layerMemory: Layer.Layer<Storage> = makeMemoryLayer(Storage)
  /** Embedded SQLite-compatible file `<dataDir>/tessera.db` (directory created if missing). */
  static readonly layerSqlite: (opts: { readonly dataDir: string }) => Layer.Layer<Storage, StorageError> = (opts) =>
    makeSqliteLayer(Storage, opts)
  /** PostgreSQL at `url`; schema created by versioned migrations. */
  static readonly layerPostgres: (opts: { readonly url: string }) => Layer.Layer<Storage, StorageError> = (opts) =>
    makePostgresLayer(Storage, opts)
}
