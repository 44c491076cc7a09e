/**
 * Last-writer-wins map with its Merkle tree (protocol.md §4.2, §4.6). Pure: the caller observes
 * timestamps in the HLC and supplies `storedAt` (the server HLC when it stores a version, behavior.md §2).
 */
import { fnv1a } from "./hash.js"
import { compareTimestamps } from "./hlc.js"
import { copyBytes } from "./byte-arena.js"
import { LwwStore } from "./lww-store.js"
import { wordBytes } from "./value-codec.js"
import type { LWWRecord, Timestamp } from "./types.js"

export interface StoredLww {
  readonly record: LWWRecord
  /** Server storage time of this version; never leaves the server. */
  readonly storedAt: Timestamp
}

/** `timestamp.millis + ttlMs < nowMs`; records without `ttlMs` never expire. */
export function isExpired(record: LWWRecord, nowMs: number): boolean {
  return record.ttlMs !== undefined && record.timestamp.millis + record.ttlMs < nowMs
}

/** Not a tombstone and not expired. */
export function isVisible(record: LWWRecord, nowMs: number): boolean {
  return record.value !== null && !isExpired(record, nowMs)
}

/** `LWWMap.mergeReplacing`: the offered record lost the merge. */
export const MERGE_LOST: unique symbol = Symbol("MERGE_LOST")

/** `mergeReplacing` flags: return the previous visible value decoded / keep its bytes in `lastWrite`. */
export const PREVIOUS_DECODED = 1
export const PREVIOUS_ENCODED = 2

const EMPTY = Buffer.alloc(0)

/**
 * The encoded values of a map's latest `mergeReplacing(…, PREVIOUS_ENCODED)`, for consumers that keep
 * values encoded (the journal): one object per map, overwritten by the next such write, so it is valid
 * only while that write's change is being published. Words as in value-codec.ts (0 = no value).
 */
export class LastWrite {
  key = ""
  /** The stored value: `valueBuf[valueStart, valueStart + wordBytes(valueWord))`. */
  valueBuf: Buffer = EMPTY
  valueStart = 0
  valueWord = 0
  /** The previous visible value (0 when there was none): `previousBuf[0, wordBytes(previousWord))`. */
  previousBuf: Buffer = EMPTY
  previousWord = 0
}

/** `LastWrite.previousBuf` size kept between writes; a bigger previous value gets a buffer of its own. */
const PREVIOUS_SCRATCH = 64 * 1024

/** Copies the value of `row` into `last.previousBuf` (before the write replaces it in place). */
const saveBytes = (last: LastWrite, store: LwwStore, row: number): void => {
  const word = store.valueWordAt(row)
  const n = wordBytes(word)
  const size = last.previousBuf.length
  if (n > size || (size > PREVIOUS_SCRATCH && n <= PREVIOUS_SCRATCH)) last.previousBuf = Buffer.allocUnsafeSlow(Math.max(n, PREVIOUS_SCRATCH))
  const start = store.valueStartAt(row)
  copyBytes(store.valueBufferAt(row), start, last.previousBuf, 0, n)
  last.previousWord = word
}

export class LWWMap {
  /** The records, with the map's Merkle tree (see lww-store.ts): keys and values are kept off the JS heap. */
  readonly merkle = new LwwStore()
  /** Keys whose current record is a tombstone (GC candidates). */
  private readonly tombstoneSet = new Set<string>()
  /** Keys whose current record is live and carries a TTL (TTL-sweep candidates). */
  private readonly ttlKeys = new Set<string>()
  /** Filled by writes with PREVIOUS_ENCODED (created with the first). */
  private last: LastWrite | undefined

  /** The encoded values of the latest write made with PREVIOUS_ENCODED. */
  get lastWrite(): LastWrite {
    return (this.last ??= new LastWrite())
  }

  get size(): number {
    return this.merkle.size
  }

  get tombstoneCount(): number {
    return this.tombstoneSet.size
  }

  /** Keys whose record is a tombstone (GC walks these instead of the whole map). Safe to delete while iterating. */
  tombstoneKeys(): IterableIterator<string> {
    return this.tombstoneSet.values()
  }

  /** A snapshot of the key's record (value decoded) and storage time: compare timestamps, not identities. */
  get(key: string): StoredLww | undefined {
    const row = this.merkle.find(key, fnv1a(key))
    return row < 0 ? undefined : this.entryAt(row)
  }

  /** Every key with its record, in row order (insertion order until keys are removed). */
  *entries(): IterableIterator<[string, StoredLww]> {
    const store = this.merkle
    for (const row of store.rows()) yield [store.keyAt(row), this.entryAt(row)]
  }

  /** The entries stored after `since` (server storage time), decoding only those. */
  *entriesStoredAfter(since: Timestamp): IterableIterator<[string, StoredLww]> {
    const store = this.merkle
    for (const row of store.rows()) if (store.compareStoredAt(row, since) > 0) yield [store.keyAt(row), this.entryAt(row)]
  }

  *keys(): IterableIterator<string> {
    const store = this.merkle
    for (const row of store.rows()) yield store.keyAt(row)
  }

  /**
   * Stores `record` iff there is no local record or it is strictly newer (equal timestamps keep the
   * local one, so re-applying an op is a no-op). Returns whether the map changed.
   */
  merge(key: string, record: LWWRecord, storedAt: Timestamp): boolean {
    return this.mergeReplacing(key, record, storedAt, 0, 0) !== MERGE_LOST
  }

