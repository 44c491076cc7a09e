import { Effect } from "effect"
import { type LastWrite, PREVIOUS_DECODED, PREVIOUS_ENCODED } from "../crdt/lww-map.js"
import type { LWWRecord, MapType, ORMapRecord, Timestamp } from "../crdt/types.js"

/** Where a change came from; decides who gets which notification. */
export type ChangeOrigin = "client" | "http" | "sync" | "ttl" | "processor" | "resolver" | "remote"

/**
 * One applied state change of one key — produced only when the CRDT state really changed.
 * `before` / `after` are the visible values (LWW: the value, OR: the array of live values;
 * `undefined` = not visible), which is what queries, search and the journal need. An LWW `before` is
 * filled only for maps some consumer declared with `needBefore(…, "decoded")`; `encoded` only for
 * `"encoded"` declarations.
 */
export interface Change {
  readonly mapName: string
  readonly mapType: MapType
  readonly key: string
  readonly eventType: "PUT" | "REMOVE" | "OR_ADD" | "OR_REMOVE"
  // The optional fields are always present (possibly undefined) so every change has one object shape.
  /** LWW: the stored record (tombstone for REMOVE). */
  readonly record?: LWWRecord | undefined
  /** OR_ADD: the stored record. */
  readonly orRecord?: ORMapRecord | undefined
  /** OR_REMOVE: the tombstoned tag. */
  readonly orTag?: string | undefined
  readonly before: unknown
  readonly after: unknown
  /**
   * LWW, when a consumer asked for encoded values: the map's `LastWrite` (previous value's bytes, new
   * value's place). Valid only during `publish`: the map's next write overwrites it.
   */
  readonly encoded?: LastWrite | undefined
  readonly storedAt: Timestamp
  readonly origin: ChangeOrigin
  /** The connection whose write caused the change (excluded from SERVER_EVENT unless `echoToWriter`). */
  readonly writerId?: string | undefined
  /** True when the stored record differs from what the writer sent (server re-stamp, resolver merge). */
  readonly echoToWriter: boolean
}

/** Consumer stages run in this order for every change, so each recipient gets its notifications
 * for one change together and in the protocol order (protocol.md §1.9). */
export const ChangeStage = {
  ServerEvent: 0,
  Queries: 1,
  Search: 2,
  Journal: 3,
  Cluster: 4
} as const

type Listener = (change: Change) => void

/**
 * The one change feed. Dispatch is synchronous and in stage order: a change is fully fanned out
 * (all notifications enqueued) before the next one is applied, which is what keeps cross-connection
 * order (protocol.md §1.9). Listeners are plain functions and must not throw; a throwing listener is
 * isolated and logged so one bad consumer cannot break the write path.
 */
export class Changes extends Effect.Service<Changes>()("tessera/Changes", {
  sync: () => {
    let listeners: Array<{ readonly stage: number; readonly name: string; readonly fn: Listener }> = []
    const failures: Array<{ readonly name: string; readonly error: unknown }> = []
    // Who reads the previous value: stored LWW values are kept encoded, so a write decodes the previous one
    // (or copies its bytes) only for consumers that declared they read it.
    const decoded = { everyMap: 0, byMap: new Map<string, number>() }
    const encoded = { everyMap: 0, byMap: new Map<string, number>() }
    return {
      /**
       * Declares that a consumer reads the previous value of changes of `mapName` (every map when
       * undefined): `"decoded"` as `before`, or `"encoded"` as bytes in `encoded` (LWW). Until then a write
       * may leave them out. Returns the release.
       */
      needBefore: (mapName: string | undefined, how: "decoded" | "encoded"): (() => void) => {
        const counts = how === "decoded" ? decoded : encoded
        if (mapName === undefined) counts.everyMap++
        else counts.byMap.set(mapName, (counts.byMap.get(mapName) ?? 0) + 1)
        let released = false
        return () => {
          if (released) return
          released = true
          if (mapName === undefined) counts.everyMap--
          else {
            const n = counts.byMap.get(mapName)! - 1
            if (n === 0) counts.byMap.delete(mapName)
            else counts.byMap.set(mapName, n)
          }
        }
      },
      /** What a change of `mapName` must carry: `LWWMap.mergeReplacing`'s PREVIOUS_* flags. */
      beforeMode: (mapName: string): number =>
        (decoded.everyMap > 0 || (decoded.byMap.size > 0 && decoded.byMap.has(mapName)) ? PREVIOUS_DECODED : 0) |
        (encoded.everyMap > 0 || (encoded.byMap.size > 0 && encoded.byMap.has(mapName)) ? PREVIOUS_ENCODED : 0),
      subscribe: (stage: number, name: string, fn: Listener): (() => void) => {
        const entry = { stage, name, fn }
        listeners = [...listeners, entry].sort((a, b) => a.stage - b.stage)
        return () => {
          listeners = listeners.filter((l) => l !== entry)
        }
      },
      publish: (change: Change): void => {
        for (const l of listeners) {
          try {
            l.fn(change)
          } catch (error) {
            if (failures.length < 100) failures.push({ name: l.name, error })
          }
        }
      },
      /** Listener failures since the last call (logged by a background fiber). */
      drainFailures: (): Array<{ readonly name: string; readonly error: unknown }> => failures.splice(0)
    } as const
  }
}) {}
