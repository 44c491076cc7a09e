import { Data, Deferred, Effect, Option, Stream } from "effect"
import { isExpired, isVisible, type LastWrite, LWWMap, MERGE_LOST, PREVIOUS_ENCODED } from "../crdt/lww-map.js"
import type { LwwStore } from "../crdt/lww-store.js"
import { ORMap } from "../crdt/or-map.js"
import type { LWWRecord, MapType, ORMapRecord, Timestamp } from "../crdt/types.js"
import { type Change, type ChangeOrigin, Changes } from "./Changes.js"
import { Hlc } from "./Hlc.js"
import { type LoadedChunk, Storage, StorageError, type StorageMutation } from "./Storage.js"
import { type PersistCallback, PersistFailed, WriteBehind } from "./storage/write-behind.js"

export class MapLoadFailed extends Data.TaggedError("MapLoadFailed")<{ readonly mapName: string; readonly message: string }> {}

/** One named map: typed by its first write (or by storage), loaded once before it answers. */
export interface MapState {
  readonly name: string
  type: MapType | undefined
  readonly lww: LWWMap
  readonly or: ORMap
}

/**
 * Who is writing, for change attribution and SERVER_EVENT exclusion. Origin "remote" (a change another
 * node already committed to the shared store) is applied and fanned out locally but not persisted again.
 */
export interface WriteContext {
  readonly origin: ChangeOrigin
  readonly writerId?: string
  /** The stored record differs from what the writer sent (re-stamp / resolver merge). */
  readonly echoToWriter?: boolean
}

export interface VisibleRow {
  readonly key: string
  readonly value: unknown
}

/**
 * The greatest (finite) timestamp of a loaded chunk: the HLC must pass every loaded timestamp, and
 * observing the chunk's maximum once does that.
 */
class LatestStamp {
  private millis = Number.NEGATIVE_INFINITY
  private counter = 0
  private nodeId = ""
  observe(millis: number, counter: number, nodeId: string): void {
    if (Number.isFinite(millis) && Number.isFinite(counter) && (millis > this.millis || (millis === this.millis && counter > this.counter))) {
      this.millis = millis
      this.counter = counter
      this.nodeId = nodeId
    }
  }
  passTo(hlc: { readonly update: (ts: Timestamp) => unknown }): void {
    if (this.millis !== Number.NEGATIVE_INFINITY) hlc.update({ millis: this.millis, counter: this.counter, nodeId: this.nodeId })
  }
}

const UNREAD: unique symbol = Symbol("unread")

/** A row of a stored LWW map that decodes its value on first read (see `scanRows`). */
class StoredRow implements VisibleRow {
  private decoded: unknown = UNREAD
  constructor(readonly key: string, private readonly store: LwwStore, private readonly row: number) {}
  get value(): unknown {
    if (this.decoded === UNREAD) this.decoded = this.store.valueAt(this.row)
    return this.decoded
  }
}

const settleRow = (row: VisibleRow): VisibleRow => (row instanceof StoredRow ? { key: row.key, value: row.value } : row)

/**
 * The in-memory map store and the single apply path: every write of every origin (client ops, TTL,
 * processors, push-diff, remote) goes through `applyLww` / `applyOrAdd` / `applyOrTombstone` /
 * `mergeOrKey`, which merge, stamp `storedAt`, publish the change and stage its persistence — so no
 * path can forget fan-out or storage.
 */