  /**
   * `merge` that also tells what it replaced, in one lookup: `MERGE_LOST` when `record` lost and the map is
   * unchanged; else, with PREVIOUS_DECODED in `previous`, the previous version's visible value at `nowMs`
   * (undefined when the key was new, a tombstone or expired), decoded, and undefined without it (values
   * are stored encoded: decoding one nobody reads is wasted work on the write path). With
   * PREVIOUS_ENCODED, `lastWrite` gets the previous visible value's bytes and the new value's place.
   */
  mergeReplacing(key: string, record: LWWRecord, storedAt: Timestamp, nowMs: number, previous = PREVIOUS_DECODED): unknown {
    const store = this.merkle
    const h = fnv1a(key)
    const row = store.find(key, h)
    let before: unknown
    let wasTombstone = false
    let hadTtl = false
    const last = previous & PREVIOUS_ENCODED ? this.lastWrite : undefined
    if (last !== undefined) last.previousWord = 0
    if (row >= 0) {
      if (store.compareTo(record.timestamp, row) <= 0) return MERGE_LOST
      if (previous !== 0 && store.isVisibleAt(row, nowMs)) {
        if (previous & PREVIOUS_DECODED) before = store.valueAt(row)
        if (last !== undefined) saveBytes(last, store, row)
      }
      wasTombstone = store.isTombstone(row)
      hadTtl = !wasTombstone && store.ttlAt(row) !== undefined
    }
    const written = store.put(key, h, record, storedAt, row)
    if (last !== undefined) {
      last.key = key
      last.valueBuf = store.valueBufferAt(written)
      last.valueStart = store.valueStartAt(written)
      last.valueWord = store.valueWordAt(written)
    }
    // The index sets change only on transitions (most writes replace a live value with a live value).
    const tombstone = record.value === null
    if (tombstone !== wasTombstone) {
      if (tombstone) this.tombstoneSet.add(key)
      else this.tombstoneSet.delete(key)
    }
    const ttl = !tombstone && record.ttlMs !== undefined
    if (ttl !== hadTtl) {
      if (ttl) this.ttlKeys.add(key)
      else this.ttlKeys.delete(key)
    }
    return before
  }

  /** The visible value of `key` at `nowMs` (undefined: absent, tombstone or expired), decoded. */
  visibleValue(key: string, nowMs: number): unknown {
    const store = this.merkle
    const row = store.find(key, fnv1a(key))
    return row >= 0 && store.isVisibleAt(row, nowMs) ? store.valueAt(row) : undefined
  }

  /** The store rows (`merkle.keyAt` / `merkle.valueAt`) with a visible value at `nowMs`; decodes nothing. */
  *visibleRows(nowMs: number): Generator<number, void, undefined> {
    const store = this.merkle
    for (const row of store.rows()) if (store.isVisibleAt(row, nowMs)) yield row
  }

  /** Every key with a visible value at `nowMs`, with that value. */
  *visibleEntries(nowMs: number): Generator<[string, unknown], void, undefined> {
    const store = this.merkle
    for (const row of store.rows()) if (store.isVisibleAt(row, nowMs)) yield [store.keyAt(row), store.valueAt(row)]
  }

  /** Bulk load from storage at startup (same rule as `merge`, so duplicate rows resolve deterministically). */
  load(key: string, record: LWWRecord, storedAt: Timestamp): void {
    this.merge(key, record, storedAt)
  }

  /**
   * Bulk load of a row as the SQL stores hand it over: fields flat, the value still JSON text,
   * `text[start, end)` (`start` < 0: a tombstone), kept as text until read. Same rule as `merge`.
   */
  loadJson(
    key: string, text: string, start: number, end: number, millis: number, counter: number, nodeId: string,
    ttlMs: number | undefined, storedMillis: number, storedCounter: number, storedNodeId: string
  ): void {
    const store = this.merkle
    const h = fnv1a(key)
    const row = store.find(key, h)
    // Keys are unique within one stored map, so a loaded key is normally new.
    if (row >= 0) {
      if (store.compareTo({ millis, counter, nodeId }, row) <= 0) return
      if (store.isTombstone(row)) this.tombstoneSet.delete(key)
      this.ttlKeys.delete(key)
    }
    store.putJson(key, h, row, text, start, end, millis, counter, nodeId, ttlMs, storedMillis, storedCounter, storedNodeId)
    if (start < 0) this.tombstoneSet.add(key)
    else if (ttlMs !== undefined) this.ttlKeys.add(key)
  }

  /** Removes a key entirely (GC prune); returns whether it existed. */
  delete(key: string): boolean {
    if (!this.merkle.remove(key, fnv1a(key))) return false
    this.tombstoneSet.delete(key)
    this.ttlKeys.delete(key)
    return true
  }

  /** Removes tombstones whose `storedAt < olderThan` (server storage time, not record time); returns their keys. */
  pruneTombstones(olderThan: Timestamp): string[] {
    const store = this.merkle
    const pruned: string[] = []
    for (const key of this.tombstoneSet) {
      if (store.compareStoredAt(store.find(key, fnv1a(key)), olderThan) < 0) pruned.push(key)
    }
    for (const key of pruned) this.delete(key)
    return pruned
  }

  /** Live records with a TTL that are expired at `nowMs` (the TTL sweep converts them to tombstones). */
  expiredEntries(nowMs: number): Array<[string, StoredLww]> {
    const store = this.merkle
    const out: Array<[string, StoredLww]> = []
    for (const key of this.ttlKeys) {
      const row = store.find(key, fnv1a(key))
      if (!store.isVisibleAt(row, nowMs)) out.push([key, this.entryAt(row)])
    }
    return out
  }

  private entryAt(row: number): StoredLww {
    return { record: this.merkle.recordAt(row), storedAt: this.merkle.storedAtAt(row) }
  }
}
