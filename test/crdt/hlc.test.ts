import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compareTimestamps, HLC, parseTimestamp, timestampToString } from "../../src/crdt/hlc.js"
import type { Timestamp } from "../../src/crdt/types.js"

const ts = (millis: number, counter: number, nodeId: string): Timestamp => ({ millis, counter, nodeId })

const arbTimestamp = fc.record({
  millis: fc.integer({ min: 0, max: 2 ** 45 }),
  counter: fc.integer({ min: 0, max: 5 }),
  nodeId: fc.constantFrom("a", "B", "b", "A", "n1", "n2", "node-x", "é", "e")
})

/** A controllable clock. */
const manualClock = (start: number) => {
  let t = start
  return { read: () => t, set: (v: number) => (t = v) }
}

describe("compareTimestamps", () => {
  it("orders by millis, then counter, then node id", () => {
    expect(compareTimestamps(ts(1, 9, "z"), ts(2, 0, "a"))).toBeLessThan(0)
    expect(compareTimestamps(ts(2, 1, "a"), ts(2, 0, "z"))).toBeGreaterThan(0)
    expect(compareTimestamps(ts(2, 1, "n1"), ts(2, 1, "n2"))).toBeLessThan(0)
    expect(compareTimestamps(ts(2, 1, "n1"), ts(2, 1, "n1"))).toBe(0)
  })

  it("compares node ids like localeCompare: \"a\" < \"B\" (byte order would say the opposite)", () => {
    expect(compareTimestamps(ts(1, 0, "a"), ts(1, 0, "B"))).toBeLessThan(0)
    expect(compareTimestamps(ts(1, 0, "B"), ts(1, 0, "a"))).toBeGreaterThan(0)
    expect(compareTimestamps(ts(1, 0, "a"), ts(1, 0, "A"))).toBe(Math.sign("a".localeCompare("A", "en")))
  })

  it("is a total order (antisymmetric, transitive, zero only for equal timestamps)", () => {
    fc.assert(
      fc.property(arbTimestamp, arbTimestamp, arbTimestamp, (a, b, c) => {
        expect(Math.sign(compareTimestamps(a, b))).toBe(-Math.sign(compareTimestamps(b, a)))
        const equal = a.millis === b.millis && a.counter === b.counter && a.nodeId === b.nodeId
        expect(compareTimestamps(a, b) === 0).toBe(equal)
        if (compareTimestamps(a, b) < 0 && compareTimestamps(b, c) < 0) {
          expect(compareTimestamps(a, c)).toBeLessThan(0)
        }
      })
    )
  })

  it("stays total for node ids the collator considers equal", () => {
    const composed = "\u00e9"
    const decomposed = "e\u0301"
    expect(compareTimestamps(ts(1, 0, composed), ts(1, 0, decomposed))).not.toBe(0)
    expect(Math.sign(compareTimestamps(ts(1, 0, composed), ts(1, 0, decomposed)))).toBe(
      -Math.sign(compareTimestamps(ts(1, 0, decomposed), ts(1, 0, composed)))
    )
  })
})

describe("string form", () => {
  it("formats and parses millis:counter:nodeId", () => {
    expect(timestampToString(ts(1700000000000, 3, "node-a"))).toBe("1700000000000:3:node-a")
    expect(parseTimestamp("1700000000000:3:node-a")).toEqual(ts(1700000000000, 3, "node-a"))
  })

  it("round-trips", () => {
    fc.assert(
      fc.property(arbTimestamp, (t) => {
        expect(parseTimestamp(timestampToString(t))).toEqual(t)
      })
    )
  })

  it("rejects anything but three parts with numeric millis and counter", () => {
    for (const bad of ["", "1:2", "1:2:n:x", "x:2:n", "1:y:n", ":2:n", "1::n", "1e3:2:n", " 1:2:n", "Infinity:0:n"]) {
      expect(parseTimestamp(bad)).toBeUndefined()
    }
    expect(parseTimestamp("1:2:")).toEqual(ts(1, 2, ""))
  })
})

describe("HLC", () => {
  it("now() uses the wall clock and a counter within the same millisecond", () => {
    const clock = manualClock(1000)
    const hlc = new HLC("srv", clock.read)
    expect(hlc.nodeId).toBe("srv")
    expect(hlc.now()).toEqual(ts(1000, 0, "srv"))
    expect(hlc.now()).toEqual(ts(1000, 1, "srv"))
    clock.set(1005)
    expect(hlc.now()).toEqual(ts(1005, 0, "srv"))
    clock.set(900) // wall clock went backwards: keep the logical time
    expect(hlc.now()).toEqual(ts(1005, 1, "srv"))
  })

  it("defaults to Date.now", () => {
    const before = Date.now()
    const t = new HLC("srv").now()
    expect(t.millis).toBeGreaterThanOrEqual(before)
    expect(t.millis).toBeLessThanOrEqual(Date.now())
  })

  it("update() follows §4.1.3 case by case", () => {
    const clock = manualClock(100)
    const hlc = new HLC("s", clock.read)
    hlc.update(ts(200, 7, "c")) // remote ahead: counter = remote + 1
    expect(hlc.now()).toEqual(ts(200, 9, "s"))
    hlc.update(ts(200, 20, "c")) // equal millis: max(local, remote) + 1
    expect(hlc.now()).toEqual(ts(200, 22, "s"))
    hlc.update(ts(150, 99, "c")) // local ahead: local counter + 1
    expect(hlc.now()).toEqual(ts(200, 24, "s"))
    clock.set(300)
    hlc.update(ts(250, 5, "c")) // wall clock ahead: counter 0
    expect(hlc.now()).toEqual(ts(300, 1, "s"))
  })

  it("update() ignores non-finite millis or counter", () => {
    const clock = manualClock(100)
    const hlc = new HLC("s", clock.read)
    hlc.update(ts(Number.POSITIVE_INFINITY, 0, "c"))
    hlc.update(ts(Number.NaN, 0, "c"))
    hlc.update(ts(500, Number.NaN, "c"))
    hlc.update({ millis: "500", counter: 0, nodeId: "c" } as unknown as Timestamp)
    expect(hlc.now()).toEqual(ts(100, 0, "s"))
  })

  it("now() is strictly monotonic and every now() after update(x) is greater than x", () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant("tick" as const), to: fc.integer({ min: 0, max: 2000 }) }),
      fc.record({ kind: fc.constant("now" as const) }),
      fc.record({ kind: fc.constant("update" as const), remote: arbTimestamp.map((t) => ({ ...t, millis: t.millis % 3000 })) })
    )
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        const clock = manualClock(1000)
        const hlc = new HLC("srv", clock.read)
        let floor: Timestamp | undefined // greatest timestamp seen or produced
        for (const s of steps) {
          if (s.kind === "tick") clock.set(s.to)
          else if (s.kind === "update") {
            hlc.update(s.remote)
            if (floor === undefined || compareTimestamps(s.remote, floor) > 0) floor = s.remote
          } else {
            const t = hlc.now()
            if (floor !== undefined) expect(compareTimestamps(t, floor)).toBeGreaterThan(0)
            floor = t
          }
        }
      })
    )
  })
})
