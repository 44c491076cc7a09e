/**
 * Deterministic multi-node GC simulation: N node stacks over `makeSimulatedNetwork`, all on one
 * virtual clock, a seeded workload, and invariant checks that record violations instead of throwing
 * (so a failing seed can be reported with everything that went wrong).
 *
 * Invariants checked in every run:
 * - I1 (every prune): each pruned tombstone was stored strictly before the safe point; after the prune
 *   the node holds no tombstone stored before it (it prunes exactly that set); the safe point is one
 *   that the leader of that epoch committed.
 * - I2 (every commit): per epoch, only that epoch's leader commits.
 * - I3 (every sync and at the end): no pruned key becomes visible again through anti-entropy sync.
 * - I4 (at the end, after a quiet, loss-free period): every surviving node has pruned the same set of
 *   keys, holds the same records, and a full sync brings back nothing that was pruned.
 */
import { Cause, Effect, Exit, Scope } from "effect"
import { compareTimestamps } from "../../src/crdt/hlc.js"
import type { Timestamp } from "../../src/crdt/types.js"
import type { GcEvent } from "../../src/layers/Gc.js"
import { makeSimulatedNetwork, type NetworkFaults, runSimulated, type SimClock, type SimulatedNetwork } from "../../src/layers/cluster/simulated.js"
import { buildNode, type FakeConnection, type Node, ts } from "./support.js"

export const MAP = "sim"

export interface SimNode {
  readonly node: Node
  readonly scope: Scope.CloseableScope
  crashed: boolean
  /** Keys this node pruned (cumulative). */
  readonly pruned: Set<string>
  /** storedAt of every tombstone this node was given (by the workload or by sync). */
  readonly tombstoneStoredAt: Map<string, Timestamp>
  lastSafe: Timestamp | undefined
}

export interface CommitRecord {
  readonly at: number
  readonly node: string
  readonly epoch: number
  readonly safe: Timestamp
}

export interface SimSettings {
  readonly seed: number
  readonly nodes: ReadonlyArray<string>
  readonly faults?: Partial<NetworkFaults>
  readonly gcIntervalMs?: number
  readonly gcAgeMs?: number
}

export interface Sim {
  readonly network: SimulatedNetwork
  readonly clock: SimClock
  readonly nodes: ReadonlyMap<string, SimNode>
  readonly commits: ReadonlyArray<CommitRecord>
  readonly violations: Array<string>
  readonly gcAgeMs: number
  readonly gcIntervalMs: number
  readonly live: () => ReadonlyArray<SimNode>
  /** Advances virtual time to `t` (absolute ms). */
  readonly advanceTo: (t: number) => Effect.Effect<void>
  /** Writes fresh keys and removes some older ones on every live node reachable from a random writer. */
  readonly writeRound: (puts: number, removes: number) => Effect.Effect<void>
  /** Anti-entropy: every pair of linked live nodes merges each other's LWW records (origin "sync"). */
  readonly sync: Effect.Effect<void>
  readonly partition: (groups: ReadonlyArray<ReadonlyArray<string>>) => Effect.Effect<void>
  /** Heals the partition and runs anti-entropy at once (replication catches up). */
  readonly heal: Effect.Effect<void>
  /** Crashes a node: it leaves the membership and its layers' scope is closed. */
  readonly crash: (id: string) => Effect.Effect<void>
  readonly connect: (id: string, connection: FakeConnection) => Effect.Effect<void>
  readonly disconnect: (id: string, connection: FakeConnection) => Effect.Effect<void>
  /** Quiet, loss-free period, then I4. */
  readonly finish: Effect.Effect<void>
  readonly random: () => number
}

const key = (n: number) => `k${String(n).padStart(5, "0")}`

