/**
 * Observed-remove multimap with a map-wide tombstone set and its Merkle tree (protocol.md §4.3, §4.6).
 * Pure: the caller observes timestamps in the HLC and supplies `storedAt` (behavior.md §2).
 *
 * Invariant: `items` never holds a tombstoned tag, so the Merkle entry of a key is always the hash of
 * exactly the records in `items[key]`.
 *
 * The entry hash is FNV over the key's parts in tag order, which cannot be updated by a delta. Each key
 * therefore keeps its records sorted by tag with the FNV state after every part, and a change re-hashes
 * only from the first changed position: clients' tags are timestamps, so adds land at the end and cost
 * O(one part) instead of O(all records of the key).
 */
import { compareTimestamps } from "./hlc.js"
import { compareCodeUnits, MerkleTree, orEntryHashSeed, orEntryHashStep, orRecordPart } from "./merkle.js"
import type { ORMapRecord, Timestamp } from "./types.js"

export interface StoredOr {
  readonly key: string
  readonly record: ORMapRecord
  /** Server storage time of this record version; never leaves the server. */
  readonly storedAt: Timestamp
  /** Cached `orRecordPart(record)`, so re-hashing a key does not re-serialize its values. */
  readonly part: string
}

export interface TombstoneResult {
  /** True iff the tombstone was new (even when it matched no record). */
  readonly changed: boolean
  /** The key whose record the tombstone removed, if any. */
  readonly key?: string
  readonly removed?: ORMapRecord
  /** Further removals when the same tag was (abnormally) used under several keys. */
  readonly others?: ReadonlyArray<{ readonly key: string; readonly record: ORMapRecord }>
}

export interface MergeKeyResult {
  readonly added: ORMapRecord[]
  readonly updated: ORMapRecord[]
  /** Live records removed by newly learned tombstones; `key` may differ from the merged key. */
  readonly removed: Array<{ key: string; tag: string; record: ORMapRecord }>
  readonly newTombstones: string[]
}

/** Records of one key: by tag in insertion order, plus tag-sorted order with prefix hashes. */
class KeyRecords {
  readonly byTag = new Map<string, StoredOr>()
  readonly sorted: StoredOr[] = []
  /** prefix[i] = entry-hash FNV state after the part of sorted[i]. */
  readonly prefix: number[] = []
  /** First sorted position whose prefix hash is stale. */
  dirtyFrom = Number.POSITIVE_INFINITY
  constructor(readonly seed: number) {}

  /** Position of `tag` in `sorted`, or where it would be inserted. */
  position(tag: string): number {
    let hi = this.sorted.length
    // fast path: clients' tags are timestamps, so a new tag usually sorts last
    if (hi === 0 || compareCodeUnits(this.sorted[hi - 1]!.record.tag, tag) < 0) return hi
    let lo = 0
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareCodeUnits(this.sorted[mid]!.record.tag, tag) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  set(stored: StoredOr, replacing: boolean): void {
    const i = this.position(stored.record.tag)
    if (replacing) this.sorted[i] = stored
    else {
      this.sorted.splice(i, 0, stored)
      this.prefix.splice(i, 0, 0)
    }
    this.byTag.set(stored.record.tag, stored) // replacing keeps the tag's insertion position
    if (i < this.dirtyFrom) this.dirtyFrom = i
  }

  delete(tag: string): StoredOr | undefined {
    const stored = this.byTag.get(tag)
    if (stored === undefined) return undefined
    this.byTag.delete(tag)
    const i = this.position(tag)
    this.sorted.splice(i, 1)
    this.prefix.splice(i, 1)
    if (i < this.dirtyFrom) this.dirtyFrom = i
    return stored
  }

  /** Current entry hash, re-hashing only the stale suffix. */
  hash(): number {
    const n = this.sorted.length
    if (this.dirtyFrom < n) {
      let h = this.dirtyFrom === 0 ? this.seed : this.prefix[this.dirtyFrom - 1]!
      for (let i = this.dirtyFrom; i < n; i++) {
        h = orEntryHashStep(h, this.sorted[i]!.part)
        this.prefix[i] = h
      }
    }
    this.dirtyFrom = Number.POSITIVE_INFINITY
    return n === 0 ? this.seed : this.prefix[n - 1]!
  }
}

export function isOrRecordExpired(record: ORMapRecord, nowMs: number): boolean {
  return record.ttlMs !== undefined && record.timestamp.millis + record.ttlMs < nowMs
}

export class ORMap {
  private readonly tree = new MerkleTree()
  /** Keys whose Merkle entry is stale; flushed when the tree is read, so bursts on one key hash once. */
  private readonly dirtyKeys = new Set<string>()
  /** key → its records. */
  private readonly items = new Map<string, KeyRecords>()
  /** tag → key holding it (an array only if a tag was used under several keys). */
  private readonly tagIndex = new Map<string, string | string[]>()
  /** Map-wide tombstones: tag → storage time of the first time the server recorded it. */
  private readonly tombstones = new Map<string, Timestamp>()
  /** Records carrying a TTL (TTL-sweep candidates). */
  private readonly ttlRecords = new Set<StoredOr>()

