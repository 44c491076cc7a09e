/**
 * The LWW map's records and its Merkle tree (protocol.md §4.6), with keys and values off the JS heap.
 * A data grid holds millions of records; as JS objects each costs ~350 bytes and one more thing for
 * every garbage collection to trace. Here a record is a 64-byte row in one typed array (timestamps,
 * node ids, item hash, blob place: one cache line per write) plus one blob in a `ByteArena`: the key
 * (Latin-1, or UTF-16 when it needs to be) followed by the value: MessagePack for written values, or the
 * JSON text a row was loaded with (so a cold start never builds the value objects). Values are decoded
 * on read, the way production data grids keep a binary in-memory format. ~210 bytes per record in total
 * for 100-byte values; a write allocates nothing that outlives it.
 *
 * Lookup: an open-addressing table (linear probing, backward-shift deletion) over the rows, probed by
 * the key's `fnv1a` (which the Merkle tree needs anyway) and confirmed against the key bytes.
 *
 * Merkle read API (`rootHash`, `getBuckets`, `isLeaf`, `leafKeys`, `itemHash`, `size`) answers exactly as a
 * `MerkleTree` fed `lwwItemHash(key, timestamp)` for the same keys, including the order of bucket keys
 * (node creation order) and the emptied-node rule (nodes are never removed; an emptied node hashes to 0).
 * Each depth-3 leaf chains its rows in both directions (a removal unlinks in O(1)).
 *
 * Row order: rows are appended, and a row freed by `remove` is reused, so scans run in insertion order
 * until keys are removed (GC prune).
 */
import { ByteArena, blobFootprint, copyBytes, readString, stringEquals, stringWord, stringWordBytes, writeString } from "./byte-arena.js"
import { fnv1a } from "./hash.js"
import { compareTimestampTo } from "./hlc.js"
import { lwwItemHashOf, MERKLE_DEPTH } from "./merkle.js"
import { NodeIdTable } from "./node-ids.js"
import type { LWWRecord, Timestamp } from "./types.js"
import { decodeValueWord, type EncodedValue, encodeStoredValue, JSON_TEXT, wordBytes } from "./value-codec.js"

/** `keyLen` of a free row. */
const FREE = 0xffffffff
/** `valLen` of a tombstone (`value: null`); an encoded value is never empty. */
const TOMBSTONE = 0

/**
 * Row layout (64 bytes): f64 words [0] millis, [1] storedMillis; 32-bit words [4] counter, [5] storedCounter,
 * [6] node id index, [7] storage node id index, [8] item hash (int32), [9] fnv1a(key) (int32), [10] arena
 * chunk, [11] arena offset, [12] key string word (or FREE), [13] value word (value-codec.ts), [14] / [15]
 * next / previous row in the leaf (-1: none). Counters too big for 32 bits live in `bigCounters`.
 */
const ROW_WORDS = 16
const F_MILLIS = 0
const F_STORED_MILLIS = 1
const W_COUNTER = 4
const W_STORED_COUNTER = 5
const W_NODE = 6
const W_STORED_NODE = 7
const W_ITEM_HASH = 8
const W_KEY_HASH = 9
const W_CHUNK = 10
const W_OFFSET = 11
const W_KEY_LEN = 12
const W_VAL_LEN = 13
const W_NEXT_IN_LEAF = 14
const W_PREV_IN_LEAF = 15

/** Counter word meaning "see `bigCounters`". */
const BIG_COUNTER = 0xffffffff

/**
 * Arena bytes of a blob: rounded up to 8 for written (MessagePack) values, so a rewrite of about the same
 * size fits in place; exact for loaded JSON text, which a write replaces with MessagePack anyway.
 */
const footprintOf = (keyBytes: number, valWord: number): number =>
  valWord & JSON_TEXT ? keyBytes + wordBytes(valWord) : blobFootprint(keyBytes + valWord)

/** `write`'s value: the JSON text range set by `putJson`. */
const JSON_RANGE = 1