export class Maps extends Effect.Service<Maps>()("tessera/Maps", {
  effect: Effect.gen(function* () {
    const hlc = (yield* Hlc).clock
    const wall = (yield* Hlc).wallMillis
    const changes = yield* Changes
    const storage = yield* Storage
    const writeBehind = yield* WriteBehind
    const durable = storage.durable

    const maps = new Map<string, MapState>()
    const loading = new Map<string, Deferred.Deferred<MapState, MapLoadFailed>>()
    /** Mutations of the current synchronous apply run, submitted together by `flushPersistence`. */
    let staged: StorageMutation[] = []

    const newState = (name: string): MapState => ({ name, type: undefined, lww: new LWWMap(), or: new ORMap() })

    const load = (name: string): Effect.Effect<MapState, MapLoadFailed> =>
      Effect.gen(function* () {
        const state = newState(name)
        if (durable) {
          const failed = (e: StorageError) => new MapLoadFailed({ mapName: name, message: e.message })
          state.type = Option.getOrUndefined(yield* Effect.mapError(storage.getMapType(name), failed))
          // Chunk by chunk, so a big map is never held twice (rows + map) during the load.
          yield* Stream.runForEach(storage.streamMap(name), (chunk) =>
            Effect.try({
              try: () => applyLoaded(state, chunk),
              // rows are checked as they are applied (SQLite pages are scanned in place)
              catch: (e) => new StorageError({ message: `Corrupt rows in map ${JSON.stringify(name)}: ${e instanceof Error ? e.message : String(e)}` })
            })).pipe(Effect.mapError(failed))
        }
        return state
      })

    const applyLoaded = (state: MapState, chunk: LoadedChunk): void => {
      switch (chunk._tag) {
        case "OrTombstones":
          for (const t of chunk.rows) state.or.loadTombstone(t.tag, t.storedAt)
          return
        case "OrRecords":
          for (const row of chunk.rows) state.or.loadRecord(row.key, row.record, row.storedAt)
          return
        case "Lww": {
          const latest = new LatestStamp()
          for (const row of chunk.rows) {
            state.lww.load(row.key, row.record, row.storedAt)
            latest.observe(row.record.timestamp.millis, row.record.timestamp.counter, row.record.timestamp.nodeId)
          }
          latest.passTo(hlc)
          return
        }
        case "LwwRows": {
          const latest = new LatestStamp()
          for (const r of chunk.rows) {
            const json = r[1]
            state.lww.loadJson(r[0], json ?? "", json === null ? -1 : 0, json?.length ?? 0, r[2], r[3], r[4], r[5] ?? undefined, r[6], r[7], r[8])
            latest.observe(r[2], r[3], r[4])
          }
          latest.passTo(hlc)
          return
        }
        case "LwwPage": {
          const latest = new LatestStamp()
          const lww = state.lww
          chunk.scan((key, text, vs, ve, millis, counter, nodeId, ttlMs, sm, sc, sn) => {
            lww.loadJson(key, text, vs, ve, millis, counter, nodeId, ttlMs, sm, sc, sn)
            latest.observe(millis, counter, nodeId)
          })
          latest.passTo(hlc)
          return
        }
      }
    }

    /** The map, loaded from storage on first touch; concurrent callers share one load. */
    const get = (name: string): Effect.Effect<MapState, MapLoadFailed> => {
      const existing = maps.get(name)
      if (existing !== undefined) return Effect.succeed(existing)
      const pending = loading.get(name)
      if (pending !== undefined) return Deferred.await(pending)
      return Effect.gen(function* () {
        const deferred = yield* Deferred.make<MapState, MapLoadFailed>()
        loading.set(name, deferred)
        const exit = yield* Effect.exit(load(name))
        loading.delete(name)
        if (exit._tag === "Success") maps.set(name, exit.value)
        yield* Deferred.done(deferred, exit)
        return yield* exit
      })
    }

    const fixType = (state: MapState, type: MapType, origin: ChangeOrigin): void => {
      if (state.type !== undefined) return
      state.type = type
      if (durable && origin !== "remote") staged.push({ _tag: "MapType", mapName: state.name, mapType: type })
    }

    const lwwVisible = (state: MapState, key: string, now: number): unknown => state.lww.visibleValue(key, now)

    const orVisible = (state: MapState, key: string, now: number): unknown => {
      const values = state.or.liveValues(key, now)
      return values.length > 0 ? values : undefined
    }

    /** The visible value of a key: LWW value, or the array of live OR values; undefined if none. */
    const visibleValue = (state: MapState, key: string): unknown => {
      const now = wall()
      return state.type === "OR" ? orVisible(state, key, now) : lwwVisible(state, key, now)
    }

    /** Visible rows (tombstones and expired records excluded; OR values as arrays). */
    function* rows(state: MapState): Generator<VisibleRow> {
      const now = wall()
      if (state.type === "LWW") {
        for (const [key, value] of state.lww.visibleEntries(now)) yield { key, value }
      } else if (state.type === "OR") {
        for (const key of state.or.keys()) {
          const values = state.or.liveValues(key, now)
          if (values.length > 0) yield { key, value: values }
        }
      }
    }

    /**
     * `rows` for a one-shot scan: LWW rows decode their value only when it is read (a key-ordered or
     * unfiltered query then decodes only the rows it returns). Valid until the map next changes: pass
     * `settleRow` as `runQuery`'s `settle`.
     */
    function* scanRows(state: MapState): Generator<VisibleRow> {
      if (state.type !== "LWW") {
        yield* rows(state)
        return
      }
      const store = state.lww.merkle
      for (const row of state.lww.visibleRows(wall())) yield new StoredRow(store.keyAt(row), store, row)
    }

    /** Builds the change of one applied write and feeds it to every consumer. */
    const publish = (
      state: MapState,
      key: string,
      eventType: Change["eventType"],
      record: LWWRecord | undefined,
      orRecord: ORMapRecord | undefined,
      orTag: string | undefined,
      before: unknown,
      after: unknown,
      storedAt: Timestamp,
      ctx: WriteContext,
      encoded: LastWrite | undefined = undefined
    ): Change => {
      // Every field in one fixed order: one object shape for all changes (the feed's consumers stay monomorphic).
      const change: Change = {
        mapName: state.name,
        mapType: state.type!,
        key,
        eventType,
        record,
        orRecord,
        orTag,
        before,
        after,
        encoded,
        storedAt,
        origin: ctx.origin,
        echoToWriter: ctx.echoToWriter ?? false,
        writerId: ctx.writerId
      }
      changes.publish(change)
      return change
    }

    /** LWW merge; returns the change, or undefined when the record lost the merge (no effects). */
    /** `now`: the wall clock when the caller read it already (a batch reads it once). */
    const applyLww = (state: MapState, key: string, record: LWWRecord, ctx: WriteContext, now: number = wall()): Change | undefined => {
      fixType(state, "LWW", ctx.origin)
      const storedAt = hlc.now(now)
      const mode = changes.beforeMode(state.name)
      const before = state.lww.mergeReplacing(key, record, storedAt, now, mode)
      if (before === MERGE_LOST) return undefined
      const after = isVisible(record, now) ? record.value : undefined
      if (durable && ctx.origin !== "remote") staged.push({ _tag: "LwwPut", mapName: state.name, key, record, storedAt })
      return publish(state, key, record.value === null ? "REMOVE" : "PUT", record, undefined, undefined, before, after, storedAt, ctx,
        mode & PREVIOUS_ENCODED ? state.lww.lastWrite : undefined)
    }

    const applyOrAdd = (state: MapState, key: string, record: ORMapRecord, ctx: WriteContext): Change | undefined => {
      fixType(state, "OR", ctx.origin)
      const now = wall()
      const before = orVisible(state, key, now)
      const storedAt = hlc.now()
      if (!state.or.apply(key, record, storedAt)) return undefined
      if (durable && ctx.origin !== "remote") staged.push({ _tag: "OrPut", mapName: state.name, key, record, storedAt })
      return publish(state, key, "OR_ADD", undefined, record, undefined, before, orVisible(state, key, now), storedAt, ctx)
    }

    /**
     * OR tombstone. A new tombstone is a change even when the tag matched no record (it is still
     * broadcast, protocol.md §3.2.4); `key` is the op's key when the tag is unknown.
     */
    const applyOrTombstone = (
      state: MapState,
      opKey: string,
      tag: string,
      ctx: WriteContext,
      /** Push-diff: a tombstone that removed no live record is stored but not announced. */
      announceUnknownTag = true
    ): Change | undefined => {
      fixType(state, "OR", ctx.origin)
      const now = wall()
      const holder = state.or.findKeyOfTag(tag) ?? opKey
      const before = orVisible(state, holder, now)
      const storedAt = hlc.now()
      const result = state.or.applyTombstone(tag, storedAt)
      if (!result.changed) return undefined
      const key = result.key ?? holder
      if (durable && ctx.origin !== "remote") {
        if (result.key !== undefined) staged.push({ _tag: "OrRemove", mapName: state.name, key: result.key, tag })
        for (const other of result.others ?? []) staged.push({ _tag: "OrRemove", mapName: state.name, key: other.key, tag })
        staged.push({ _tag: "OrTombstone", mapName: state.name, tag, storedAt })
      }
      if (result.key === undefined && !announceUnknownTag) return undefined
      return publish(state, key, "OR_REMOVE", undefined, undefined, tag, before, orVisible(state, key, now), storedAt, ctx)
    }

    /**
     * Submits the mutations staged by the applies since the last call, as one write-behind entry.
     * Call it in the same synchronous run as the applies so per-key storage order equals apply order.
     * Returns an Effect that completes when they are durable (immediately when nothing was staged).
     */
    const flushPersistence = (): Effect.Effect<void, PersistFailed> => {
      if (staged.length === 0) return Effect.void
      const batch = staged
      staged = []
      const deferred = writeBehind.submitUnsafe(batch)
      return Deferred.await(deferred)
    }

    /**
     * `flushPersistence` for callers that must not park a fiber per wait. Without `settle` nobody waits.
     * Returns false when nothing has to become durable; otherwise true, and `settle` is told once
     * (asynchronously) how the commit went.
     */
    const flushPersistenceThen = (settle: PersistCallback | undefined): boolean => {
      if (staged.length === 0) return false
      const batch = staged
      staged = []
      if (settle !== undefined) return writeBehind.submitThen(batch, settle)
      writeBehind.enqueueUnsafe(batch)
      return false
    }

    /**
     * The map if it is loaded, after waiting for a load in progress; undefined when nobody touched it
     * (a later load reads the shared store, which already holds every committed change).
     */
    const peekOrLoading = (name: string): Effect.Effect<MapState | undefined> => {
      const existing = maps.get(name)
      if (existing !== undefined) return Effect.succeed(existing)
      const pending = loading.get(name)
      return pending === undefined ? Effect.succeed(undefined) : Effect.orElseSucceed(Deferred.await(pending), () => undefined)
    }

    return {
      durable,
      get,
      peekOrLoading,
      peek: (name: string): MapState | undefined => maps.get(name),
      all: (): IterableIterator<MapState> => maps.values(),
      visibleValue,
      rows,
      scanRows,
      /** A scanned row as a plain row (see `scanRows`). */
      settleRow,
      applyLww,
      applyOrAdd,
      applyOrTombstone,
      flushPersistence,
      flushPersistenceThen,
      isExpired,
      wallMillis: wall,
      /** Timestamp helper for synthesized tombstones. */
      now: (): Timestamp => hlc.now()
    } as const
  })
}) {}
