/**
 * An in-memory cluster of N nodes in one process, for deterministic multi-node tests.
 *
 * - **Network**: every message is encoded and decoded with the `ClusterMessage` schema (as a real
 *   transport would), then delivered after a delay drawn from `[min, max]` ms with `Effect.sleep`, so
 *   the Effect clock (`TestClock`, or the faster `runSimulated` below) drives delivery. Loss,
 *   duplication and the delays are drawn from one seeded PRNG (mulberry32): the same seed and the same
 *   program replay the same run.
 * - **Partitions** cut messages between groups (checked at send and again at delivery). They do not
 *   change membership: membership models a coordination service every node can see (like the
 *   PostgreSQL advisory-lock leader), so a partition delays consensus but never creates two leaders.
 * - **Membership** = the live (not crashed) nodes, sorted; **leader** = the smallest live id; the
 *   **epoch** grows by one whenever the leader changes. A crashed node sends and receives nothing.
 */
import { Clock, Duration, Effect, Exit, Fiber, FiberRef, Layer, PubSub, type Scheduler, Schema, type Scope, Stream, SubscriptionRef } from "effect"
import { Cluster, type ClusterService, type Inbound, type Membership } from "../Cluster.js"
import { ClusterMessage } from "./messages.js"

/** mulberry32: a tiny seeded PRNG with a 32-bit state; returns floats in [0, 1). */
export const mulberry32 = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface NetworkFaults {
  /** Delivery delay range in ms, inclusive. */
  readonly delay: readonly [number, number]
  /** Probability that a message is dropped. */
  readonly loss: number
  /** Probability that a (delivered) message is delivered twice, with independent delays. */
  readonly duplication: number
}

export interface SimulatedNetworkOptions extends Partial<NetworkFaults> {
  readonly seed: number
  readonly nodes: ReadonlyArray<string>
}

/** One send, as recorded by the network (for invariant checks and failure reports). */
export interface SentMessage {
  readonly seq: number
  readonly at: number
  readonly from: string
  readonly to: string
  readonly message: ClusterMessage
  /** What happened at send time; "sent" copies may still be dropped at delivery by a partition or crash. */
  readonly fate: "sent" | "duplicated" | "lost" | "partitioned" | "crashed"
}

export interface SimulatedNetwork {
  /** The Cluster layer of one node (its inbound feed, sends and the shared membership view). */
  readonly layerFor: (nodeId: string) => Layer.Layer<Cluster>
  /** Cuts every link between different groups; nodes in no group are isolated. */
  readonly partition: (groups: ReadonlyArray<ReadonlyArray<string>>) => Effect.Effect<void>
  readonly heal: Effect.Effect<void>
  /** The node leaves the membership and its links go dead (close its layers' scope to stop its fibers). */
  readonly crash: (nodeId: string) => Effect.Effect<void>
  /** The node is live again and rejoins the membership. */
  readonly restart: (nodeId: string) => Effect.Effect<void>
  readonly setFaults: (faults: Partial<NetworkFaults>) => Effect.Effect<void>
  readonly membership: Effect.Effect<Membership>
  /** Every send so far, in order. */
  readonly log: ReadonlyArray<SentMessage>
  /** The network's PRNG, for tests that want their own seeded choices in the same stream. */
  readonly random: () => number
}

const encode = Schema.encodeSync(ClusterMessage)
const decode = Schema.decodeUnknownSync(ClusterMessage)