/** UTF-8 byte length of `s[start, end)` (a lone surrogate counts as U+FFFD: 3 bytes, as `Buffer.write` writes it). */
const utf8Length = (s: string, start: number, end: number): number => {
  let n = end - start
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) continue
    if (c < 0x800) n += 1
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2 // the pair: 2 code units, 4 bytes
      i++
    } else n += 2
  }
  return n
}

/** Writes `s[start, end)` as UTF-8 (`bytes` long) at `buf[at]`: a plain loop for ASCII, `Buffer.write` otherwise. */
const writeUtf8 = (buf: Buffer, at: number, s: string, start: number, end: number, bytes: number): void => {
  if (bytes === end - start) for (let i = start; i < end; i++) buf[at + i - start] = s.charCodeAt(i)
  else buf.write(s.slice(start, end), at, "utf8")
}

const HEX = "0123456789abcdef"
/** Inner nodes in `innerHash` / `innerSeq`: [0] root, [1..16] depth 1, [17..272] depth 2. */
const DEPTH1 = 1
const DEPTH2 = 17
const INNER_NODES = 1 + 16 + 256
const LEAVES = 4096

/** Hex digit value of a lowercase path character; -1 otherwise (no such node, as in `MerkleTree`). */
const hexValue = (c: number): number => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1)

/** Bucket keys in node-creation order (the insertion order `MerkleTree`'s child maps have). */
const bucketsInCreationOrder = (children: Array<{ char: string; seq: number; hash: number }>): Record<string, number> => {
  children.sort((a, b) => a.seq - b.seq)
  const out: Record<string, number> = {}
  for (const c of children) out[c.char] = c.hash
  return out
}

/** Table slot of hash `h` (Fibonacci hashing: fnv1a's low bits alone cluster). */
const home = (h: number, shift: number): number => Math.imul(h, 0x9e3779b1) >>> shift

export class LwwStore {
  /** Rows in use / rows ever handed out (`top`) / allocated. */
  private count = 0
  private top = 0
  private capacity = 0
  private readonly freeRows: number[] = []
  /**
   * The rows: 64 bytes each, one cache line, so a write touches one line instead of one per column.
   * Three views of one buffer; see the F_ / W_ layout constants.
   */
  private f64 = new Float64Array(0)
  private u32 = new Uint32Array(0)
  private i32 = new Int32Array(0)
  /** Counters that do not fit their 32-bit word, by row (record's: 2 * row, storage time's: 2 * row + 1). */
  private readonly bigCounters = new Map<number, number>()
  /** TTLs are rare: by row. */
  private readonly ttl = new Map<number, number>()
  private readonly nodeIds = new NodeIdTable()
  private readonly arena = new ByteArena((c) => this.evacuate(c))

  /** Row + 1 per slot, 0 = empty; power-of-two size, at most half full. */
  private table = new Int32Array(0)
  private shift = 32

  // Merkle tree, allocated with the first row (most maps of a server stay empty).
  private innerHash: Uint32Array | undefined
  private innerSeq: Uint32Array | undefined
  private leafHash: Uint32Array | undefined
  /** Creation rank (1-based) of each leaf; 0 = no such leaf. */
  private leafSeq: Uint32Array | undefined
  /** First row of each leaf's chain, -1 = none. */
  private leafHead: Int32Array | undefined
  private nextSeq = 1

  get size(): number {
    return this.count
  }

  get rootHash(): number {
    return this.innerHash === undefined ? 0 : this.innerHash[0]!
  }

  /** Bytes held for keys and values (arena chunks). */
  get arenaBytes(): number {
    return this.arena.reservedBytes
  }

  /** The row of `key` (`h` = `fnv1a(key)`), or -1. */
  find(key: string, h: number): number {
    const table = this.table
    if (table.length === 0) return -1
    const mask = table.length - 1
    for (let s = home(h, this.shift); ; s = (s + 1) & mask) {
      const e = table[s]!
      if (e === 0) return -1
      const row = e - 1
      if (this.i32[(row << 4) | W_KEY_HASH] === (h | 0) && this.keyIs(row, key)) return row
    }
  }

