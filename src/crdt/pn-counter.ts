/**
 * PN counter state (protocol.md §4.4, wire shapes §3.8): grow-only positive and negative maps,
 * merged by per-node max.
 */

export interface PNCounterState {
  readonly p: Readonly<Record<string, number>>
  readonly n: Readonly<Record<string, number>>
}

export interface PNCounterWire {
  readonly p: Readonly<Record<string, number>>
  readonly n: Readonly<Record<string, number>>
  readonly positive: Readonly<Record<string, number>>
  readonly negative: Readonly<Record<string, number>>
}

export const emptyCounterState: PNCounterState = Object.freeze({ p: Object.freeze({}), n: Object.freeze({}) })

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** Entry-wise max of `source` into `target`; entries that are not finite numbers ≥ 0 are skipped. */
function maxInto(target: Record<string, number>, source: Readonly<Record<string, unknown>>): void {
  for (const nodeId of Object.keys(source)) {
    const v = source[nodeId]
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) continue
    if (nodeId === "__proto__") continue // cannot be an own property of a plain object
    // hasOwn: node ids such as "constructor" must not see inherited properties
    if (!Object.hasOwn(target, nodeId) || v > target[nodeId]!) target[nodeId] = v
  }
}

/**
 * Reads a wire state. Accepts `{p, n}`, `{positive, negative}` or both (p ⊔ positive, n ⊔ negative,
 * entry-wise max; absent or null = empty). Decision: entries that are not finite numbers ≥ 0 are
 * dropped (the maps are grow-only counts, so a negative or NaN entry can only be garbage); a state that
 * is not an object, or a field that is present but not an object, makes the whole state invalid
 * (`undefined`) so the caller can reject it.
 */
export function normalizeCounterState(wire: unknown): PNCounterState | undefined {
  if (!isPlainObject(wire)) return undefined
  const p: Record<string, number> = {}
  const n: Record<string, number> = {}
  for (const [field, target] of [
    ["p", p],
    ["positive", p],
    ["n", n],
    ["negative", n]
  ] as const) {
    const value = wire[field]
    if (value === undefined || value === null) continue
    if (!isPlainObject(value)) return undefined
    maxInto(target, value)
  }
  return { p, n }
}

/** Per-node max of both maps; pure (a new state). */
export function mergeCounter(a: PNCounterState, b: PNCounterState): PNCounterState {
  const p: Record<string, number> = { ...a.p }
  const n: Record<string, number> = { ...a.n }
  maxInto(p, b.p)
  maxInto(n, b.n)
  return { p, n }
}

/** Σp − Σn. */
export function counterValue(s: PNCounterState): number {
  let total = 0
  for (const v of Object.values(s.p)) total += v
  for (const v of Object.values(s.n)) total -= v
  return total
}

/** True iff both states hold the same entries (e.g. to tell whether a merge changed anything). */
export function counterStatesEqual(a: PNCounterState, b: PNCounterState): boolean {
  return sameEntries(a.p, b.p) && sameEntries(a.n, b.n)
}

function sameEntries(x: Readonly<Record<string, number>>, y: Readonly<Record<string, number>>): boolean {
  const keys = Object.keys(x)
  if (keys.length !== Object.keys(y).length) return false
  for (const k of keys) if (!Object.hasOwn(y, k) || x[k] !== y[k]) return false
  return true
}

/** Wire form with all four keys: the client reads `positive`/`negative`, the schema says `p`/`n`. */
export function counterToWire(s: PNCounterState): PNCounterWire {
  return { p: s.p, n: s.n, positive: s.p, negative: s.n }
}
