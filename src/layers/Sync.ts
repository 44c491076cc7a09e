import { Effect } from "effect"
import type { ORMapRecord } from "../crdt/types.js"
import type { Connection } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { Maps, type MapState } from "./Maps.js"
import { Security } from "./Security.js"
import { ServerConfig } from "./ServerConfig.js"

interface ORMapEntryOut {
  readonly key: string
  readonly records: ReadonlyArray<ORMapRecord>
  readonly tombstones: ReadonlyArray<string>
}

/**
 * Merkle delta sync for LWW and OR maps (protocol.md §3.3–3.4, §4.7; behavior.md §3.15). Trees are
 * maintained incrementally by the maps on every apply; this layer only reads them. Push-diff merges go
 * through `Maps`' single apply path, so they reach live queries, search, journal and storage.
 */
export class Sync extends Effect.Service<Sync>()("tessera/Sync", {
  effect: Effect.gen(function* () {
    const config = yield* ServerConfig
    const maps = yield* Maps
    const security = yield* Security
    const hlcService = yield* Hlc
    const hlc = hlcService.clock
    const wall = hlcService.wallMillis

    const deny = (c: Connection, mapName: string) =>
      c.send({ type: "ERROR", payload: { code: 403, message: `Access Denied for map ${mapName}` } })

    const canRead = (c: Connection, mapName: string) => security.checkPermission(c.principal!, mapName, "READ")

    /** GC-age rule: a client whose last sync is older than the GC age must reset (protocol.md §3.3.1). */
    const needsReset = (lastSyncTimestamp: number | undefined) =>
      lastSyncTimestamp !== undefined && lastSyncTimestamp > 0 && wall() - lastSyncTimestamp > config.gcAgeMs

    /** Loads the map, answering ERROR 500 when storage cannot deliver it. */
    const withMap = (c: Connection, mapName: string, f: (state: MapState) => void) =>
      maps.get(mapName).pipe(
        Effect.match({
          onFailure: () => c.send({ type: "ERROR", payload: { code: 500, message: `Failed to load map ${mapName}` } }),
          onSuccess: f
        })
      )

    const filterOrRecords = (c: Connection, mapName: string, records: ReadonlyArray<ORMapRecord>): ReadonlyArray<ORMapRecord> => {
      const filter = security.valueFilter(c.principal!, mapName)
      return records.map((r) => {
        const value = filter(r.value)
        return value === r.value ? r : { ...r, value }
      })
    }

    const orRoot = (c: Connection, state: MapState) =>
      c.send({ type: "ORMAP_SYNC_RESP_ROOT", payload: { mapName: state.name, rootHash: state.or.merkle.rootHash, timestamp: hlc.now() } })

    const syncInit = (c: Connection, mapName: string, lastSyncTimestamp: number | undefined) => {
      if (!canRead(c, mapName)) return Effect.sync(() => deny(c, mapName))
      if (needsReset(lastSyncTimestamp)) {
        return Effect.sync(() => c.send({ type: "SYNC_RESET_REQUIRED", payload: { mapName, reason: "GC_AGE_EXCEEDED" } }))
      }
      return withMap(c, mapName, (state) => {
        // After a reset the client re-syncs OR maps with SYNC_INIT too (protocol.md §3.3.1 step 3).
        if (state.type === "OR") return orRoot(c, state)
        c.send({ type: "SYNC_RESP_ROOT", payload: { mapName, rootHash: state.lww.merkle.rootHash, timestamp: hlc.now() } })
      })
    }

    const merkleReqBucket = (c: Connection, mapName: string, path: string) => {
      if (!canRead(c, mapName)) return Effect.sync(() => deny(c, mapName))
      return withMap(c, mapName, (state) => {
        const tree = state.lww.merkle
        if (tree.isLeaf(path)) {
          const filter = security.valueFilter(c.principal!, mapName)
          const records = tree.leafKeys(path).map((key) => {
            const record = state.lww.get(key)!.record
            const value = record.value === null ? null : filter(record.value)
            return { key, record: value === record.value ? record : { ...record, value } }
          })
          c.send({ type: "SYNC_RESP_LEAF", payload: { mapName, path, records } })
        } else {
          c.send({ type: "SYNC_RESP_BUCKETS", payload: { mapName, path, buckets: tree.getBuckets(path) } })
        }
      })
    }

    const orSyncInit = (c: Connection, mapName: string, lastSyncTimestamp: number | undefined) => {
      if (!canRead(c, mapName)) return Effect.sync(() => deny(c, mapName))
      if (needsReset(lastSyncTimestamp)) {
        return Effect.sync(() => c.send({ type: "SYNC_RESET_REQUIRED", payload: { mapName, reason: "GC_AGE_EXCEEDED" } }))
      }
      return withMap(c, mapName, (state) => {
        if (state.type === "LWW") return c.send({ type: "ERROR", payload: { code: 400, message: `Map ${mapName} is not an ORMap` } })
        orRoot(c, state)
      })
    }

    const orEntries = (c: Connection, state: MapState, keys: Iterable<string>, includeEmpty: boolean): ORMapEntryOut[] => {
      const tombstones = state.or.tombstoneTags()
      const entries: ORMapEntryOut[] = []
      for (const key of keys) {
        const records = state.or.getRecords(key)
        if (records.length === 0 && !includeEmpty) continue
        entries.push({ key, records: filterOrRecords(c, state.name, records), tombstones })
      }
      return entries
    }

    const orMerkleReqBucket = (c: Connection, mapName: string, path: string) => {
      if (!canRead(c, mapName)) return Effect.sync(() => deny(c, mapName))
      return withMap(c, mapName, (state) => {
        const tree = state.or.merkle
        if (tree.isLeaf(path)) {
          c.send({ type: "ORMAP_SYNC_RESP_LEAF", payload: { mapName, path, entries: orEntries(c, state, tree.leafKeys(path), false) } })
        } else {
          c.send({ type: "ORMAP_SYNC_RESP_BUCKETS", payload: { mapName, path, buckets: tree.getBuckets(path) } })
        }
      })
    }

    const orDiffRequest = (c: Connection, mapName: string, keys: ReadonlyArray<string>) => {
      if (!canRead(c, mapName)) return Effect.sync(() => deny(c, mapName))
      return withMap(c, mapName, (state) => {
        c.send({ type: "ORMAP_DIFF_RESPONSE", payload: { mapName, entries: orEntries(c, state, keys, true) } })
      })
    }

    /**
     * ORMAP_PUSH_DIFF: tombstones first (announced only when they removed a live record), then records
     * (announced when added or replaced by a newer timestamp). Drift-offending records are skipped.
     */
    const orPushDiff = (c: Connection, mapName: string, entries: ReadonlyArray<{ key: string; records: ReadonlyArray<ORMapRecord>; tombstones: ReadonlyArray<string> }>) => {
      if (!security.checkPermission(c.principal!, mapName, "PUT")) return Effect.sync(() => deny(c, mapName))
      return maps.get(mapName).pipe(
        Effect.matchEffect({
          onFailure: () => Effect.sync(() => c.send({ type: "ERROR", payload: { code: 500, message: `Failed to load map ${mapName}` } })),
          onSuccess: (state) => {
            if (state.type === "LWW") {
              return Effect.sync(() => c.send({ type: "ERROR", payload: { code: 400, message: `Map ${mapName} is not an ORMap` } }))
            }
            const ctx = { origin: "sync" as const, writerId: c.id }
            const now = wall()
            for (const entry of entries) {
              for (const tag of entry.tombstones) maps.applyOrTombstone(state, entry.key, tag, ctx, false)
              for (const record of entry.records) {
                if (record.timestamp.millis - now > config.maxDriftMs) continue
                hlc.update(record.timestamp)
                maps.applyOrAdd(state, entry.key, record, ctx)
              }
            }
            const persisted = maps.flushPersistence()
            return Effect.forkDaemon(Effect.ignore(persisted)).pipe(Effect.asVoid)
          }
        })
      )
    }

    return { syncInit, merkleReqBucket, orSyncInit, orMerkleReqBucket, orDiffRequest, orPushDiff } as const
  })
}) {}