  /**
   * Stores `record` (stored at `storedAt`) for `key` (`h` = `fnv1a(key)`) in `row` (from `find`; -1 adds a
   * row). The caller has decided the record wins.
   */
  put(key: string, h: number, record: LWWRecord, storedAt: Timestamp, row: number): number {
    const ts = record.timestamp
    const encoded = record.value === null ? undefined : encodeStoredValue(record.value)
    return this.write(key, h, row, encoded === undefined ? TOMBSTONE : encoded.end - encoded.start, encoded, ts.millis, ts.counter, ts.nodeId,
      record.ttlMs, storedAt.millis, storedAt.counter, storedAt.nodeId)
  }

  /**
   * `put` of a row loaded from storage, fields flat, the value still JSON text: `text[start, end)`
   * (`start` < 0: a tombstone). The text may be a whole page of rows; only the range is copied.
   */
  putJson(
    key: string, h: number, row: number, text: string, start: number, end: number, millis: number, counter: number,
    nodeId: string, ttlMs: number | undefined, storedMillis: number, storedCounter: number, storedNodeId: string
  ): void {
    this.jsonText = text
    this.jsonStart = start
    this.jsonEnd = end
    const word = start < 0 ? TOMBSTONE : (utf8Length(text, start, end) | JSON_TEXT) >>> 0
    this.write(key, h, row, word, start < 0 ? undefined : JSON_RANGE, millis, counter, nodeId, ttlMs, storedMillis, storedCounter, storedNodeId)
    this.jsonText = ""
  }

  // The JSON text range `putJson` is writing (read by `write` when it is handed JSON_RANGE).
  private jsonText = ""
  private jsonStart = 0
  private jsonEnd = 0

  private write(
    key: string, h: number, row: number, valWord: number, value: EncodedValue | typeof JSON_RANGE | undefined,
    millis: number, counter: number, nodeId: string, ttlMs: number | undefined,
    storedMillis: number, storedCounter: number, storedNodeId: string
  ): number {
    const next = lwwItemHashOf(h, millis, counter, nodeId)
    let delta: number
    if (row < 0) {
      row = this.addRow(key, h, valWord)
      delta = next
      this.u32[(row << 4) | W_NODE] = this.nodeIds.acquire(nodeId)
      this.u32[(row << 4) | W_STORED_NODE] = this.nodeIds.acquire(storedNodeId)
    } else {
      delta = (next - (this.i32[(row << 4) | W_ITEM_HASH]! >>> 0)) >>> 0
      this.placeValue(row, valWord)
      this.u32[(row << 4) | W_NODE] = this.swapNode(this.u32[(row << 4) | W_NODE]!, nodeId)
      this.u32[(row << 4) | W_STORED_NODE] = this.swapNode(this.u32[(row << 4) | W_STORED_NODE]!, storedNodeId)
    }
    if (value !== undefined) {
      const buf = this.arena.chunks[this.u32[(row << 4) | W_CHUNK]!]!
      const at = this.u32[(row << 4) | W_OFFSET]! + this.keyBytes(row)
      if (value === JSON_RANGE) writeUtf8(buf, at, this.jsonText, this.jsonStart, this.jsonEnd, wordBytes(valWord))
      else copyBytes(value, value.start, buf, at, value.end - value.start)
    }
    this.f64[(row << 3) | F_MILLIS] = millis
    this.u32[(row << 4) | W_COUNTER] = this.packCounter(2 * row, counter)
    this.f64[(row << 3) | F_STORED_MILLIS] = storedMillis
    this.u32[(row << 4) | W_STORED_COUNTER] = this.packCounter(2 * row + 1, storedCounter)
    this.i32[(row << 4) | W_ITEM_HASH] = next | 0
    if (ttlMs !== undefined) this.ttl.set(row, ttlMs)
    else if (this.ttl.size > 0) this.ttl.delete(row)
    this.addAlongPath(h, delta)
    return row
  }

