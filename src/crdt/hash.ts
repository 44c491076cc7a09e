/**
 * FNV-1a (32 bit) over UTF-16 code units, hash combination and partitioning (protocol.md §4.5, §4.8).
 * Deliberately not byte-wise FNV over UTF-8: the client hashes `charCodeAt(i)`.
 */

export const FNV_OFFSET_BASIS = 0x811c9dc5
const FNV_PRIME = 0x01000193

/** Continues an FNV-1a hash with the code units of `s`; lets callers hash concatenations without building them. */
export function fnv1aUpdate(hash: number, s: string): number {
  let h = hash
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, FNV_PRIME)
  }
  return h >>> 0
}

/** FNV-1a of `s` as an unsigned 32-bit integer. */
export function fnv1a(s: string): number {
  return fnv1aUpdate(FNV_OFFSET_BASIS, s)
}

/** Σ hashes mod 2^32 (order-independent). */
export function combineHashes(hashes: Iterable<number>): number {
  let sum = 0
  for (const h of hashes) sum = (sum + h) >>> 0
  return sum
}

/** Copy of `value` in which every plain object has its keys inserted in sorted order (recursively). */
function withSortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withSortedKeys)
  if (value === null || typeof value !== "object") return value
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return value // Date, typed arrays, …: JSON.stringify as-is
  const keys = Object.keys(value).sort()
  // Null prototype so an own "__proto__" key stays a plain property.
  const out: Record<string, unknown> = Object.create(null)
  for (const k of keys) out[k] = withSortedKeys((value as Record<string, unknown>)[k])
  return out
}

/**
 * FNV-1a of `JSON.stringify(o)` with the keys of every plain object sorted (recursively; arrays keep
 * their order). Used for query-cursor fingerprints only, which the server alone decodes.
 * Values JSON cannot represent (`undefined`, functions) hash as the string "undefined".
 */
export function hashObject(o: unknown): number {
  const json = JSON.stringify(withSortedKeys(o)) as string | undefined
  return fnv1a(json ?? "undefined")
}

export const PARTITION_COUNT = 271

/** Partition of a key: only the key is hashed, never the map name. */
export function partitionId(key: string): number {
  return fnv1a(key) % PARTITION_COUNT
}

/** Merkle path of a key: 8-char lowercase zero-padded hex of its FNV-1a hash. */
export function hashPath(key: string): string {
  return fnv1a(key).toString(16).padStart(8, "0")
}