  /** The map's Merkle tree (one entry per key with ≥ 1 record), brought up to date on access. */
  get merkle(): MerkleTree {
    if (this.dirtyKeys.size > 0) {
      for (const key of this.dirtyKeys) this.rehashNow(key)
      this.dirtyKeys.clear()
    }
    return this.tree
  }

  /** Number of keys with at least one record. */
  get size(): number {
    return this.items.size
  }

  keys(): IterableIterator<string> {
    return this.items.keys()
  }

  getRecords(key: string): ReadonlyArray<ORMapRecord> {
    const tags = this.items.get(key)?.byTag
    if (tags === undefined) return []
    const out: ORMapRecord[] = []
    for (const stored of tags.values()) out.push(stored.record)
    return out
  }

  /** Stored versions of a key (with `storedAt`), in tag-insertion order. */
  storedRecords(key: string): ReadonlyArray<StoredOr> {
    const tags = this.items.get(key)?.byTag
    return tags === undefined ? [] : Array.from(tags.values())
  }

  liveRecords(key: string, nowMs: number): ORMapRecord[] {
    const out: ORMapRecord[] = []
    const tags = this.items.get(key)?.byTag
    if (tags === undefined) return out
    for (const stored of tags.values()) if (!isOrRecordExpired(stored.record, nowMs)) out.push(stored.record)
    return out
  }

  liveValues(key: string, nowMs: number): unknown[] {
    const out: unknown[] = []
    const tags = this.items.get(key)?.byTag
    if (tags === undefined) return out
    for (const stored of tags.values()) if (!isOrRecordExpired(stored.record, nowMs)) out.push(stored.record.value)
    return out
  }

  isTombstoned(tag: string): boolean {
    return this.tombstones.has(tag)
  }

  tombstoneTags(): string[] {
    return Array.from(this.tombstones.keys())
  }

  tombstoneEntries(): IterableIterator<[tag: string, storedAt: Timestamp]> {
    return this.tombstones.entries()
  }

  get tombstoneCount(): number {
    return this.tombstones.size
  }

  recordStoredAt(key: string, tag: string): Timestamp | undefined {
    return this.items.get(key)?.byTag.get(tag)?.storedAt
  }

  /** First key holding `tag` (O(1)). */
  findKeyOfTag(tag: string): string | undefined {
    const k = this.tagIndex.get(tag)
    return typeof k === "string" ? k : k?.[0]
  }

  /**
   * Adds `record` under `key`. No change if its tag is tombstoned, or the tag is already stored under
   * `key` with a timestamp that is not older (same replacement rule as `mergeKey`, so the result does
   * not depend on whether a record arrived by op or by sync).
   */
  apply(key: string, record: ORMapRecord, storedAt: Timestamp): boolean {
    if (this.tombstones.has(record.tag)) return false
    const existing = this.items.get(key)?.byTag.get(record.tag)
    if (existing !== undefined && compareTimestamps(record.timestamp, existing.record.timestamp) <= 0) return false
    this.put(key, record, storedAt, existing)
    this.rehash(key)
    return true
  }

  /** Records a tombstone and removes the tag's record. A tombstone already known is not a change. */
  applyTombstone(tag: string, storedAt: Timestamp): TombstoneResult {
    if (this.tombstones.has(tag)) return { changed: false }
    this.tombstones.set(tag, storedAt)
    const removals = this.removeTag(tag)
    if (removals.length === 0) return { changed: true }
    for (const r of removals) this.rehash(r.key)
    const first = removals[0]!
    return removals.length === 1
      ? { changed: true, key: first.key, removed: first.record }
      : { changed: true, key: first.key, removed: first.record, others: removals.slice(1) }
  }

  /**
   * Merges a remote entry (sync / push-diff): learns all tombstones (removing their records wherever
   * they live), then adds new tags and replaces a stored tag only by a strictly newer timestamp.
   */
  mergeKey(
    key: string,
    records: ReadonlyArray<ORMapRecord>,
    tombstones: ReadonlyArray<string>,
    storedAt: Timestamp
  ): MergeKeyResult {
    const added: ORMapRecord[] = []
    const updated: ORMapRecord[] = []
    const removed: Array<{ key: string; tag: string; record: ORMapRecord }> = []
    const newTombstones: string[] = []
    let otherTouched: Set<string> | undefined
    for (const tag of tombstones) {
      if (this.tombstones.has(tag)) continue
      this.tombstones.set(tag, storedAt)
      newTombstones.push(tag)
      for (const r of this.removeTag(tag)) {
        removed.push({ key: r.key, tag, record: r.record })
        if (r.key !== key) (otherTouched ??= new Set()).add(r.key)
      }
    }
    for (const record of records) {
      if (this.tombstones.has(record.tag)) continue
      const existing = this.items.get(key)?.byTag.get(record.tag)
      if (existing === undefined) {
        this.put(key, record, storedAt, undefined)
        added.push(record)
      } else if (compareTimestamps(record.timestamp, existing.record.timestamp) > 0) {
        this.put(key, record, storedAt, existing)
        updated.push(record)
      }
    }
    if (added.length > 0 || updated.length > 0 || removed.length > 0) this.rehash(key)
    if (otherTouched !== undefined) for (const k of otherTouched) this.rehash(k)
    return { added, updated, removed, newTombstones }
  }