  /** Removes `key`; returns whether it was present. Nodes stay in place (an emptied node hashes to 0). */
  remove(key: string, h: number): boolean {
    const row = this.find(key, h)
    if (row < 0) return false
    this.unlinkFromLeaf(row, h)
    this.addAlongPath(h, -(this.i32[(row << 4) | W_ITEM_HASH]! >>> 0) >>> 0)
    this.deleteFromTable(row)
    this.nodeIds.release(this.u32[(row << 4) | W_NODE]!)
    this.nodeIds.release(this.u32[(row << 4) | W_STORED_NODE]!)
    this.ttl.delete(row)
    if (this.bigCounters.size > 0) {
      this.bigCounters.delete(2 * row)
      this.bigCounters.delete(2 * row + 1)
    }
    const chunk = this.u32[(row << 4) | W_CHUNK]!
    const size = this.footprint(row)
    // Free the row before its bytes: giving them back may evacuate the chunk, which moves live rows only.
    this.u32[(row << 4) | W_KEY_LEN] = FREE
    this.freeRows.push(row)
    this.count--
    this.arena.free(chunk, size)
    return true
  }

  // ---- rows -------------------------------------------------------------------------------------------

  /** Rows in use, ascending. */
  *rows(): Generator<number, void, undefined> {
    for (let row = 0; row < this.top; row++) if (this.u32[(row << 4) | W_KEY_LEN] !== FREE) yield row
  }

  keyAt(row: number): string {
    const len = this.u32[(row << 4) | W_KEY_LEN]!
    const buf = this.arena.chunks[this.u32[(row << 4) | W_CHUNK]!]!
    const at = this.u32[(row << 4) | W_OFFSET]!
    return readString(buf, at, len)
  }

  isTombstone(row: number): boolean {
    return this.u32[(row << 4) | W_VAL_LEN] === TOMBSTONE
  }

  /** The row's TTL, or undefined. */
  ttlAt(row: number): number | undefined {
    return this.ttl.size === 0 ? undefined : this.ttl.get(row)
  }

  /** The stored value, decoded (null for a tombstone). */
  valueAt(row: number): unknown {
    const word = this.u32[(row << 4) | W_VAL_LEN]!
    if (word === TOMBSTONE) return null
    const start = this.u32[(row << 4) | W_OFFSET]! + this.keyBytes(row)
    return decodeValueWord(this.arena.chunks[this.u32[(row << 4) | W_CHUNK]!]!, start, word)
  }

  /** The row's value word (byte length | JSON_TEXT; 0 = tombstone). */
  valueWordAt(row: number): number {
    return this.u32[(row << 4) | W_VAL_LEN]!
  }

  /** The buffer holding the row's encoded value (which starts at `valueStartAt`). */
  valueBufferAt(row: number): Buffer {
    return this.arena.chunks[this.u32[(row << 4) | W_CHUNK]!]!
  }

  valueStartAt(row: number): number {
    return this.u32[(row << 4) | W_OFFSET]! + this.keyBytes(row)
  }

  /** Whether the row holds a live value at `nowMs` (not a tombstone, not expired). */
  isVisibleAt(row: number, nowMs: number): boolean {
    if (this.u32[(row << 4) | W_VAL_LEN] === TOMBSTONE) return false
    const ttl = this.ttlAt(row)
    return ttl === undefined || !(this.f64[(row << 3) | F_MILLIS]! + ttl < nowMs)
  }

  /** `compareTimestamps(ts, <the row's record timestamp>)`. */
  compareTo(ts: Timestamp, row: number): number {
    return compareTimestampTo(ts, this.f64[(row << 3) | F_MILLIS]!, this.counterAt(row), this.nodeIds.at(this.u32[(row << 4) | W_NODE]!))
  }

