/**
 * Admission control primitives (behavior.md §3.4, §3.9). Plain synchronous classes: they run on socket
 * callbacks (per upgrade, per frame), so they allocate nothing on the fast path and take the current
 * time from the caller (the Effect clock, via `Hlc.wallMillis`). Only the bounded wait for in-flight
 * capacity is an Effect, so its timeout runs on Effect's clock too.
 */
import { Effect, Option } from "effect"

/** Why an upgrade was refused with close 1013. */
export type ConnectionRefusal = "rate" | "pending"

/**
 * New-connection admission: at most `ratePerWindow` upgrades per fixed window of `windowMs`, and at most
 * `maxPending` connections upgraded but not yet authenticated. Refused upgrades do not consume the window.
 */
export class ConnectionAdmission {
  private windowStart = Number.NEGATIVE_INFINITY
  private windowCount = 0
  private pendingCount = 0

  constructor(
    private readonly ratePerWindow: number,
    private readonly windowMs: number,
    private readonly maxPending: number
  ) {}

  /** Admits a new connection (counting it as pending) or says why not. */
  admit(now: number): ConnectionRefusal | undefined {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now
      this.windowCount = 0
    }
    if (this.windowCount >= this.ratePerWindow) return "rate"
    if (this.pendingCount >= this.maxPending) return "pending"
    this.windowCount++
    this.pendingCount++
    return undefined
  }

  /** An admitted connection authenticated or closed: it is no longer pending. Call once per admission. */
  settle(): void {
    if (this.pendingCount > 0) this.pendingCount--
  }

  get pending(): number {
    return this.pendingCount
  }
}

/**
 * Server-wide cap on write batches received but not yet applied (behavior.md §3.9). Permits are taken
 * synchronously when a frame arrives (`tryAcquire`); a frame that finds no capacity waits in FIFO order
 * (`acquire`, bounded). New arrivals never overtake waiters. `release` hands the permit straight to the
 * oldest waiter.
 */
export class InFlightLimiter {
  private inFlight = 0
  private readonly waiters: Array<() => void> = []

  constructor(readonly limit: number) {}

  /** Batches currently holding a permit. */
  get size(): number {
    return this.inFlight
  }

  /** Batches waiting for capacity. */
  get waiting(): number {
    return this.waiters.length
  }

  tryAcquire(): boolean {
    if (this.waiters.length > 0 || this.inFlight >= this.limit) return false
    this.inFlight++
    return true
  }

  release(): void {
    const next = this.waiters.shift()
    if (next !== undefined) next() // the permit moves to the waiter; the count is unchanged
    else if (this.inFlight > 0) this.inFlight--
  }

  /** Waits up to `timeoutMs` (Effect clock) for a permit; `false` when none freed up in time. */
  acquire(timeoutMs: number): Effect.Effect<boolean> {
    return Effect.suspend(() => {
      if (this.tryAcquire()) return Effect.succeed(true)
      let granted = false
      const wait = Effect.async<void>((resume) => {
        const waiter = () => {
          granted = true
          resume(Effect.void)
        }
        this.waiters.push(waiter)
        return Effect.sync(() => {
          const i = this.waiters.indexOf(waiter)
          if (i >= 0) this.waiters.splice(i, 1)
          // Handed a permit in the same instant the wait was abandoned: pass it on.
          if (granted) this.release()
        })
      })
      return wait.pipe(Effect.timeoutOption(timeoutMs), Effect.map(Option.isSome))
    })
  }
}

/**
 * Per-connection decode time budget. msgpack decoding cannot be interrupted, so a frame is never cut
 * short; instead the time spent on each frame (pre-scan + decode + enqueue) is measured and a frame over
 * `budgetMs` is a strike. `strikeLimit` strikes within `windowMs` mean the peer keeps sending frames built
 * to be expensive, and the connection is closed (1008). Size and rate limits bound the cost of each
 * strike, so a connection can stall the event loop for at most `strikeLimit` frames.
 */
export class DecodeBudget {
  private strikes = 0
  private firstStrikeAt = 0

  constructor(
    private readonly budgetMs: number,
    private readonly strikeLimit: number,
    private readonly windowMs: number
  ) {}

  /** Records a frame's processing time; `true` when the connection has used up its strikes. */
  record(elapsedMs: number, now: number): boolean {
    if (elapsedMs <= this.budgetMs) return false
    if (this.strikes === 0 || now - this.firstStrikeAt > this.windowMs) {
      this.strikes = 0
      this.firstStrikeAt = now
    }
    return ++this.strikes >= this.strikeLimit
  }
}

/**
 * At most `limit` log lines per `windowMs` per key (behavior.md §3.27: repeated bad input must not flood
 * the log). `allow` answers whether to log now; suppressed lines are counted and reported with the next
 * allowed one.
 */
export class LogThrottle {
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>()
  constructor(private readonly limit: number, private readonly windowMs: number) {}

  /** `undefined` = suppress; otherwise the number of lines suppressed for this key since the last one logged. */
  allow(key: string, now: number): number | undefined {
    let w = this.windows.get(key)
    if (w === undefined || now - w.start >= this.windowMs) {
      const suppressed = w?.suppressed ?? 0
      if (this.windows.size > 10_000) this.windows.clear()
      this.windows.set(key, w = { start: now, count: 0, suppressed: 0 })
      w.suppressed = 0
      w.count = 1
      return suppressed
    }
    if (w.count < this.limit) {
      w.count++
      const suppressed = w.suppressed
      w.suppressed = 0
      return suppressed
    }
    w.suppressed++
    return undefined
  }
}
