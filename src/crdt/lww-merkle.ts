/**
 * The LWW map's store and its Merkle tree in one structure (protocol.md §4.6): one `Map` from key to slot,
 * and per depth-3 leaf (chosen by `fnv1a(key)` as in `MerkleTree`) its hash and an array of its keys. No
 * per-key hash map: an item hash is kept in written entries and recomputed from the timestamp of loaded
 * records.
 *
 * Read API (`rootHash`, `getBuckets`, `isLeaf`, `leafKeys`, `itemHash`, `size`) answers exactly as a
 * `MerkleTree` fed `lwwItemHash(key, record.timestamp)` for the same keys, including the order of bucket
 * keys and the emptied-node rule (nodes are never removed; an emptied node hashes to 0).
 *
 * Memory per key: one `Map` entry and one leaf-array slot. The slot is the `LWWRecord` itself when the
 * storage time equals the record's timestamp (rows loaded from storage), else a `WrittenEntry`.
 */
import { fnv1a } from "./hash.js"
import { compareTimestamps, compareTimestampTo } from "./hlc.js"
import { lwwItemHashAfterKey, MERKLE_DEPTH } from "./merkle.js"
import { NodeIdInterner } from "./node-ids.js"
import type { LWWRecord, Timestamp } from "./types.js"

/** A record with its server storage time (the shape `LWWMap.get` returns): an immutable snapshot. */
export class StoredEntry {
  constructor(
    readonly record: LWWRecord,
    /** Server storage time of this version; never leaves the server. */
    readonly storedAt: Timestamp
  ) {}
}

/**
 * The slot of a key written since load, with the version's fields flattened into one object that later
 * writes update in place. A write then leaves nothing behind but its value: the client's record and
 * timestamp objects die young instead of being promoted, and the doubles live in the entry's own boxes.
 * It keeps its item hash (as an int32, a small integer for V8) so a replace does not recompute the old one.
 * Never handed out: `get` returns `StoredEntry` snapshots.
 */
export class WrittenEntry {
  // `declare`: no class-field emit, so no field starts as `undefined` and the number fields keep V8's
  // double representation (boxes updated in place instead of a new HeapNumber per write).
  declare value: unknown
  declare millis: number
  declare counter: number
  declare nodeId: string
  /** NaN: no TTL. */
  declare ttlMs: number
  declare storedMillis: number
  declare storedCounter: number
  declare storedNodeId: string
  declare hash: number
  constructor(record: LWWRecord, storedAt: Timestamp, hash: number, ids: NodeIdInterner) {
    // Every field is written here, always in the same order: one object shape for all entries.
    this.assign(record, storedAt, hash, ids)
  }
  assign(record: LWWRecord, storedAt: Timestamp, hash: number, ids: NodeIdInterner): void {
    const ts = record.timestamp
    this.value = record.value
    this.millis = ts.millis
    this.counter = ts.counter
    this.nodeId = ids.intern(ts.nodeId)
    this.ttlMs = record.ttlMs ?? Number.NaN
    this.storedMillis = storedAt.millis
    this.storedCounter = storedAt.counter
    this.storedNodeId = storedAt.nodeId
    this.hash = hash
  }
  record(): LWWRecord {
    const timestamp: Timestamp = { millis: this.millis, counter: this.counter, nodeId: this.nodeId }
    return Number.isNaN(this.ttlMs) ? { value: this.value, timestamp } : { value: this.value, timestamp, ttlMs: this.ttlMs }
  }
  storedAt(): Timestamp {
    return { millis: this.storedMillis, counter: this.storedCounter, nodeId: this.storedNodeId }
  }
}

/** What a leaf holds per key: the bare record when `storedAt` is its own timestamp (loaded rows), else an entry. */
export type LwwSlot = LWWRecord | WrittenEntry

/** `timestamp.millis + ttlMs < nowMs`; records without `ttlMs` never expire. */
export function isExpired(record: LWWRecord, nowMs: number): boolean {
  return record.ttlMs !== undefined && record.timestamp.millis + record.ttlMs < nowMs
}

/** Not a tombstone and not expired. */
export function isVisible(record: LWWRecord, nowMs: number): boolean {
  return record.value !== null && !isExpired(record, nowMs)
}

/** The slot's storage time (built for written entries). */
export const slotStoredAt = (slot: LwwSlot): Timestamp => (slot instanceof WrittenEntry ? slot.storedAt() : slot.timestamp)

/** `compareTimestamps(ts, <the slot's record timestamp>)` without building anything. */
export const compareToSlot = (ts: Timestamp, slot: LwwSlot): number =>
  slot instanceof WrittenEntry ? compareTimestampTo(ts, slot.millis, slot.counter, slot.nodeId) : compareTimestamps(ts, slot.timestamp)