  /** Forgets one tombstone (GC prunes in slices with this); returns whether it existed. */
  deleteTombstone(tag: string): boolean {
    return this.tombstones.delete(tag)
  }

  /** Removes tombstones whose server storage time is `< olderThan`; returns their tags. */
  pruneTombstones(olderThan: Timestamp): string[] {
    const pruned: string[] = []
    for (const [tag, storedAt] of this.tombstones) {
      if (compareTimestamps(storedAt, olderThan) < 0) pruned.push(tag)
    }
    for (const tag of pruned) this.tombstones.delete(tag)
    return pruned
  }

  /** Records with a TTL that are expired at `nowMs` (the TTL sweep tombstones their tags). */
  expiredRecords(nowMs: number): StoredOr[] {
    const out: StoredOr[] = []
    for (const stored of this.ttlRecords) if (isOrRecordExpired(stored.record, nowMs)) out.push(stored)
    return out
  }

  /** Startup load of one record (same rule as `apply`). */
  loadRecord(key: string, record: ORMapRecord, storedAt: Timestamp): void {
    this.apply(key, record, storedAt)
  }

  /** Startup load of all stored records of one key, hashing the key once. */
  loadKey(key: string, stored: ReadonlyArray<{ readonly record: ORMapRecord; readonly storedAt: Timestamp }>): void {
    let touched = false
    for (const { record, storedAt } of stored) {
      if (this.tombstones.has(record.tag)) continue
      const existing = this.items.get(key)?.byTag.get(record.tag)
      if (existing !== undefined && compareTimestamps(record.timestamp, existing.record.timestamp) <= 0) continue
      this.put(key, record, storedAt, existing)
      touched = true
    }
    if (touched) this.rehash(key)
  }

  /** Startup load of one tombstone (same as `applyTombstone`). */
  loadTombstone(tag: string, storedAt: Timestamp): void {
    this.applyTombstone(tag, storedAt)
  }

  private put(key: string, record: ORMapRecord, storedAt: Timestamp, existing: StoredOr | undefined): void {
    let tags = this.items.get(key)
    if (tags === undefined) {
      tags = new KeyRecords(orEntryHashSeed(key))
      this.items.set(key, tags)
    }
    const stored: StoredOr = { key, record, storedAt, part: orRecordPart(record) }
    tags.set(stored, existing !== undefined)
    if (existing !== undefined) this.ttlRecords.delete(existing)
    else this.indexAdd(record.tag, key)
    if (record.ttlMs !== undefined) this.ttlRecords.add(stored)
  }

  /** Removes `tag` from every key holding it (Merkle not updated; callers rehash the keys). */
  private removeTag(tag: string): Array<{ key: string; record: ORMapRecord }> {
    const indexed = this.tagIndex.get(tag)
    if (indexed === undefined) return []
    this.tagIndex.delete(tag)
    const keys = typeof indexed === "string" ? [indexed] : indexed
    const out: Array<{ key: string; record: ORMapRecord }> = []
    for (const key of keys) {
      const stored = this.items.get(key)!.delete(tag)!
      this.ttlRecords.delete(stored)
      out.push({ key, record: stored.record })
    }
    return out
  }

  /** Marks a key's Merkle entry stale; a key left without records leaves the map at once. */
  private rehash(key: string): void {
    const tags = this.items.get(key)
    if (tags !== undefined && tags.sorted.length === 0) this.items.delete(key)
    this.dirtyKeys.add(key)
  }

  /** Recomputes the Merkle entry of one key (removing it when the key has no records). */
  private rehashNow(key: string): void {
    const tags = this.items.get(key)
    if (tags === undefined) this.tree.remove(key)
    else this.tree.update(key, tags.hash())
  }

  private indexAdd(tag: string, key: string): void {
    const current = this.tagIndex.get(tag)
    if (current === undefined) this.tagIndex.set(tag, key)
    else if (typeof current === "string") {
      if (current !== key) this.tagIndex.set(tag, [current, key])
    } else if (!current.includes(key)) current.push(key)
  }
}
