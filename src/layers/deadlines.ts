/**
 * Many short-lived timeouts on Effect's clock without a fiber per timeout: the write-concern timeouts of
 * PERSISTED acks, one per waiting batch, nearly all of which are cancelled by the commit long before
 * they are due.
 *
 * Timeouts are grouped by duration. Within a group deadlines are added in clock order, so each group is
 * a FIFO and needs one timer fiber: it sleeps until the first live deadline, fires what is due, skips
 * cancelled entries, and ends when the group is empty (the next `add` starts it again). A group whose
 * timeouts keep being cancelled wakes about once per duration, not once per timeout. (Should the wall
 * clock step back, a later entry may sit behind an earlier one and fire late by the step.)
 */
import { Effect, type Clock, type Fiber } from "effect"

export interface Deadline {
  /** Idempotent; after it `onExpire` is never called. */
  readonly cancel: () => void
}

interface Entry extends Deadline {
  readonly at: number
  readonly onExpire: () => void
  done: boolean
}

interface Group {
  readonly durationMs: number
  entries: Array<Entry>
  head: number
  running: boolean
}

export interface Deadlines {
  /** Calls `onExpire` once `durationMs` has passed on the clock, unless cancelled first. */
  readonly add: (durationMs: number, onExpire: () => void) => Deadline
  /** Timeouts not yet fired or cancelled (for tests and metrics). */
  readonly size: () => number
}

export const makeDeadlines = (
  clock: Clock.Clock,
  runFork: <A>(effect: Effect.Effect<A>) => Fiber.RuntimeFiber<A>,
  /** Reports a throwing `onExpire` (which must not stop the other timeouts). */
  onDefect: (error: unknown) => void
): Deadlines => {
  const groups = new Map<number, Group>()

  /** Fires the due entries and drops cancelled ones at the head; the wait until the next, or undefined. */
  const advance = (group: Group): number | undefined => {
    const now = clock.unsafeCurrentTimeMillis()
    while (group.head < group.entries.length) {
      const entry = group.entries[group.head]!
      if (!entry.done) {
        if (entry.at > now) break
        entry.done = true
        try {
          entry.onExpire()
        } catch (error) {
          onDefect(error)
        }
      }
      group.head++
    }
    if (group.head === group.entries.length) {
      group.entries = []
      group.head = 0
      return undefined
    }
    if (group.head > 1024 && group.head * 2 > group.entries.length) {
      group.entries = group.entries.slice(group.head)
      group.head = 0
    }
    return group.entries[group.head]!.at - now
  }

  // The emptiness check and `running = false` happen in one synchronous step, so an `add` either sees the
  // fiber running (and it will reach the new entry) or starts a new one.
  const timer = (group: Group): Effect.Effect<void> =>
    Effect.suspend(() => {
      const wait = advance(group)
      if (wait === undefined) {
        group.running = false
        groups.delete(group.durationMs) // client-chosen durations must not accumulate
        return Effect.void
      }
      return Effect.zipRight(Effect.sleep(wait), timer(group))
    })

  const add = (durationMs: number, onExpire: () => void): Deadline => {
    let group = groups.get(durationMs)
    if (group === undefined) {
      group = { durationMs, entries: [], head: 0, running: false }
      groups.set(durationMs, group)
    }
    const entry: Entry = {
      at: clock.unsafeCurrentTimeMillis() + durationMs,
      onExpire,
      done: false,
      cancel: () => {
        entry.done = true
      }
    }
    group.entries.push(entry)
    if (!group.running) {
      group.running = true
      runFork(timer(group))
    }
    return entry
  }

  const size = (): number => {
    let n = 0
    for (const group of groups.values()) {
      for (let i = group.head; i < group.entries.length; i++) if (!group.entries[i]!.done) n++
    }
    return n
  }

  return { add, size }
}