/** The slot's visible value at `nowMs`: undefined for a tombstone or an expired record. */
export const slotVisibleValue = (slot: LwwSlot, nowMs: number): unknown => {
  if (slot instanceof WrittenEntry) {
    return slot.value === null || slot.millis + slot.ttlMs < nowMs ? undefined : slot.value // NaN TTL: never expired
  }
  return isVisible(slot, nowMs) ? slot.value : undefined
}

/** Whether the slot holds a tombstone / a live value with a TTL (the LWW map's index sets). */
export const slotIsTombstone = (slot: LwwSlot): boolean => slot.value === null
export const slotHasTtl = (slot: LwwSlot): boolean =>
  slot.value !== null && (slot instanceof WrittenEntry ? !Number.isNaN(slot.ttlMs) : slot.ttlMs !== undefined)

/** A `StoredEntry` snapshot of a slot. */
export const slotEntry = (slot: LwwSlot): StoredEntry =>
  slot instanceof WrittenEntry ? new StoredEntry(slot.record(), slot.storedAt()) : new StoredEntry(slot, slot.timestamp)

const HEX = "0123456789abcdef"
/** Inner nodes in `innerHash` / `innerSeq`: [0] root, [1..16] depth 1, [17..272] depth 2. */
const DEPTH1 = 1
const DEPTH2 = 17
const INNER_NODES = 1 + 16 + 256

/** A depth-3 leaf: its hash, its creation rank among the tree's nodes, and its keys. */
class Leaf {
  hash = 0
  /** Unordered (removal swaps the last key in). */
  readonly keys: string[] = []
  constructor(readonly seq: number) {}
}

/** Hex digit value of a lowercase path character; -1 otherwise (no such node, as in `MerkleTree`). */
const hexValue = (c: number): number => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1)

/** Bucket keys in node-creation order (the insertion order `MerkleTree`'s child maps have). */
const bucketsInCreationOrder = (children: Array<{ char: string; seq: number; hash: number }>): Record<string, number> => {
  children.sort((a, b) => a.seq - b.seq)
  const out: Record<string, number> = {}
  for (const c of children) out[c.char] = c.hash
  return out
}

export class LwwMerkleTree {
  /** Allocated on the first insert: every map state carries an LWW map, most stay empty. */
  private innerHash: Uint32Array | undefined
  /** Creation rank (1-based) of each inner node; 0 = the node does not exist. The root always exists. */
  private innerSeq: Uint32Array | undefined
  /** Leaves by depth-2 node (256 groups of 16). */
  private groups: Array<Array<Leaf | undefined> | undefined> | undefined
  private nextSeq = 1
  /** Every key's slot; one map, so a lookup needs no key hash and scans run in insertion order. */
  private readonly items = new Map<string, LwwSlot>()
  /** Writers' node ids, shared by the entries they write (created with the first written entry). */
  private nodeIds: NodeIdInterner | undefined

  get rootHash(): number {
    return this.innerHash === undefined ? 0 : this.innerHash[0]!
  }

  /** Number of keys. */
  get size(): number {
    return this.items.size
  }

  /** The slot of `key`. */
  lookup(key: string): LwwSlot | undefined {
    return this.items.get(key)
  }

  /**
   * Stores `record` (stored at `storedAt`) for `key` (`h` = `fnv1a(key)`); `old` must be its current slot
   * (from `lookup`). A written slot is updated in place; the item-hash change is added along the path.
   */
  put(key: string, h: number, record: LWWRecord, storedAt: Timestamp, old: LwwSlot | undefined): void {
    const next = lwwItemHashAfterKey(h, record.timestamp)
    const leaf = this.leafFor(h)
    if (old instanceof WrittenEntry) {
      const previous = old.hash >>> 0
      old.assign(record, storedAt, next | 0, this.nodeIds!)
      this.addAlongPath(h, leaf, (next - previous) >>> 0)
      return
    }
    this.items.set(key, old === undefined && compareTimestamps(record.timestamp, storedAt) === 0 ? record : new WrittenEntry(record, storedAt, next | 0, (this.nodeIds ??= new NodeIdInterner())))
    if (old === undefined) {
      leaf.keys.push(key)
      this.addAlongPath(h, leaf, next)
    } else {
      this.addAlongPath(h, leaf, (next - lwwItemHashAfterKey(h, old.timestamp)) >>> 0)
    }
  }

  /** Removes `key`; returns its slot. Nodes stay in place (an emptied node hashes to 0). */
  remove(key: string, h: number): LwwSlot | undefined {
    const old = this.items.get(key)
    if (old === undefined) return undefined
    this.items.delete(key)
    const leaf = this.groups![h >>> 24]![(h >>> 20) & 15]!
    const keys = leaf.keys
    const i = keys.indexOf(key)
    keys[i] = keys[keys.length - 1]!
    keys.pop()
    this.addAlongPath(h, leaf, -(old instanceof WrittenEntry ? old.hash >>> 0 : lwwItemHashAfterKey(h, old.timestamp)) >>> 0)
    return old
  }

