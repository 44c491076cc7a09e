import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Option, TestClock } from "effect"
import { effectiveTtl, LOCK_FENCE_META_KEY, Locks, LocksConfig, LockTable } from "../../src/layers/Locks.js"
import { buildCoordination, connect, disconnect, durableMemoryStorage, settle } from "./support.js"

const granted = (requestId: string, name: string) => (m: { type: string; payload?: any }) =>
  m.type === "LOCK_GRANTED" && m.payload.requestId === requestId && m.payload.name === name

describe("Locks (TestClock)", () => {
  it.scoped("grants a free lock, queues contenders FIFO and hands over on release with a higher token", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination()
      const locks = Context.get(ctx, Locks)
      const [a, b, c] = connect(ctx, "a", "b", "c")
      yield* locks.request(a!.connection, { requestId: "ra", name: "L" })
      yield* locks.request(b!.connection, { requestId: "rb", name: "L" })
      yield* locks.request(c!.connection, { requestId: "rc", name: "L" })
      const ga = a!.ofType("LOCK_GRANTED")
      expect(ga).toHaveLength(1)
      expect(ga[0]!.payload).toEqual({ requestId: "ra", name: "L", fencingToken: expect.any(Number) })
      expect(b!.sent).toEqual([])
      expect(c!.sent).toEqual([])

      // A wrong token fails and changes nothing.
      yield* locks.release(a!.connection, { requestId: "x1", name: "L", fencingToken: ga[0]!.payload.fencingToken + 1 })
      expect(a!.ofType("LOCK_RELEASED").at(-1)!.payload).toEqual({ requestId: "x1", name: "L", success: false })
      // A non-owner cannot release; without requestId the reply omits it.
      yield* locks.release(b!.connection, { name: "L", fencingToken: ga[0]!.payload.fencingToken })
      expect(b!.ofType("LOCK_RELEASED")).toEqual([{ type: "LOCK_RELEASED", payload: { name: "L", success: false } }])

      yield* locks.release(a!.connection, { requestId: "x2", name: "L", fencingToken: ga[0]!.payload.fencingToken })
      expect(a!.ofType("LOCK_RELEASED").at(-1)!.payload).toEqual({ requestId: "x2", name: "L", success: true })
      const gb = b!.sent.filter(granted("rb", "L"))
      expect(gb).toHaveLength(1)
      expect(gb[0]!.payload.fencingToken).toBeGreaterThan(ga[0]!.payload.fencingToken)
      expect(c!.sent.filter(granted("rc", "L"))).toHaveLength(0)

      yield* locks.release(b!.connection, { requestId: "y", name: "L", fencingToken: gb[0]!.payload.fencingToken })
      const gc = c!.sent.filter(granted("rc", "L"))
      expect(gc).toHaveLength(1)
      expect(gc[0]!.payload.fencingToken).toBeGreaterThan(gb[0]!.payload.fencingToken)
    }))

  it.scoped("a re-request by the owner extends the lease and keeps the token", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination()
      const locks = Context.get(ctx, Locks)
      const [a] = connect(ctx, "a")
      yield* locks.request(a!.connection, { requestId: "r1", name: "L", ttl: 5000 })
      yield* TestClock.adjust(3000)
      yield* locks.request(a!.connection, { requestId: "r2", name: "L", ttl: 5000 })
      const [g1, g2] = a!.ofType("LOCK_GRANTED")
      expect(g2!.payload).toEqual({ requestId: "r2", name: "L", fencingToken: g1!.payload.fencingToken })
      expect(locks.inspect("L")!.owner!.expiresAt).toBe(8000)
      // A shorter re-request never shortens the lease.
      yield* locks.request(a!.connection, { requestId: "r3", name: "L", ttl: 1000 })
      expect(locks.inspect("L")!.owner!.expiresAt).toBe(8000)
    }))

  it.scoped("lease expiry hands the lock to the next waiter with a higher fencing token", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination()
      const locks = Context.get(ctx, Locks)
      const [a, b] = connect(ctx, "a", "b")
      yield* locks.request(a!.connection, { requestId: "ra", name: "L", ttl: 5000 })
      yield* locks.request(b!.connection, { requestId: "rb", name: "L", ttl: 5000 })
      const tokenA = a!.ofType("LOCK_GRANTED")[0]!.payload.fencingToken
      yield* TestClock.adjust(4000)
      expect(b!.sent).toEqual([])
      yield* TestClock.adjust(1000)
      yield* settle
      const gb = b!.ofType("LOCK_GRANTED")
      expect(gb).toHaveLength(1)
      expect(gb[0]!.payload.requestId).toBe("rb")
      expect(gb[0]!.payload.fencingToken).toBeGreaterThan(tokenA)
      // The expired owner can no longer release.
      yield* locks.release(a!.connection, { requestId: "late", name: "L", fencingToken: tokenA })
      expect(a!.ofType("LOCK_RELEASED")[0]!.payload.success).toBe(false)
      expect(locks.inspect("L")!.owner!.connectionId).toBe("b")
    }))

  it.scoped("an expired lease with waiters goes to the head of the queue, not to a newcomer (before the sweep)", () =>
    Effect.gen(function* () {
      // A sweep far in the future: only the lazy check on request can hand the lock over.
      const ctx = yield* buildCoordination({ locks: { sweepIntervalMs: 1_000_000 } })
      const locks = Context.get(ctx, Locks)
      const [a, b, c] = connect(ctx, "a", "b", "c")
      yield* locks.request(a!.connection, { requestId: "ra", name: "L", ttl: 1000 })
      yield* locks.request(b!.connection, { requestId: "rb", name: "L" })
      yield* TestClock.adjust(1500)
      yield* locks.request(c!.connection, { requestId: "rc", name: "L" })
      expect(b!.ofType("LOCK_GRANTED")).toHaveLength(1)
      expect(c!.ofType("LOCK_GRANTED")).toHaveLength(0)
      expect(locks.inspect("L")!.queue.map((w) => w.requestId)).toEqual(["rc"])
    }))

  it.scoped("an expired lease with nobody waiting goes to the newcomer", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination({ locks: { sweepIntervalMs: 1_000_000 } })
      const locks = Context.get(ctx, Locks)
      const [a, b] = connect(ctx, "a", "b")
      yield* locks.request(a!.connection, { requestId: "ra", name: "L", ttl: 1000 })
      yield* TestClock.adjust(1000)
      yield* locks.request(b!.connection, { requestId: "rb", name: "L" })
      expect(b!.ofType("LOCK_GRANTED")).toHaveLength(1)
    }))

  it.scoped("a queued request older than the wait limit is dropped without a reply", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination()
      const locks = Context.get(ctx, Locks)
      const [a, b, c] = connect(ctx, "a", "b", "c")
      yield* locks.request(a!.connection, { requestId: "ra", name: "L", ttl: 120_000 })
      yield* locks.request(b!.connection, { requestId: "rb", name: "L" })
      yield* TestClock.adjust(29_000)
      yield* settle
      expect(locks.inspect("L")!.queue.map((w) => w.requestId)).toEqual(["rb"])
      yield* TestClock.adjust(1_000)
      yield* settle
      expect(locks.inspect("L")!.queue).toEqual([])
      // A later waiter is served; the dropped one never hears anything.
      yield* locks.request(c!.connection, { requestId: "rc", name: "L" })
      yield* locks.release(a!.connection, { name: "L", fencingToken: a!.ofType("LOCK_GRANTED")[0]!.payload.fencingToken })
      expect(c!.ofType("LOCK_GRANTED")).toHaveLength(1)
      expect(b!.sent).toEqual([])
    }))

  it.scoped("a configured wait limit applies", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination({ locks: { waitTimeoutMs: 2000 } })
      const locks = Context.get(ctx, Locks)
      const [a, b] = connect(ctx, "a", "b")
      yield* locks.request(a!.connection, { requestId: "ra", name: "L", ttl: 60_000 })
      yield* locks.request(b!.connection, { requestId: "rb", name: "L" })
      yield* TestClock.adjust(2000)
      yield* settle
      expect(locks.inspect("L")!.queue).toEqual([])
    }))

  it.scoped("disconnect releases the connection's locks and drops its queued requests", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination()
      const locks = Context.get(ctx, Locks)
      const [a, b, c] = connect(ctx, "a", "b", "c")
      yield* locks.request(a!.connection, { requestId: "a1", name: "L1" })
      yield* locks.request(a!.connection, { requestId: "a2", name: "L2" })
      yield* locks.request(b!.connection, { requestId: "b1", name: "L1" })
      yield* locks.request(c!.connection, { requestId: "c1", name: "L1" })
      yield* locks.request(b!.connection, { requestId: "b2", name: "L2" })
      yield* locks.request(b!.connection, { requestId: "b3", name: "L3" })
      yield* locks.request(c!.connection, { requestId: "c3", name: "L3" })

      // b leaves: its lock L3 goes to c, its queue entries on L1 and L2 vanish.
      yield* disconnect(ctx, b!)
      expect(c!.sent.filter(granted("c3", "L3"))).toHaveLength(1)
      expect(locks.inspect("L1")!.queue.map((w) => w.requestId)).toEqual(["c1"])
      expect(locks.inspect("L2")!.queue).toEqual([])

      // a leaves: L1 goes to c, L2 is free and forgotten.
      yield* disconnect(ctx, a!)
      expect(c!.sent.filter(granted("c1", "L1"))).toHaveLength(1)
      expect(locks.inspect("L2")).toBeUndefined()
      expect(locks.inspect("L1")!.owner!.connectionId).toBe("c")

      yield* disconnect(ctx, c!)
      expect(locks.inspect("L1")).toBeUndefined()
      expect(locks.inspect("L3")).toBeUndefined()
    }))

  it.scoped("a request from a connection whose cleanup already ran takes nothing", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination()
      const locks = Context.get(ctx, Locks)
      const [a] = connect(ctx, "a")
      yield* disconnect(ctx, a!)
      yield* locks.request(a!.connection, { requestId: "ra", name: "L" })
      expect(locks.inspect("L")).toBeUndefined()
    }))

  it.scoped("lease TTL: default 10 000 (absent or 0), clamped to [1000, 300000]", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination()
      const locks = Context.get(ctx, Locks)
      const [a, b] = connect(ctx, "a", "b")
      const cases: ReadonlyArray<readonly [number | undefined, number]> = [
        [undefined, 10_000],
        [0, 10_000],
        [10, 1000],
        [-5, 1000],
        [2500, 2500],
        [1e9, 300_000]
      ]
      for (const [i, [ttl, expected]] of cases.entries()) {
        yield* locks.request(a!.connection, { requestId: `r${i}`, name: `T${i}`, ...(ttl !== undefined ? { ttl } : {}) })
        expect(locks.inspect(`T${i}`)!.owner!.expiresAt).toBe(expected)
      }
      // Behaviourally: a 10 ms lease lasts a full second, a huge one exactly five minutes.
      yield* locks.request(b!.connection, { requestId: "w2", name: "T2" })
      yield* locks.request(b!.connection, { requestId: "w5", name: "T5" })
      yield* TestClock.adjust(999)
      yield* settle
      expect(b!.ofType("LOCK_GRANTED")).toHaveLength(0)
      yield* TestClock.adjust(1)
      yield* settle
      expect(b!.ofType("LOCK_GRANTED").map((m) => m.payload.requestId)).toEqual(["w2"])
      yield* TestClock.adjust(298_999)
      yield* settle
      expect(b!.ofType("LOCK_GRANTED")).toHaveLength(1)
      // b's queued request is older than the wait limit by now, so re-queue before the lease ends.
      yield* locks.request(b!.connection, { requestId: "w5b", name: "T5" })
      yield* TestClock.adjust(1)
      yield* settle
      expect(b!.ofType("LOCK_GRANTED").map((m) => m.payload.requestId)).toEqual(["w2", "w5b"])
      expect(effectiveTtl(50_000, LocksConfig.defaults)).toBe(50_000)
    }))

  it.scoped("ERROR 403 without PUT on the lock name", () =>
    Effect.gen(function* () {
      const ctx = yield* buildCoordination({
        settings: { securityPolicies: [{ role: "USER", mapNamePattern: "public-*", actions: ["ALL"] }] }
      })
      const locks = Context.get(ctx, Locks)
      const [a] = connect(ctx, "a")
      yield* locks.request(a!.connection, { requestId: "r1", name: "secret" })
      expect(a!.sent).toEqual([{ type: "ERROR", payload: { code: 403, message: "Access Denied for lock secret" } }])
      expect(locks.inspect("secret")).toBeUndefined()
      yield* locks.request(a!.connection, { requestId: "r2", name: "public-x" })
      expect(a!.ofType("LOCK_GRANTED")).toHaveLength(1)
    }))

  // Live clock: the write-behind writer must actually run for the high-water mark to commit.
  it.live("fencing tokens keep growing across a restart on durable storage", () =>
    Effect.gen(function* () {
      const storage = durableMemoryStorage()
      const tokensOfRun = (count: number) =>
        Effect.scoped(
          Effect.gen(function* () {
            const ctx = yield* buildCoordination({ storage, locks: { fenceBlock: 4 } })
            const locks = Context.get(ctx, Locks)
            const [a] = connect(ctx, "a")
            const tokens: Array<number> = []
            for (let i = 0; i < count; i++) {
              yield* locks.request(a!.connection, { requestId: `r${i}`, name: "L" })
              const token = a!.ofType("LOCK_GRANTED").at(-1)!.payload.fencingToken as number
              tokens.push(token)
              yield* locks.release(a!.connection, { name: "L", fencingToken: token })
            }
            return tokens
          })
        )
      const first = yield* tokensOfRun(10)
      const second = yield* tokensOfRun(3)
      const all = [...first, ...second]
      for (let i = 1; i < all.length; i++) expect(all[i]!).toBeGreaterThan(all[i - 1]!)
      const mark = Number(Option.getOrThrow(yield* storage.getMeta(LOCK_FENCE_META_KEY)))
      expect(mark).toBeGreaterThanOrEqual(all.at(-1)!)
    }))
})

describe("LockTable", () => {
  it("tokens are strictly increasing across lock names and after a lock goes idle", () => {
    let n = 0
    const table = new LockTable(30_000, () => ++n)
    const tokens: Array<number> = []
    for (const name of ["x", "y", "x", "x", "z"]) {
      const [g] = table.request("c", "r", name, 1000, 0)
      tokens.push(g!.fencingToken)
      table.release("c", name, g!.fencingToken, 0)
    }
    expect(tokens).toEqual([1, 2, 3, 4, 5])
    expect(table.size).toBe(0)
  })

  it("release of a lock that does not exist fails", () => {
    const table = new LockTable(30_000, () => 1)
    expect(table.release("c", "nope", 1, 0)).toEqual({ success: false, grants: [] })
  })
})
