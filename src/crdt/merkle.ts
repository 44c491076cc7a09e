/**
 * Merkle prefix trie over key hashes (protocol.md §4.6): depth 3, fan-out 16, maintained incrementally.
 */
import { FNV_OFFSET_BASIS, fnv1a, fnv1aUpdate } from "./hash.js"
import type { ORMapRecord, Timestamp } from "./types.js"

export const MERKLE_DEPTH = 3

const HEX = "0123456789abcdef"

/** A trie node; `entries` is set on depth-3 leaves, `children` on inner nodes. */
class MerkleNode {
  hash = 0
  readonly children: Map<string, MerkleNode> | undefined
  readonly entries: Map<string, number> | undefined
  constructor(leaf: boolean) {
    this.children = leaf ? undefined : new Map()
    this.entries = leaf ? new Map() : undefined
  }
}

function childOf(node: MerkleNode, char: string, leaf: boolean): MerkleNode {
  const children = node.children!
  let child = children.get(char)
  if (child === undefined) {
    child = new MerkleNode(leaf)
    children.set(char, child)
  }
  return child
}

export class MerkleTree {
  private readonly root = new MerkleNode(false)
  private count = 0

  get rootHash(): number {
    return this.root.hash
  }

  /** Number of keys in the tree. */
  get size(): number {
    return this.count
  }

  /** Inserts or replaces the item hash of `key`; O(depth): the change is added along the path. */
  update(key: string, itemHash: number): void {
    const h = fnv1a(key)
    const n1 = childOf(this.root, HEX[h >>> 28]!, false)
    const n2 = childOf(n1, HEX[(h >>> 24) & 15]!, false)
    const leaf = childOf(n2, HEX[(h >>> 20) & 15]!, true)
    const entries = leaf.entries!
    const next = itemHash >>> 0
    const old = entries.get(key)
    if (old === next) return
    if (old === undefined) this.count++
    entries.set(key, next)
    this.addAlongPath(n1, n2, leaf, (next - (old ?? 0)) >>> 0)
  }

  /** Removes `key`; nodes stay in place (an emptied node hashes to 0). */
  remove(key: string): void {
    const h = fnv1a(key)
    const n1 = this.root.children!.get(HEX[h >>> 28]!)
    const n2 = n1?.children!.get(HEX[(h >>> 24) & 15]!)
    const leaf = n2?.children!.get(HEX[(h >>> 20) & 15]!)
    if (leaf === undefined) return
    const entries = leaf.entries!
    const old = entries.get(key)
    if (old === undefined) return
    entries.delete(key)
    this.count--
    this.addAlongPath(n1!, n2!, leaf, -old >>> 0)
  }

  /** Item hash stored for `key`, if any. */
  itemHash(key: string): number | undefined {
    const h = fnv1a(key)
    return this.root.children!.get(HEX[h >>> 28]!)
      ?.children!.get(HEX[(h >>> 24) & 15]!)
      ?.children!.get(HEX[(h >>> 20) & 15]!)
      ?.entries!.get(key)
  }

  /** `{ childChar: childHash }` of the inner node at `path`; `{}` for a missing node or a leaf. */
  getBuckets(path: string): Record<string, number> {
    const node = this.nodeAt(path)
    const out: Record<string, number> = {}
    if (node?.children === undefined) return out
    for (const [char, child] of node.children) out[char] = child.hash
    return out
  }

  /** True iff a node exists at `path` and it is a depth-3 leaf. */
  isLeaf(path: string): boolean {
    return this.nodeAt(path)?.entries !== undefined
  }

  /** Keys held by the leaf at `path`; `[]` if there is no leaf there. */
  leafKeys(path: string): ReadonlyArray<string> {
    const entries = this.nodeAt(path)?.entries
    return entries === undefined ? [] : Array.from(entries.keys())
  }

  private nodeAt(path: string): MerkleNode | undefined {
    if (path.length > MERKLE_DEPTH) return undefined
    let node: MerkleNode | undefined = this.root
    for (let i = 0; i < path.length && node !== undefined; i++) {
      node = node.children?.get(path[i]!)
    }
    return node
  }

  private addAlongPath(n1: MerkleNode, n2: MerkleNode, leaf: MerkleNode, delta: number): void {
    if (delta === 0) return
    this.root.hash = (this.root.hash + delta) >>> 0
    n1.hash = (n1.hash + delta) >>> 0
    n2.hash = (n2.hash + delta) >>> 0
    leaf.hash = (leaf.hash + delta) >>> 0
  }
}

/** LWW item hash: FNV-1a of `"<key>:<millis>:<counter>:<nodeId>"` (value and ttl are not hashed). */
export function lwwItemHash(key: string, ts: Timestamp): number {
  return lwwItemHashOf(fnv1a(key), ts.millis, ts.counter, ts.nodeId)
}

/**
 * `lwwItemHash(key, ts)` given `fnv1a(key)` (the FNV state after the key, which is also the key's Merkle
 * path) and the timestamp's fields, hashed piecewise without building the string: the LWW store recomputes
 * item hashes on every replace.
 */
export function lwwItemHashOf(keyHash: number, millis: number, counter: number, nodeId: string): number {
  let h = fnv1aNumber(fnv1aCodeUnit(keyHash, COLON), millis)
  h = fnv1aNumber(fnv1aCodeUnit(h, COLON), counter)
  return fnv1aUpdate(fnv1aCodeUnit(h, COLON), nodeId)
}