  timestampAt(row: number): Timestamp {
    return { millis: this.f64[(row << 3) | F_MILLIS]!, counter: this.counterAt(row), nodeId: this.nodeIds.at(this.u32[(row << 4) | W_NODE]!) }
  }

  storedAtAt(row: number): Timestamp {
    return { millis: this.f64[(row << 3) | F_STORED_MILLIS]!, counter: this.storedCounterAt(row), nodeId: this.nodeIds.at(this.u32[(row << 4) | W_STORED_NODE]!) }
  }

  /** `compareTimestamps(<the row's storage time>, ts)`. */
  compareStoredAt(row: number, ts: Timestamp): number {
    return -compareTimestampTo(ts, this.f64[(row << 3) | F_STORED_MILLIS]!, this.storedCounterAt(row), this.nodeIds.at(this.u32[(row << 4) | W_STORED_NODE]!))
  }

  recordAt(row: number): LWWRecord {
    const value = this.valueAt(row)
    const timestamp = this.timestampAt(row)
    const ttlMs = this.ttlAt(row)
    return ttlMs === undefined ? { value, timestamp } : { value, timestamp, ttlMs }
  }

  // ---- Merkle read API --------------------------------------------------------------------------------

  /** Item hash of `key` (`lwwItemHash` of its record's timestamp), if present. */
  itemHash(key: string): number | undefined {
    const row = this.find(key, fnv1a(key))
    return row < 0 ? undefined : this.i32[(row << 4) | W_ITEM_HASH]! >>> 0
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
    if (c2 < 0 || seqs[DEPTH2 + c1 * 16 + c2] === 0) return {}
    const base = (c1 * 16 + c2) * 16
    for (let c = 0; c < 16; c++) {
      const seq = this.leafSeq![base + c]!
      if (seq !== 0) children.push({ char: HEX[c]!, seq, hash: this.leafHash![base + c]! })
    }
    return bucketsInCreationOrder(children)
  }

  /** True iff a depth-3 leaf exists at `path`. */
  isLeaf(path: string): boolean {
    return this.leafAt(path) >= 0
  }

  /** Keys held by the leaf at `path`; `[]` if there is no leaf there. Unordered. */
  leafKeys(path: string): string[] {
    const leaf = this.leafAt(path)
    const keys: string[] = []
    if (leaf < 0) return keys
    for (let row = this.leafHead![leaf]!; row >= 0; row = this.i32[(row << 4) | W_NEXT_IN_LEAF]!) keys.push(this.keyAt(row))
    return keys
  }

  // ---- internals --------------------------------------------------------------------------------------

  /** The word stored for `counter` (slot `big` in `bigCounters` when it does not fit). */
  private packCounter(big: number, counter: number): number {
    if (counter >= 0 && counter < BIG_COUNTER && Number.isInteger(counter)) {
      if (this.bigCounters.size > 0) this.bigCounters.delete(big)
      return counter
    }
    this.bigCounters.set(big, counter)
    return BIG_COUNTER
  }

  private counterAt(row: number): number {
    const c = this.u32[(row << 4) | W_COUNTER]!
    return c === BIG_COUNTER ? this.bigCounters.get(2 * row)! : c
  }

  private storedCounterAt(row: number): number {
    const c = this.u32[(row << 4) | W_STORED_COUNTER]!
    return c === BIG_COUNTER ? this.bigCounters.get(2 * row + 1)! : c
  }

  private keyBytes(row: number): number {
    return stringWordBytes(this.u32[(row << 4) | W_KEY_LEN]!)
  }

  private footprint(row: number): number {
    return footprintOf(this.keyBytes(row), this.u32[(row << 4) | W_VAL_LEN]!)
  }

  private keyIs(row: number, key: string): boolean {
    return stringEquals(this.arena.chunks[this.u32[(row << 4) | W_CHUNK]!]!, this.u32[(row << 4) | W_OFFSET]!, this.u32[(row << 4) | W_KEY_LEN]!, key)
  }