export const makeSim = (settings: SimSettings, clock: SimClock): Effect.Effect<Sim, never, Scope.Scope> =>
  Effect.gen(function* () {
    const gcIntervalMs = settings.gcIntervalMs ?? 1000
    const gcAgeMs = settings.gcAgeMs ?? 1000
    const network = yield* makeSimulatedNetwork({ seed: settings.seed, nodes: settings.nodes, ...settings.faults })
    const random = network.random
    const violations: string[] = []
    const commits: CommitRecord[] = []
    const committedKeys = new Set<string>()
    const epochLeader = new Map<number, string>()
    const nodes = new Map<string, SimNode>()
    let groups: ReadonlyArray<ReadonlyArray<string>> | undefined

    const noteMembership = Effect.map(network.membership, (view) => {
      if (view.leader !== undefined && !epochLeader.has(view.epoch)) epochLeader.set(view.epoch, view.leader)
    })
    yield* noteMembership

    const fail = (message: string) => {
      if (violations.length < 20) violations.push(`t=${clock.now()} ${message}`)
    }

    const onEvent = (sim: SimNode) => (event: GcEvent): void => {
      const id = sim.node.id
      if (event._tag === "Committed") {
        const leader = epochLeader.get(event.epoch)
        if (leader !== id) fail(`I2: ${id} committed in epoch ${event.epoch} whose leader is ${leader}`)
        commits.push({ at: clock.now(), node: id, epoch: event.epoch, safe: event.safeTimestamp })
        committedKeys.add(`${event.epoch}|${id}|${JSON.stringify(event.safeTimestamp)}`)
        return
      }
      if (event._tag !== "Pruned") return
      const safe = event.safeTimestamp
      if (!committedKeys.has(`${event.epoch}|${event.from}|${JSON.stringify(safe)}`)) {
        fail(`I1: ${id} pruned with ${JSON.stringify(safe)} from ${event.from} (epoch ${event.epoch}), never committed by that leader`)
      }
      for (const [, k] of event.lww) {
        const storedAt = sim.tombstoneStoredAt.get(k)
        if (storedAt === undefined || compareTimestamps(storedAt, safe) >= 0) {
          fail(`I1: ${id} pruned ${k} stored at ${JSON.stringify(storedAt)}, not older than safe ${JSON.stringify(safe)}`)
        }
        sim.pruned.add(k)
      }
      for (const [k, stored] of sim.node.maps.peek(MAP)?.lww.entries() ?? []) {
        if (stored.record.value === null && compareTimestamps(stored.storedAt, safe) < 0) fail(`I1: ${id} kept ${k}, older than safe`)
      }
      sim.lastSafe = safe
    }

    for (const id of settings.nodes) {
      const scope = yield* Scope.make()
      const node = yield* buildNode({ nodeId: id, settings: { gcIntervalMs, gcAgeMs, ttlSweepIntervalMs: 3_600_000 }, cluster: network.layerFor(id), noWriteBehind: true }, scope)
      const sim: SimNode = { node, scope, crashed: false, pruned: new Set(), tombstoneStoredAt: new Map(), lastSafe: undefined }
      node.gc.observe(onEvent(sim))
      nodes.set(id, sim)
    }
    yield* Effect.addFinalizer(() => Effect.forEach(nodes.values(), (n) => (n.crashed ? Effect.void : Scope.close(n.scope, Exit.void)), { discard: true }))

    const live = () => Array.from(nodes.values()).filter((n) => !n.crashed)
    const groupOf = (id: string) => groups?.findIndex((g) => g.includes(id)) ?? 0
    const linked = (a: string, b: string) => groups === undefined || (groupOf(a) >= 0 && groupOf(a) === groupOf(b))

    let nextKey = 0
    const liveKeys: string[] = []
    let counter = 0

    const apply = (sim: SimNode, k: string, value: unknown, stamp: Timestamp, origin: "client" | "sync") =>
      Effect.gen(function* () {
        const state = yield* Effect.orDie(sim.node.maps.get(MAP))
        const change = sim.node.maps.applyLww(state, k, { value, timestamp: stamp }, { origin })
        if (change !== undefined && value === null) sim.tombstoneStoredAt.set(k, change.storedAt)
        if (change !== undefined && value !== null && sim.pruned.has(k)) fail(`I3: pruned key ${k} visible again on ${sim.node.id} (${origin})`)
        sim.node.maps.flushPersistence()
      })

    const writeRound = (puts: number, removes: number) =>
      Effect.gen(function* () {
        const alive = live()
        if (alive.length === 0) return
        const writer = alive[Math.floor(random() * alive.length)]!
        const targets = alive.filter((n) => linked(writer.node.id, n.node.id))
        const now = clock.now()
        for (let i = 0; i < removes && liveKeys.length > 0; i++) {
          const k = liveKeys.splice(Math.floor(random() * liveKeys.length), 1)[0]!
          const stamp = ts(now, counter++, "writer")
          for (const t of targets) yield* apply(t, k, null, stamp, "client")
        }
        for (let i = 0; i < puts; i++) {
          const k = key(nextKey++)
          liveKeys.push(k)
          const stamp = ts(now, counter++, "writer")
          for (const t of targets) yield* apply(t, k, { n: i }, stamp, "client")
        }
      })

    const sync = Effect.gen(function* () {
      const alive = live()
      for (const to of alive) {
        for (const from of alive) {
          if (from === to || !linked(from.node.id, to.node.id)) continue
          for (const [k, stored] of Array.from(from.node.maps.peek(MAP)?.lww.entries() ?? [])) {
            yield* apply(to, k, stored.record.value, stored.record.timestamp, "sync")
          }
        }
      }
    })

    const advanceTo = clock.advanceTo

    const finish = Effect.gen(function* () {
      groups = undefined
      yield* network.heal
      yield* network.setFaults({ loss: 0, duplication: 0 })
      yield* sync
      const survivors = live()
      // Quiet period: long enough for every tombstone to age past the safe point, plus a spare round.
      const quietUntil = Math.ceil((clock.now() + gcAgeMs) / gcIntervalMs) * gcIntervalMs + 2 * gcIntervalMs + gcIntervalMs / 2
      yield* advanceTo(quietUntil)
      const reference = survivors[0]
      if (reference === undefined) return
      const snapshot = (n: SimNode) => JSON.stringify(Array.from(n.node.maps.peek(MAP)?.lww.entries() ?? []).map(([k, s]) => [k, s.record]).sort())
      for (const n of survivors) {
        if (JSON.stringify([...n.pruned].sort()) !== JSON.stringify([...reference.pruned].sort())) {
          fail(`I4: ${n.node.id} pruned ${n.pruned.size} keys, ${reference.node.id} pruned ${reference.pruned.size}`)
        }
        if (snapshot(n) !== snapshot(reference)) fail(`I4: ${n.node.id} holds different records than ${reference.node.id}`)
        for (const [k, stored] of n.node.maps.peek(MAP)?.lww.entries() ?? []) {
          if (stored.record.value === null) fail(`I4: ${n.node.id} still holds tombstone ${k} after the quiet period`)
        }
      }
      const sizes = survivors.map((n) => n.node.maps.peek(MAP)?.lww.size ?? 0)
      yield* sync
      survivors.forEach((n, i) => {
        if ((n.node.maps.peek(MAP)?.lww.size ?? 0) !== sizes[i]) fail(`I4: final sync changed ${n.node.id}`)
        for (const k of n.pruned) if (n.node.maps.peek(MAP)?.lww.get(k) !== undefined) fail(`I4: pruned ${k} reappeared on ${n.node.id}`)
      })
    })

    return {
      network,
      clock,
      nodes,
      commits,
      violations,
      gcAgeMs,
      gcIntervalMs,
      live,
      advanceTo,
      writeRound,
      sync,
      partition: (g) =>
        Effect.gen(function* () {
          groups = g
          yield* network.partition(g)
        }),
      heal: Effect.gen(function* () {
        groups = undefined
        yield* network.heal
        yield* sync
      }),
      crash: (id) =>
        Effect.gen(function* () {
          const sim = nodes.get(id)!
          sim.crashed = true
          yield* network.crash(id)
          yield* noteMembership
          yield* Scope.close(sim.scope, Exit.void)
        }),
      connect: (id, connection) => Effect.sync(() => nodes.get(id)!.node.connections.register(connection)),
      disconnect: (id, connection) => nodes.get(id)!.node.connections.unregister(connection),
      finish,
      random
    } satisfies Sim
  })

