/**
 * Last-writer-wins map with its Merkle tree (protocol.md §4.2, §4.6). Pure: the caller observes
 * timestamps in the HLC and supplies `storedAt` (the server HLC when it stores a version, behavior.md §2).
 */
import { fnv1a } from "./hash.js"
import { compareTimestamps } from "./hlc.js"
import { compareToSlot, LwwMerkleTree, slotEntry, slotHasTtl, slotIsTombstone, slotStoredAt, slotVisibleValue } from "./lww-merkle.js"
import type { LWWRecord, Timestamp } from "./types.js"

export interface StoredLww {
  readonly record: LWWRecord
  /** Server storage time of this version; never leaves the server. */
  readonly storedAt: Timestamp
}

// Visibility rules live with the slots that apply them; re-exported here for the map's users.
export { isExpired, isVisible } from "./lww-merkle.js"

/** `LWWMap.mergeReplacing`: the offered record lost the merge. */
export const MERGE_LOST: unique symbol = Symbol("MERGE_LOST")

export class LWWMap {
  /** The keys and records live in the tree's leaves (see lww-merkle.ts): nothing per key is stored twice. */
  readonly merkle = new LwwMerkleTree()
  /** Keys whose current record is a tombstone (GC candidates). */
  private readonly tombstoneSet = new Set<string>()
  /** Keys whose current record is live and carries a TTL (TTL-sweep candidates). */
  private readonly ttlKeys = new Set<string>()

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

  /**
   * A snapshot of the key's record and storage time, built per call for written keys (their versions are
   * kept flattened): compare timestamps, not object identities.
   */
  get(key: string): StoredLww | undefined {
    const slot = this.merkle.lookup(key)
    return slot === undefined ? undefined : slotEntry(slot)
  }

  /** Every key with its record, in insertion order. */
  *entries(): IterableIterator<[string, StoredLww]> {
    for (const [key, slot] of this.merkle.slots()) yield [key, slotEntry(slot)]
  }

  keys(): IterableIterator<string> {
    return this.merkle.keys()
  }

  /**
   * Stores `record` iff there is no local record or it is strictly newer (equal timestamps keep the
   * local one, so re-applying an op is a no-op). Returns whether the map changed.
   */
  merge(key: string, record: LWWRecord, storedAt: Timestamp): boolean {
    return this.mergeReplacing(key, record, storedAt, 0) !== MERGE_LOST
  }

  /**
   * `merge` that also tells what it replaced, in one lookup: the previous version's visible value at
   * `nowMs` (undefined when the key was new, a tombstone or expired), or `MERGE_LOST` when `record` lost
   * and the map is unchanged.
   */
  mergeReplacing(key: string, record: LWWRecord, storedAt: Timestamp, nowMs: number): unknown {
    const h = fnv1a(key)
    const local = this.merkle.lookup(key)
    if (local !== undefined && compareToSlot(record.timestamp, local) <= 0) return MERGE_LOST
    const previous = local === undefined ? undefined : slotVisibleValue(local, nowMs)
    const wasTombstone = local !== undefined && slotIsTombstone(local)
    const hadTtl = local !== undefined && slotHasTtl(local)
    this.merkle.put(key, h, record, storedAt, local)
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
    return previous
  }

  /** The visible value of `key` at `nowMs` (undefined: absent, tombstone or expired); builds nothing. */
  visibleValue(key: string, nowMs: number): unknown {
    const slot = this.merkle.lookup(key)
    return slot === undefined ? undefined : slotVisibleValue(slot, nowMs)
  }

  /** Every key with a visible value at `nowMs`, with that value. */
  *visibleEntries(nowMs: number): Generator<[string, unknown], void, undefined> {
    for (const [key, slot] of this.merkle.slots()) {
      const value = slotVisibleValue(slot, nowMs)
      if (value !== undefined) yield [key, value]
    }
  }

  /** Bulk load from storage at startup (same rule as `merge`, so duplicate rows resolve deterministically). */
  load(key: string, record: LWWRecord, storedAt: Timestamp): void {
    this.merge(key, record, storedAt)
  }

  /** Removes a key entirely (GC prune); returns whether it existed. */
  delete(key: string): boolean {
    if (this.merkle.remove(key, fnv1a(key)) === undefined) return false
    this.tombstoneSet.delete(key)
    this.ttlKeys.delete(key)
    return true
  }

  /** Removes tombstones whose `storedAt < olderThan` (server storage time, not record time); returns their keys. */
  pruneTombstones(olderThan: Timestamp): string[] {
    const pruned: string[] = []
    for (const key of this.tombstoneSet) {
      if (compareTimestamps(slotStoredAt(this.merkle.lookup(key)!), olderThan) < 0) pruned.push(key)
    }
    for (const key of pruned) this.delete(key)
    return pruned
  }

  /** Live records with a TTL that are expired at `nowMs` (the TTL sweep converts them to tombstones). */
  expiredEntries(nowMs: number): Array<[string, StoredLww]> {
    const out: Array<[string, StoredLww]> = []
    for (const key of this.ttlKeys) {
      const slot = this.merkle.lookup(key)!
      if (slotVisibleValue(slot, nowMs) === undefined) out.push([key, slotEntry(slot)])
    }
    return out
  }
}