  private swapNode(held: number, id: string): number {
    if (this.nodeIds.at(held) === id) return held
    const next = this.nodeIds.acquire(id)
    this.nodeIds.release(held)
    return next
  }

  /** A new row for `key` with room for the value (`valWord`: bytes | JSON_TEXT), linked into its table slot and leaf. */
  private addRow(key: string, h: number, valWord: number): number {
    const row = this.freeRows.pop() ?? this.top++
    if (row >= this.capacity) this.grow()
    this.count++
    const keyWord = stringWord(key)
    const c = this.arena.alloc(footprintOf(stringWordBytes(keyWord), valWord))
    const at = this.arena.offset
    writeString(this.arena.chunks[c]!, at, key, keyWord)
    this.u32[(row << 4) | W_CHUNK] = c
    this.u32[(row << 4) | W_OFFSET] = at
    this.u32[(row << 4) | W_KEY_LEN] = keyWord
    this.u32[(row << 4) | W_VAL_LEN] = valWord
    this.i32[(row << 4) | W_KEY_HASH] = h
    if (2 * this.count > this.table.length) this.rehash(Math.max(16, this.table.length * 2))
    else this.insertIntoTable(row)
    this.linkIntoLeaf(row, h)
    return row
  }

  /** Makes room for the value (`valWord`: bytes | JSON_TEXT) after the row's key: in place when it fits. */
  private placeValue(row: number, valWord: number): void {
    const keyBytes = this.keyBytes(row)
    const old = this.footprint(row)
    const needed = footprintOf(keyBytes, valWord)
    const c = this.u32[(row << 4) | W_CHUNK]!
    if (needed <= old) {
      this.u32[(row << 4) | W_VAL_LEN] = valWord
      this.arena.free(c, old - needed) // may evacuate this chunk, moving this row: done after valLen is set
      return
    }
    this.relocate(row, needed, keyBytes)
    this.u32[(row << 4) | W_VAL_LEN] = valWord
    this.arena.free(c, old)
  }

  /** Gives `row` a new blob of `size` bytes holding the first `keep` bytes of its current one (not freed here). */
  private relocate(row: number, size: number, keep: number): void {
    const from = this.arena.chunks[this.u32[(row << 4) | W_CHUNK]!]!
    const fromOffset = this.u32[(row << 4) | W_OFFSET]!
    const nc = this.arena.alloc(size)
    const at = this.arena.offset
    copyBytes(from, fromOffset, this.arena.chunks[nc]!, at, keep)
    this.u32[(row << 4) | W_CHUNK] = nc
    this.u32[(row << 4) | W_OFFSET] = at
  }

  /** Moves every blob of `c` elsewhere (the arena asked: `c` is mostly free space). */
  private evacuate(c: number): void {
    for (let row = 0; row < this.top; row++) {
      if (this.u32[(row << 4) | W_CHUNK] !== c || this.u32[(row << 4) | W_KEY_LEN] === FREE) continue
      const size = this.footprint(row)
      this.relocate(row, size, size)
      this.arena.free(c, size)
      if (this.arena.chunks[c] === undefined) return // released: nothing left in it
    }
  }

  private grow(): void {
    const n = Math.max(16, this.capacity * 2)
    const u32 = new Uint32Array(n * ROW_WORDS)
    u32.set(this.u32)
    this.u32 = u32
    this.f64 = new Float64Array(u32.buffer)
    this.i32 = new Int32Array(u32.buffer)
    this.capacity = n
  }

  private rehash(size: number): void {
    this.table = new Int32Array(size)
    this.shift = 32 - Math.log2(size)
    for (let row = 0; row < this.top; row++) if (this.u32[(row << 4) | W_KEY_LEN] !== FREE) this.insertIntoTable(row)
  }

