import { describe, expect, it } from "@effect/vitest"
import { Effect, Runtime, TestClock } from "effect"
import { makeDeadlines } from "../../src/layers/deadlines.js"

/** Deadlines on the test's clock and runtime; `fired` records labels in firing order. */
const setup = Effect.gen(function*() {
  const clock = yield* Effect.clock
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  const defects: Array<unknown> = []
  const fired: Array<string> = []
  const deadlines = makeDeadlines(clock, runFork, (e) => defects.push(e))
  const add = (ms: number, label: string) => deadlines.add(ms, () => fired.push(label))
  return { deadlines, add, fired, defects }
})

describe("deadlines", () => {
  it.scoped("fires each timeout exactly when due, in order, across durations", () =>
    Effect.gen(function*() {
      const { add, fired, deadlines } = yield* setup
      add(100, "a100")
      add(50, "b50")
      yield* TestClock.adjust(10)
      add(100, "c110")
      add(40, "d50")
      yield* TestClock.adjust(39)
      expect(fired).toEqual([])
      yield* TestClock.adjust(1) // t = 50: two groups due at once (no order between groups)
      expect([...fired].sort()).toEqual(["b50", "d50"])
      yield* TestClock.adjust(49)
      expect(fired.length).toBe(2)
      yield* TestClock.adjust(1) // t = 100
      expect(fired.slice(2)).toEqual(["a100"])
      yield* TestClock.adjust(10)
      expect(fired.slice(2)).toEqual(["a100", "c110"])
      expect(deadlines.size()).toBe(0)
    }))

  it.scoped("a cancelled timeout never fires, and the ones behind it still do", () =>
    Effect.gen(function*() {
      const { add, fired, deadlines } = yield* setup
      const first = add(100, "first")
      yield* TestClock.adjust(1)
      add(100, "second")
      first.cancel()
      first.cancel() // idempotent
      expect(deadlines.size()).toBe(1)
      yield* TestClock.adjust(100)
      expect(fired).toEqual(["second"])
    }))

  it.scoped("starts again after its group ran empty", () =>
    Effect.gen(function*() {
      const { add, fired } = yield* setup
      add(20, "one")
      yield* TestClock.adjust(20)
      expect(fired).toEqual(["one"])
      add(20, "two")
      yield* TestClock.adjust(19)
      expect(fired).toEqual(["one"])
      yield* TestClock.adjust(1)
      expect(fired).toEqual(["one", "two"])
    }))

  it.scoped("a zero duration fires without the clock moving", () =>
    Effect.gen(function*() {
      const { add, fired } = yield* setup
      add(0, "now")
      yield* Effect.yieldNow()
      expect(fired).toEqual(["now"])
    }))

  it.scoped("a throwing callback is reported and does not stop the others", () =>
    Effect.gen(function*() {
      const { deadlines, add, fired, defects } = yield* setup
      deadlines.add(10, () => {
        throw new Error("boom")
      })
      add(10, "after")
      yield* TestClock.adjust(10)
      expect(fired).toEqual(["after"])
      expect(defects.map((e) => (e as Error).message)).toEqual(["boom"])
    }))

  it.scoped("thousands of cancelled timeouts over many durations: none fires, none is kept, a later one still fires", () =>
    Effect.gen(function*() {
      const { add, fired, deadlines } = yield* setup
      for (let i = 0; i < 5000; i++) {
        add(1000 + (i % 7), `t${i}`).cancel() // client-chosen durations: 7 groups
        if (i % 1000 === 0) yield* TestClock.adjust(1)
      }
      expect(deadlines.size()).toBe(0)
      yield* TestClock.adjust(2000)
      expect(fired).toEqual([])
      add(5, "live")
      yield* TestClock.adjust(5)
      expect(fired).toEqual(["live"])
    }))
})