  /** Item hash of `key` (`lwwItemHash` of its record's timestamp), if present. */
  itemHash(key: string): number | undefined {
    const h = fnv1a(key)
    const slot = this.items.get(key)
    return slot === undefined ? undefined : slot instanceof WrittenEntry ? slot.hash >>> 0 : lwwItemHashAfterKey(h, slot.timestamp)
  }

  /** `{ childChar: childHash }` of the inner node at `path`; `{}` for a missing node or a leaf. */
  getBuckets(path: string): Record<string, number> {
    const hashes = this.innerHash
    const seqs = this.innerSeq
    if (hashes === undefined || seqs === undefined || path.length >= MERKLE_DEPTH) return {}
    const children: Array<{ char: string; seq: number; hash: number }> = []
    if (path.length === 0) {
      for (let c = 0; c < 16; c++) {
        const seq = seqs[DEPTH1 + c]!
        if (seq !== 0) children.push({ char: HEX[c]!, seq, hash: hashes[DEPTH1 + c]! })
      }
      return bucketsInCreationOrder(children)
    }
    const c1 = hexValue(path.charCodeAt(0))
    if (c1 < 0 || seqs[DEPTH1 + c1] === 0) return {}
    if (path.length === 1) {
      for (let c = 0; c < 16; c++) {
        const i = DEPTH2 + c1 * 16 + c
        if (seqs[i] !== 0) children.push({ char: HEX[c]!, seq: seqs[i]!, hash: hashes[i]! })
      }
      return bucketsInCreationOrder(children)
    }
    const c2 = hexValue(path.charCodeAt(1))
    const group = c2 < 0 ? undefined : this.groups![c1 * 16 + c2]
    if (group === undefined) return {}
    for (let c = 0; c < 16; c++) {
      const leaf = group[c]
      if (leaf !== undefined) children.push({ char: HEX[c]!, seq: leaf.seq, hash: leaf.hash })
    }
    return bucketsInCreationOrder(children)
  }

  /** True iff a depth-3 leaf exists at `path`. */
  isLeaf(path: string): boolean {
    return this.leafAt(path) !== undefined
  }

  /** Keys held by the leaf at `path`; `[]` if there is no leaf there. */
  leafKeys(path: string): ReadonlyArray<string> {
    const leaf = this.leafAt(path)
    return leaf === undefined ? [] : leaf.keys.slice()
  }

  /** Every key with its slot, in insertion order. */
  slots(): IterableIterator<[string, LwwSlot]> {
    return this.items.entries()
  }

  keys(): IterableIterator<string> {
    return this.items.keys()
  }

  private leafAt(path: string): Leaf | undefined {
    if (path.length !== MERKLE_DEPTH || this.groups === undefined) return undefined
    const c1 = hexValue(path.charCodeAt(0))
    const c2 = hexValue(path.charCodeAt(1))
    const c3 = hexValue(path.charCodeAt(2))
    if (c1 < 0 || c2 < 0 || c3 < 0) return undefined
    return this.groups[c1 * 16 + c2]?.[c3]
  }

  /** The leaf of hash `h`, creating it and its ancestors (in root-to-leaf order, as `MerkleTree` does). */
  private leafFor(h: number): Leaf {
    const g = h >>> 24
    const l = (h >>> 20) & 15
    const existing = this.groups?.[g]?.[l]
    if (existing !== undefined) return existing
    if (this.innerSeq === undefined) {
      this.innerHash = new Uint32Array(INNER_NODES)
      this.innerSeq = new Uint32Array(INNER_NODES)
      this.groups = new Array(256).fill(undefined)
    }
    const seqs = this.innerSeq
    const n1 = DEPTH1 + (h >>> 28)
    if (seqs[n1] === 0) seqs[n1] = this.nextSeq++
    if (seqs[DEPTH2 + g] === 0) seqs[DEPTH2 + g] = this.nextSeq++
    let group = this.groups![g]
    if (group === undefined) {
      group = new Array(16).fill(undefined)
      this.groups![g] = group
    }
    const leaf = new Leaf(this.nextSeq++)
    group[l] = leaf
    return leaf
  }

  private addAlongPath(h: number, leaf: Leaf, delta: number): void {
    if (delta === 0) return
    const hashes = this.innerHash!
    hashes[0] = hashes[0]! + delta // Uint32Array stores mod 2^32
    hashes[DEPTH1 + (h >>> 28)] = hashes[DEPTH1 + (h >>> 28)]! + delta
    hashes[DEPTH2 + (h >>> 24)] = hashes[DEPTH2 + (h >>> 24)]! + delta
    leaf.hash = (leaf.hash + delta) >>> 0
  }
}