/**
 * Runs `scenario` for every seed on a fresh virtual clock; returns the failing seeds with their
 * violations (and prints them, so a seed can be replayed with GC_SIM_SEED=<seed>).
 */
export const runSeeds = (
  name: string,
  seeds: ReadonlyArray<number>,
  settings: (seed: number) => SimSettings,
  scenario: (sim: Sim) => Effect.Effect<void>
): ReadonlyArray<string> => {
  const only = process.env["GC_SIM_SEED"]
  const chosen = only !== undefined ? [Number(only)] : seeds
  const failures: string[] = []
  for (const seed of chosen) {
    const exit = runSimulated((clock) =>
      Effect.scoped(
        Effect.gen(function* () {
          const sim = yield* makeSim(settings(seed), clock)
          yield* scenario(sim)
          return sim.violations
        })
      )
    )
    const problems = Exit.isSuccess(exit) ? exit.value : [`crashed: ${Cause.pretty(exit.cause)}`]
    if (problems.length > 0) {
      const line = `${name}: seed ${seed} failed (replay: GC_SIM_SEED=${seed} npx vitest run test/gc)\n  ${problems.join("\n  ")}`
      console.error(line)
      failures.push(line)
    }
  }
  return failures
}

export const seedRange = (count: number, base = 1): ReadonlyArray<number> => Array.from({ length: count }, (_, i) => base + i)