/** Builds the network in the caller's scope (in-flight deliveries are interrupted when it closes). */
export const makeSimulatedNetwork = (options: SimulatedNetworkOptions): Effect.Effect<SimulatedNetwork, never, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const random = mulberry32(options.seed)
    let faults: NetworkFaults = {
      delay: options.delay ?? [1, 20],
      loss: options.loss ?? 0,
      duplication: options.duplication ?? 0
    }
    const all = [...options.nodes].sort()
    const crashed = new Set<string>()
    /** node → group index; undefined = no partition. */
    let groupOf: Map<string, number> | undefined
    const hubs = new Map<string, PubSub.PubSub<Inbound>>()
    for (const node of all) hubs.set(node, yield* PubSub.unbounded<Inbound>())
    const log: SentMessage[] = []
    let seq = 0

    const viewOf = (previous: Membership | undefined): Membership => {
      const members = all.filter((n) => !crashed.has(n))
      const leader = members[0]
      const epoch = previous === undefined ? 1 : previous.leader === leader ? previous.epoch : previous.epoch + 1
      return { members, leader, epoch }
    }
    const membership = yield* SubscriptionRef.make(viewOf(undefined))
    const recompute = SubscriptionRef.update(membership, (previous) => {
      const next = viewOf(previous)
      const same = next.epoch === previous.epoch && next.members.length === previous.members.length &&
        next.members.every((m, i) => m === previous.members[i])
      return same ? previous : next
    })

    const linked = (a: string, b: string): boolean => {
      if (crashed.has(a) || crashed.has(b)) return false
      if (a === b || groupOf === undefined) return true
      const ga = groupOf.get(a)
      return ga !== undefined && ga === groupOf.get(b)
    }

    const drawDelay = (): number => {
      const [min, max] = faults.delay
      return min + Math.floor(random() * (max - min + 1))
    }

    const deliverAfter = (from: string, to: string, message: ClusterMessage, delayMs: number) =>
      Effect.sleep(Duration.millis(delayMs)).pipe(
        Effect.zipRight(Effect.suspend(() => {
          // The link may have gone down while the message was in flight.
          if (!linked(from, to)) return Effect.void
          return PubSub.publish(hubs.get(to)!, { from, message: decode(encode(message)) })
        })),
        Effect.asVoid,
        Effect.forkIn(scope)
      )

    const send = (from: string, to: string, message: ClusterMessage): Effect.Effect<void> =>
      Effect.suspend(() => {
        const at = Clock.currentTimeMillis
        return Effect.flatMap(at, (now) => {
          const record = (fate: SentMessage["fate"]) => log.push({ seq: seq++, at: now, from, to, message, fate })
          if (!hubs.has(to)) return Effect.void
          if (crashed.has(from) || crashed.has(to)) return Effect.sync(() => record("crashed"))
          if (!linked(from, to)) return Effect.sync(() => record("partitioned"))
          // Draw in a fixed order so a seed replays exactly.
          const lost = random() < faults.loss
          const duplicated = random() < faults.duplication
          const first = drawDelay()
          const second = drawDelay()
          if (lost) return Effect.sync(() => record("lost"))
          record(duplicated ? "duplicated" : "sent")
          return duplicated
            ? Effect.zipRight(deliverAfter(from, to, message, first), deliverAfter(from, to, message, second))
            : deliverAfter(from, to, message, first)
        })
      }).pipe(Effect.asVoid)

    const layerFor = (nodeId: string): Layer.Layer<Cluster> => {
      const hub = hubs.get(nodeId)
      if (hub === undefined) throw new Error(`unknown simulated node ${nodeId}`)
      const service: ClusterService = {
        nodeId,
        membership: SubscriptionRef.get(membership),
        membershipChanges: membership.changes,
        send: (to, message) => send(nodeId, to, message),
        broadcast: (message) =>
          Effect.suspend(() => Effect.forEach(all.filter((n) => n !== nodeId), (to) => send(nodeId, to, message), { discard: true })),
        inbound: Stream.fromPubSub(hub)
      }
      return Layer.succeed(Cluster, service)
    }

    return {
      layerFor,
      partition: (groups) =>
        Effect.sync(() => {
          groupOf = new Map()
          groups.forEach((group, i) => group.forEach((n) => groupOf!.set(n, i)))
        }),
      heal: Effect.sync(() => {
        groupOf = undefined
      }),
      crash: (nodeId) => Effect.zipRight(Effect.sync(() => crashed.add(nodeId)), recompute),
      restart: (nodeId) => Effect.zipRight(Effect.sync(() => crashed.delete(nodeId)), recompute),
      setFaults: (next) =>
        Effect.sync(() => {
          faults = { ...faults, ...next }
        }),
      membership: SubscriptionRef.get(membership),
      log,
      random
    } satisfies SimulatedNetwork
  })