  private insertIntoTable(row: number): void {
    const table = this.table
    const mask = table.length - 1
    let s = home(this.i32[(row << 4) | W_KEY_HASH]!, this.shift)
    while (table[s] !== 0) s = (s + 1) & mask
    table[s] = row + 1
  }

  /** Backward-shift deletion: later entries of the probe run move up, so lookups never need tombstones. */
  private deleteFromTable(row: number): void {
    const table = this.table
    const mask = table.length - 1
    let s = home(this.i32[(row << 4) | W_KEY_HASH]!, this.shift)
    while (table[s] !== row + 1) s = (s + 1) & mask
    let hole = s
    for (let j = (hole + 1) & mask; table[j] !== 0; j = (j + 1) & mask) {
      const want = home(this.i32[((table[j]! - 1) << 4) | W_KEY_HASH], this.shift)
      // Move the entry at j into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? hole < want && want <= j : hole < want || want <= j
      if (!stays) {
        table[hole] = table[j]!
        hole = j
      }
    }
    table[hole] = 0
  }

  private leafAt(path: string): number {
    if (path.length !== MERKLE_DEPTH || this.leafSeq === undefined) return -1
    const c1 = hexValue(path.charCodeAt(0))
    const c2 = hexValue(path.charCodeAt(1))
    const c3 = hexValue(path.charCodeAt(2))
    if (c1 < 0 || c2 < 0 || c3 < 0) return -1
    const leaf = (c1 * 16 + c2) * 16 + c3
    return this.leafSeq[leaf] === 0 ? -1 : leaf
  }

  /** Links `row` into the leaf of `h`, creating the leaf and its ancestors (root to leaf, as `MerkleTree`). */
  private linkIntoLeaf(row: number, h: number): void {
    if (this.innerSeq === undefined) {
      this.innerHash = new Uint32Array(INNER_NODES)
      this.innerSeq = new Uint32Array(INNER_NODES)
      this.leafHash = new Uint32Array(LEAVES)
      this.leafSeq = new Uint32Array(LEAVES)
      this.leafHead = new Int32Array(LEAVES).fill(-1)
    }
    const leaf = h >>> 20
    if (this.leafSeq![leaf] === 0) {
      const seqs = this.innerSeq
      const n1 = DEPTH1 + (h >>> 28)
      if (seqs[n1] === 0) seqs[n1] = this.nextSeq++
      const n2 = DEPTH2 + (h >>> 24)
      if (seqs[n2] === 0) seqs[n2] = this.nextSeq++
      this.leafSeq![leaf] = this.nextSeq++
    }
    const next = this.leafHead![leaf]!
    this.i32[(row << 4) | W_NEXT_IN_LEAF] = next
    this.i32[(row << 4) | W_PREV_IN_LEAF] = -1
    if (next >= 0) this.i32[(next << 4) | W_PREV_IN_LEAF] = row
    this.leafHead![leaf] = row
  }

  private unlinkFromLeaf(row: number, h: number): void {
    const next = this.i32[(row << 4) | W_NEXT_IN_LEAF]!
    const prev = this.i32[(row << 4) | W_PREV_IN_LEAF]!
    if (prev < 0) this.leafHead![h >>> 20] = next
    else this.i32[(prev << 4) | W_NEXT_IN_LEAF] = next
    if (next >= 0) this.i32[(next << 4) | W_PREV_IN_LEAF] = prev
  }

  private addAlongPath(h: number, delta: number): void {
    if (delta === 0) return
    const hashes = this.innerHash!
    hashes[0] = hashes[0]! + delta // Uint32Array stores mod 2^32
    hashes[DEPTH1 + (h >>> 28)] = hashes[DEPTH1 + (h >>> 28)]! + delta
    hashes[DEPTH2 + (h >>> 24)] = hashes[DEPTH2 + (h >>> 24)]! + delta
    this.leafHash![h >>> 20] = this.leafHash![h >>> 20]! + delta
  }
}
