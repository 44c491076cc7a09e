/**
 * In-process storage: nothing survives a restart (`durable: false`). Same semantics as the SQL layers
 * (merge-aware upserts, see schema.ts) so it passes the same conformance suite. Records are shared, not
 * copied: they are immutable plain objects.
 */
import { type Context, Effect, Layer, Option, Stream } from "effect"
import type { MapType, Timestamp } from "../../crdt/types.js"
import type { LoadedChunk, LoadedLww, LoadedMap, LoadedOrRecord, Storage, StorageMutation, StorageService } from "../Storage.js"

interface MemoryMap {
  type: MapType | undefined
  readonly lww: Map<string, LoadedLww>
  /** key → tag → record */
  readonly or: Map<string, Map<string, LoadedOrRecord>>
  readonly tombstones: Map<string, Timestamp>
}

/** HLC order (millis, counter, nodeId), nodeId compared by code units like the SQL layers' byte order for ids. */
const newer = (a: Timestamp, b: Timestamp): boolean =>
  a.millis !== b.millis ? a.millis > b.millis : a.counter !== b.counter ? a.counter > b.counter : a.nodeId > b.nodeId

export const makeMemoryStorage = (): StorageService => {
  const maps = new Map<string, MemoryMap>()
  const meta = new Map<string, string>()

  const mapOf = (name: string): MemoryMap => {
    let m = maps.get(name)
    if (m === undefined) {
      m = { type: undefined, lww: new Map(), or: new Map(), tombstones: new Map() }
      maps.set(name, m)
    }
    return m
  }

  const removeTag = (m: MemoryMap, tag: string): void => {
    for (const [key, tags] of m.or) {
      if (tags.delete(tag) && tags.size === 0) m.or.delete(key)
    }
  }

  const applyOne = (mut: StorageMutation): void => {
    switch (mut._tag) {
      case "LwwPut": {
        const m = mapOf(mut.mapName)
        const existing = m.lww.get(mut.key)
        if (existing === undefined || newer(mut.record.timestamp, existing.record.timestamp)) {
          m.lww.set(mut.key, { key: mut.key, record: mut.record, storedAt: mut.storedAt })
        }
        return
      }
      case "LwwDelete":
        maps.get(mut.mapName)?.lww.delete(mut.key)
        return
      case "OrPut": {
        const m = mapOf(mut.mapName)
        if (m.tombstones.has(mut.record.tag)) return
        let tags = m.or.get(mut.key)
        if (tags === undefined) {
          tags = new Map()
          m.or.set(mut.key, tags)
        }
        const existing = tags.get(mut.record.tag)
        if (existing === undefined || newer(mut.record.timestamp, existing.record.timestamp)) {
          tags.set(mut.record.tag, { key: mut.key, record: mut.record, storedAt: mut.storedAt })
        }
        return
      }
      case "OrRemove": {
        const tags = maps.get(mut.mapName)?.or.get(mut.key)
        if (tags !== undefined && tags.delete(mut.tag) && tags.size === 0) maps.get(mut.mapName)!.or.delete(mut.key)
        return
      }
      case "OrTombstone": {
        const m = mapOf(mut.mapName)
        if (!m.tombstones.has(mut.tag)) m.tombstones.set(mut.tag, mut.storedAt)
        removeTag(m, mut.tag)
        return
      }
      case "OrPruneTombstone":
        maps.get(mut.mapName)?.tombstones.delete(mut.tag)
        return
      case "MapType": {
        const m = mapOf(mut.mapName)
        if (m.type === undefined) m.type = mut.mapType
        return
      }
      case "Meta":
        meta.set(mut.key, mut.value)
        return
    }
  }

  const snapshot = (name: string): LoadedMap => {
    const m = maps.get(name)
    if (m === undefined) return { mapType: undefined, lww: [], orRecords: [], orTombstones: [] }
    const orRecords: Array<LoadedOrRecord> = []
    for (const tags of m.or.values()) for (const r of tags.values()) orRecords.push(r)
    return {
      mapType: m.type,
      lww: [...m.lww.values()],
      orRecords,
      orTombstones: [...m.tombstones].map(([tag, storedAt]) => ({ tag, storedAt }))
    }
  }

  const chunks = <A>(rows: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
    const out: Array<ReadonlyArray<A>> = []
    for (let i = 0; i < rows.length; i += size) out.push(rows.slice(i, i + size))
    return out
  }

  return {
    kind: "memory",
    durable: false,
    listMaps: Effect.sync(() => {
      const out: Array<{ name: string; mapType: MapType }> = []
      for (const [name, m] of maps) if (m.type !== undefined) out.push({ name, mapType: m.type })
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    }),
    loadMap: (name) => Effect.sync(() => snapshot(name)),
    streamMap: (name, chunkSize = 5000) =>
      Stream.suspend(() => {
        const s = snapshot(name)
        const out: Array<LoadedChunk> = [
          ...chunks(s.orTombstones, chunkSize).map((rows): LoadedChunk => ({ _tag: "OrTombstones", rows })),
          ...chunks(s.orRecords, chunkSize).map((rows): LoadedChunk => ({ _tag: "OrRecords", rows })),
          ...chunks(s.lww, chunkSize).map((rows): LoadedChunk => ({ _tag: "Lww", rows }))
        ]
        return Stream.fromIterable(out)
      }),
    getMapType: (name) => Effect.sync(() => Option.fromNullable(maps.get(name)?.type)),
    write: (batch) =>
      Effect.sync(() => {
        for (const m of batch) applyOne(m)
      }),
    getMeta: (key) => Effect.sync(() => Option.fromNullable(meta.get(key))),
    metaByPrefix: (prefix) =>
      Effect.sync(() =>
        [...meta]
          .filter(([k]) => k.startsWith(prefix))
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([k, v]) => [k, v] as const)
      ),
    ping: Effect.void
  }
}

/** A fresh, empty store per layer build. */
export const makeMemoryLayer = (tag: Context.Tag<Storage, StorageService>): Layer.Layer<Storage> =>
  Layer.sync(tag, makeMemoryStorage)
