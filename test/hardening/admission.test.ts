import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import * as fc from "fast-check"
import { ConnectionAdmission, DecodeBudget, InFlightLimiter, LogThrottle } from "../../src/layers/Admission.js"

describe("InFlightLimiter", () => {
  it.effect("waits in FIFO order, hands released permits to the oldest waiter, and times out on the Effect clock", () =>
    Effect.gen(function* () {
      const limiter = new InFlightLimiter(1)
      expect(limiter.tryAcquire()).toBe(true)
      const order: string[] = []
      const first = yield* limiter.acquire(5_000).pipe(Effect.tap((ok) => Effect.sync(() => order.push(`first:${ok}`))), Effect.fork)
      const second = yield* limiter.acquire(5_000).pipe(Effect.tap((ok) => Effect.sync(() => order.push(`second:${ok}`))), Effect.fork)
      yield* TestClock.adjust(1)
      expect(limiter.waiting).toBe(2)
      expect(limiter.tryAcquire()).toBe(false) // new arrivals never overtake waiters
      limiter.release()
      expect(yield* Fiber.join(first)).toBe(true)
      expect(limiter.size).toBe(1)
      yield* TestClock.adjust(5_000)
      expect(yield* Fiber.join(second)).toBe(false)
      expect(order).toEqual(["first:true", "second:false"])
      expect(limiter.waiting).toBe(0)
      limiter.release()
      expect(limiter.size).toBe(0)
    }))

  it.effect("an interrupted waiter leaves no waiter and leaks no permit", () =>
    Effect.gen(function* () {
      const limiter = new InFlightLimiter(1)
      limiter.tryAcquire()
      const waiter = yield* Effect.fork(limiter.acquire(5_000))
      yield* TestClock.adjust(1)
      yield* Fiber.interrupt(waiter)
      expect(limiter.waiting).toBe(0)
      limiter.release()
      expect(limiter.size).toBe(0)
      expect(limiter.tryAcquire()).toBe(true)
    }))

  it("never exceeds its limit and returns to zero (random acquire / release sequences)", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.array(fc.boolean(), { maxLength: 200 }), (limit, steps) => {
      const limiter = new InFlightLimiter(limit)
      let held = 0
      for (const acquire of steps) {
        if (acquire) {
          if (limiter.tryAcquire()) held++
        } else if (held > 0) {
          limiter.release()
          held--
        }
        if (limiter.size > limit || limiter.size !== held) return false
      }
      while (held-- > 0) limiter.release()
      return limiter.size === 0
    }))
  })
})

describe("ConnectionAdmission", () => {
  it("limits admissions per window and pending connections; refusals do not consume the window", () => {
    const admission = new ConnectionAdmission(3, 1_000, 2)
    expect(admission.admit(0)).toBeUndefined()
    expect(admission.admit(1)).toBeUndefined()
    expect(admission.admit(2)).toBe("pending")
    admission.settle()
    expect(admission.admit(3)).toBeUndefined()
    admission.settle()
    expect(admission.admit(4)).toBe("rate") // third admission of the window already used
    expect(admission.admit(1_000)).toBeUndefined() // next window
    expect(admission.pending).toBe(2)
  })
})

describe("DecodeBudget", () => {
  it("closes only after strikeLimit overruns within the window", () => {
    const budget = new DecodeBudget(10, 3, 1_000)
    expect(budget.record(5, 0)).toBe(false) // within budget: no strike
    expect(budget.record(20, 0)).toBe(false)
    expect(budget.record(20, 100)).toBe(false)
    expect(budget.record(20, 2_000)).toBe(false) // window expired: counting restarts
    expect(budget.record(20, 2_100)).toBe(false)
    expect(budget.record(20, 2_200)).toBe(true)
  })
})

describe("LogThrottle", () => {
  it("allows at most `limit` lines per window per key and reports how many were suppressed", () => {
    const t = new LogThrottle(5, 10_000)
    const allowed = Array.from({ length: 12 }, (_, i) => t.allow("ip|kind", 1000 + i))
    expect(allowed.slice(0, 5)).toEqual([0, 0, 0, 0, 0])
    expect(allowed.slice(5).every((a) => a === undefined)).toBe(true)
    expect(t.allow("other|kind", 1000)).toBe(0) // keys are independent
    expect(t.allow("ip|kind", 11_000)).toBe(7) // next window: the 7 suppressed lines are reported
    expect(t.allow("ip|kind", 11_001)).toBe(0)
  })
})