/**
 * A discrete-event runner for fast simulation runs. `runSimulated` runs an effect on a virtual clock
 * and a synchronous scheduler: it runs every runnable fiber until none is left, then fires the
 * earliest timer (ties in registration order), and so on until the effect completes. No real time
 * passes and nothing depends on the host's timers, so a run is exactly reproducible — and, unlike
 * `TestClock.adjust` (which waits a macrotask per timer), it costs only the CPU work of the run.
 * Inside the effect, `Effect.sleep` / schedules use the virtual clock; wait for time with
 * `Effect.sleep` (or `SimClock.advanceTo`). The effect must not wait on real I/O or host timers.
 */
export interface SimClock {
  readonly clock: Clock.Clock
  readonly now: () => number
  /** Sleeps until the virtual time `t` (no-op if it has passed). */
  readonly advanceTo: (t: number) => Effect.Effect<void>
}

interface Timer {
  readonly at: number
  readonly seq: number
  readonly wake: () => void
  cancelled: boolean
}

/** Runs tasks synchronously when the driver drains it. */
class DrainScheduler implements Scheduler.Scheduler {
  private queue: Array<Scheduler.Task> = []
  scheduleTask(task: Scheduler.Task): void {
    this.queue.push(task)
  }
  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)
      ? fiber.getFiberRef(FiberRef.currentSchedulingPriority)
      : false
  }
  /** Runs tasks (and the tasks they schedule) until none is left. */
  drain(): void {
    while (this.queue.length > 0) {
      const batch = this.queue
      this.queue = []
      for (const task of batch) task()
    }
  }
}

export const makeSimClock = (start = 0) => {
  let now = start
  let seq = 0
  // A binary min-heap ordered by (at, seq).
  const heap: Timer[] = []
  const less = (a: Timer, b: Timer) => a.at < b.at || (a.at === b.at && a.seq < b.seq)
  const push = (t: Timer) => {
    heap.push(t)
    let i = heap.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!less(heap[i]!, heap[p]!)) break
      ;[heap[i], heap[p]] = [heap[p]!, heap[i]!]
      i = p
    }
  }
  const pop = (): Timer | undefined => {
    const top = heap[0]
    const last = heap.pop()
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r
        if (m === i) break
        ;[heap[i], heap[m]] = [heap[m]!, heap[i]!]
        i = m
      }
    }
    return top
  }

  const sleep = (duration: Duration.Duration): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const timer: Timer = { at: now + Math.max(0, Duration.toMillis(duration)), seq: seq++, wake: () => resume(Effect.void), cancelled: false }
      push(timer)
      return Effect.sync(() => {
        timer.cancelled = true
      })
    })

  const clock: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    currentTimeMillis: Effect.sync(() => now),
    unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
    sleep
  }

  /** Fires the earliest live timer; false when none is left. */
  const fireNext = (): boolean => {
    for (;;) {
      const next = pop()
      if (next === undefined) return false
      if (next.cancelled) continue
      now = next.at
      next.wake()
      return true
    }
  }

  const simClock: SimClock = {
    clock,
    now: () => now,
    advanceTo: (t) => Effect.suspend(() => (t > now ? sleep(Duration.millis(t - now)) : Effect.void))
  }
  return { ...simClock, fireNext }
}

/**
 * Runs `effect` to completion on a fresh virtual clock (see `SimClock`) and returns its exit.
 * Fails with a defect if every fiber waits and no timer is left (a deadlock, or a wait on real I/O).
 */
export const runSimulated = <A, E>(effect: (clock: SimClock) => Effect.Effect<A, E>, options: { readonly start?: number } = {}): Exit.Exit<A, E> => {
  const sim = makeSimClock(options.start ?? 0)
  const scheduler = new DrainScheduler()
  const fiber = Effect.runFork(effect(sim).pipe(Effect.withClock(sim.clock)), { scheduler })
  for (;;) {
    scheduler.drain()
    const exit = fiber.unsafePoll()
    if (exit !== null) return exit
    if (!sim.fireNext()) {
      Effect.runFork(Fiber.interrupt(fiber), { scheduler })
      scheduler.drain()
      return Exit.die(new Error(`simulation stalled at t=${sim.now()}: every fiber waits and no timer is left`)) as Exit.Exit<A, E>
    }
  }
}