const COLON = 58
const FNV_PRIME = 0x01000193
/** Decimal digits, least significant first (reused: hashing is synchronous). */
const digitScratch = new Uint8Array(16)

function fnv1aCodeUnit(hash: number, code: number): number {
  return Math.imul(hash ^ code, FNV_PRIME) >>> 0
}

/**
 * Continues an FNV-1a hash with `String(n)`. Non-negative safe integers are hashed digit by digit in
 * two int32 halves (`%` on a double such as a millisecond time is far slower than on an int32), which
 * is what keeps this cheaper than formatting the number.
 */
function fnv1aNumber(hash: number, n: number): number {
  if (n === lastLong) return fnv1aDigitsOf(hash, lastLongDigits, lastLongLength)
  if (!(Number.isSafeInteger(n) && n >= 0)) return fnv1aUpdate(hash, String(n))
  if (n < 1e8) return fnv1aDigits(hash, n, 1)
  rememberLong(n)
  return fnv1aDigitsOf(hash, lastLongDigits, lastLongLength)
}

// The last number of 9+ digits hashed, as digits (most significant first): timestamps in a batch share
// their millis, and splitting a double into digits is the costly part.
let lastLong = Number.NaN // never equal to anything until set
let lastLongLength = 0
const lastLongDigits = new Uint8Array(16)

function rememberLong(n: number): void {
  let high = Math.floor(n / 1e8)
  let low = n - high * 1e8 // exact: both terms are safe integers
  if (low < 0) {
    high -= 1
    low += 1e8
  } else if (low >= 1e8) {
    high += 1
    low -= 1e8
  }
  const len = digitsInto(high, 1, digitsInto(low, 8, 0))
  for (let i = 0; i < len; i++) lastLongDigits[i] = digitScratch[len - 1 - i]!
  lastLongLength = len
  lastLong = n
}

function fnv1aDigitsOf(hash: number, digits: Uint8Array, length: number): number {
  let h = hash
  for (let i = 0; i < length; i++) h = Math.imul(h ^ (48 + digits[i]!), FNV_PRIME)
  return h >>> 0
}

/**
 * Appends the decimal digits of `v` (0 <= v < 1e8), least significant first and zero-padded to
 * `minDigits`, to `digitScratch` from `len`; returns the new length.
 */
function digitsInto(v: number, minDigits: number, len: number): number {
  const start = len
  let rest = v | 0
  do {
    const quotient = (rest / 10) | 0
    digitScratch[len++] = rest - quotient * 10
    rest = quotient
  } while (rest > 0)
  while (len - start < minDigits) digitScratch[len++] = 0
  return len
}

/** Continues an FNV-1a hash with the decimal digits of `v` (0 <= v < 1e8), zero-padded to `minDigits`. */
function fnv1aDigits(hash: number, v: number, minDigits: number): number {
  let len = digitsInto(v, minDigits, 0)
  let h = hash
  while (len > 0) h = Math.imul(h ^ (48 + digitScratch[--len]!), FNV_PRIME)
  return h >>> 0
}

/**
 * Value text of an OR record part. Objects and arrays use `JSON.stringify(value, sortedTopLevelKeys)`:
 * the replacer array is a property allow-list at every nesting level — a client quirk that must be
 * reproduced, not fixed, or hashes diverge.
 */
export function orValueString(value: unknown): string {
  if (value === null) return "null"
  if (value === undefined) return "undefined"
  if (typeof value === "object") {
    try {
      const json = JSON.stringify(value, Object.keys(value).sort()) as string | undefined
      return json ?? String(value)
    } catch {
      return String(value) // e.g. a BigInt inside: JSON cannot encode it; hash something stable instead of throwing
    }
  }
  return String(value)
}

/** `"<tag>:<V>:<millis>:<counter>:<nodeId>"` plus `":ttl=<ttlMs>"` when ttlMs is defined. */
export function orRecordPart(record: ORMapRecord): string {
  const ts = record.timestamp
  const base = `${record.tag}:${orValueString(record.value)}:${ts.millis}:${ts.counter}:${ts.nodeId}`
  return record.ttlMs !== undefined ? `${base}:ttl=${record.ttlMs}` : base
}

/** Code-unit order (JavaScript's default sort), used for OR tags. */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** FNV state after `"key:<key>"`, the first part of an OR entry hash. */
export function orEntryHashSeed(key: string): number {
  return fnv1aUpdate(fnv1aUpdate(FNV_OFFSET_BASIS, "key:"), key)
}

/** Continues an OR entry hash with `"|" + part`; parts must be fed in tag order. */
export function orEntryHashStep(hash: number, part: string): number {
  return fnv1aUpdate(fnv1aUpdate(hash, "|"), part)
}

/**
 * OR entry hash of a key over its (non-tombstoned) records, §4.6: FNV-1a of
 * `"key:<key>|" + parts sorted by tag, joined by "|"`, computed without building the joined string.
 */
export function orEntryHash(key: string, records: Iterable<ORMapRecord>): number {
  const sorted = Array.from(records).sort((a, b) => compareCodeUnits(a.tag, b.tag))
  let h = orEntryHashSeed(key)
  for (const r of sorted) h = orEntryHashStep(h, orRecordPart(r))
  return h
}
