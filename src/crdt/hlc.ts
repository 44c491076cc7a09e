/**
 * Hybrid logical clock (protocol.md §4.1).
 */
import type { Timestamp } from "./types.js"

/** One fixed collation for node ids on every node, matching the client's `localeCompare`. */
const nodeIdCollator = new Intl.Collator("en")

/**
 * Total order: millis, then counter, then node id by `localeCompare` (ICU "en", so "a" < "B").
 * Where the collator calls two different ids equal (canonically equivalent or ignorable characters),
 * code-unit order breaks the tie so the order stays total; for the ids real clients and servers use
 * ([a-z0-9-]) that never happens.
 */
export function compareTimestamps(a: Timestamp, b: Timestamp): number {
  return compareTimestampTo(a, b.millis, b.counter, b.nodeId)
}

/** `compareTimestamps(a, b)` with `b` given as its fields (for stores that keep them flattened). */
export function compareTimestampTo(a: Timestamp, millis: number, counter: number, nodeId: string): number {
  if (a.millis !== millis) return a.millis < millis ? -1 : 1
  if (a.counter !== counter) return a.counter < counter ? -1 : 1
  const x = a.nodeId
  const y = nodeId
  if (x === y) return 0
  const c = nodeIdCollator.compare(x, y)
  if (c !== 0) return c < 0 ? -1 : 1
  return x < y ? -1 : 1
}

/** `"<millis>:<counter>:<nodeId>"`. */
export function timestampToString(t: Timestamp): string {
  return `${t.millis}:${t.counter}:${t.nodeId}`
}

const DECIMAL = /^-?\d+(?:\.\d+)?$/

/** Parses the string form; exactly three `:`-separated parts, the first two decimal numbers. */
export function parseTimestamp(s: string): Timestamp | undefined {
  const first = s.indexOf(":")
  if (first < 0) return undefined
  const second = s.indexOf(":", first + 1)
  if (second < 0 || s.indexOf(":", second + 1) >= 0) return undefined
  const millisText = s.slice(0, first)
  const counterText = s.slice(first + 1, second)
  if (!DECIMAL.test(millisText) || !DECIMAL.test(counterText)) return undefined
  const millis = Number(millisText)
  const counter = Number(counterText)
  if (!Number.isFinite(millis) || !Number.isFinite(counter)) return undefined
  return { millis, counter, nodeId: s.slice(second + 1) }
}

/**
 * The clock of §4.1.3. `clock` is injectable (the server passes Effect's Clock so TestClock drives it).
 */
export class HLC {
  private lastMillis = 0
  private lastCounter = 0

  constructor(
    readonly nodeId: string,
    private readonly clock: () => number = Date.now
  ) {}

  /** `t`: the physical time when the caller already read it (one clock read for a whole batch). */
  now(t: number = this.clock()): Timestamp {
    if (t > this.lastMillis) {
      this.lastMillis = t
      this.lastCounter = 0
    } else {
      this.lastCounter += 1
    }
    return { millis: this.lastMillis, counter: this.lastCounter, nodeId: this.nodeId }
  }

  /** Observes a remote timestamp so every later `now()` is greater than it. Non-finite input is ignored. */
  update(remote: Timestamp, t: number = this.clock()): void {
    const rm = remote.millis
    const rc = remote.counter
    if (typeof rm !== "number" || typeof rc !== "number" || !Number.isFinite(rm) || !Number.isFinite(rc)) return
    const m = Math.max(this.lastMillis, t, rm)
    if (m === this.lastMillis && m === rm) {
      this.lastCounter = Math.max(this.lastCounter, rc) + 1
    } else if (m === this.lastMillis) {
      this.lastCounter += 1
    } else if (m === rm) {
      this.lastCounter = rc + 1
    } else {
      this.lastCounter = 0
    }
    this.lastMillis = m
  }
}
