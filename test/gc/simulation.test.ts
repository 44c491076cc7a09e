/**
 * Deterministic multi-node GC simulations (3 and 5 nodes), each scenario over 100 seeds, on the
 * virtual simulation clock (no real sleeps). Every run checks the invariants listed in simulation.ts;
 * the scenario-specific expectations below are recorded as violations too, so a failing seed prints
 * everything it saw. Replay one seed with `GC_SIM_SEED=<seed> npx vitest run test/gc`; run more seeds
 * with `GC_SIM_COUNT=<n>`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, TestClock } from "effect"
import { Cluster } from "../../src/layers/Cluster.js"
import { makeSimulatedNetwork } from "../../src/layers/cluster/simulated.js"
import { buildNode, fakeConnection, ts } from "./support.js"
import { runSeeds, seedRange, type Sim } from "./simulation.js"

const SEEDS = seedRange(Number(process.env["GC_SIM_COUNT"] ?? 100))
const THREE = ["n1", "n2", "n3"]
const FIVE = ["n1", "n2", "n3", "n4", "n5"]

/** Writes at k·1000 + 300 for k in [from, to): never on a tick, a report time or a safe point. */
const workload = (sim: Sim, from: number, to: number, each?: (k: number) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    for (let k = from; k < to; k++) {
      yield* sim.advanceTo(k * 1000 + 300)
      yield* sim.writeRound(3, 2)
      if (each !== undefined) yield* each(k)
    }
  })

const check = (sim: Sim, ok: boolean, message: string) => {
  if (!ok) sim.violations.push(`t=${sim.clock.now()} ${message}`)
}

const expectNoFailures = (failures: ReadonlyArray<string>) => expect(failures, failures.join("\n")).toEqual([])

/** Odd seeds run 3 nodes, even seeds 5: each scenario covers both sizes over its 100 seeds. */
const nodesFor = (seed: number) => (seed % 2 === 1 ? THREE : FIVE)
const faultTotals = { lost: 0, duplicated: 0 }

describe("GC consensus simulation (100 seeds per scenario, 3 and 5 nodes; gcIntervalMs 1000, gcAgeMs 1000)", () => {
  it("a lagging client on one node holds back the safe point for all", () => {
    const failures = runSeeds("lagging", SEEDS, (seed) => ({ seed, nodes: nodesFor(seed), faults: { delay: [1, 30] } }), (sim) =>
      Effect.gen(function* () {
        const nodes = [...sim.nodes.keys()]
        const holder = nodes[Math.floor(sim.random() * nodes.length)]!
        const client = fakeConnection("lagging", ts(0, 0, "phone"))
        yield* sim.connect(holder, client)
        // Active until 3500, then silent: its lastActiveHlc stays 3500 → safe ≤ 3500 − 1000.
        yield* workload(sim, 0, 7, (k) =>
          Effect.gen(function* () {
            if (k <= 3) {
              yield* sim.advanceTo(k * 1000 + 500)
              client.lastActiveHlc = ts(k * 1000 + 500, 0, "phone")
            }
          }))
        check(sim, sim.commits.every((c) => c.safe.millis <= 2500), `a commit passed the lagging client: ${sim.commits.map((c) => c.safe.millis)}`)
        check(sim, sim.commits.some((c) => c.safe.millis === 2500), "the safe point never reached the lagging client's bound")
        // Tombstones stored at 2300 are gone everywhere; those from 3300 on are kept everywhere.
        for (const n of sim.live()) {
          const held = [...n.tombstoneStoredAt].filter(([k]) => !n.pruned.has(k)).map(([, s]) => s.millis)
          check(sim, held.every((m) => m >= 2500), `${n.node.id} holds a tombstone older than 2500`)
          check(sim, held.some((m) => m >= 3300), `${n.node.id} holds no young tombstone`)
        }
        yield* sim.disconnect(holder, client)
        yield* workload(sim, 7, 9)
        check(sim, sim.commits.at(-1)!.safe.millis >= 7000, "the safe point did not advance after the client left")
        yield* sim.finish
      }))
    expectNoFailures(failures)
  })

  it("a leader that crashes mid-round is replaced and the next round completes", () => {
    const failures = runSeeds("crash", SEEDS, (seed) => ({ seed, nodes: nodesFor(seed), faults: { delay: [1, 30] } }), (sim) =>
      Effect.gen(function* () {
        yield* workload(sim, 0, 3)
        // The leader has recorded its own report at 3000; the others' are still in flight.
        yield* sim.advanceTo(3000 + Math.floor(sim.random() * 5))
        yield* sim.crash("n1")
        const view = yield* sim.network.membership
        check(sim, view.leader === "n2" && view.epoch === 2, `unexpected view ${JSON.stringify(view)}`)
        yield* sim.advanceTo(4100) // the tick at 4000 plus two network delays
        const next = sim.commits.filter((c) => c.epoch === 2)
        check(sim, next.length === 1 && next[0]!.node === "n2", `expected one epoch-2 commit by n2 by 4100: ${JSON.stringify(next)}`)
        for (const n of sim.live()) check(sim, (n.lastSafe?.millis ?? 0) >= 3000, `${n.node.id} did not apply the new leader's commit`)
        yield* workload(sim, 4, 6)
        yield* sim.finish
      }))
    expectNoFailures(failures)
  })

  it("a partition delays consensus until it heals, and never lets two safe points be committed in a round", () => {
    const failures = runSeeds("partition", SEEDS, (seed) => ({ seed, nodes: nodesFor(seed), faults: { delay: [1, 30] } }), (sim) =>
      Effect.gen(function* () {
        const nodes = [...sim.nodes.keys()]
        yield* workload(sim, 0, 3)
        // Clean network: one commit per tick (1000, 2000), by n1 in epoch 1.
        check(sim, sim.commits.map((c) => `${c.node}/${c.epoch}/${Math.floor(c.at / 1000)}`).join() === "n1/1/1,n1/1/2", `commits ${JSON.stringify(sim.commits)}`)
        const cut = 1 + Math.floor(sim.random() * (nodes.length - 1))
        yield* sim.advanceTo(2500)
        yield* sim.partition([nodes.slice(0, cut), nodes.slice(cut)])
        yield* workload(sim, 3, 7)
        const during = sim.commits.filter((c) => c.at > 2500)
        check(sim, during.length === 0, `commits during the partition: ${JSON.stringify(during)}`)
        yield* sim.advanceTo(6700)
        yield* sim.heal
        yield* sim.advanceTo(7100)
        check(sim, sim.commits.some((c) => c.at > 6700 && c.at <= 7100), "no commit in the first round after healing")
        yield* workload(sim, 7, 9)
        yield* sim.finish
      }))
    expectNoFailures(failures)
  })

  it("with message loss and duplication (and a partition) the invariants still hold", () => {
    const failures = runSeeds(
      "lossy",
      SEEDS,
      (seed) => ({ seed, nodes: nodesFor(seed), faults: { delay: [1, 60], loss: 0.2, duplication: 0.2 } }),
      (sim) =>
        Effect.gen(function* () {
          const nodes = [...sim.nodes.keys()]
          yield* workload(sim, 0, 3)
          yield* sim.partition([nodes.slice(0, 2), nodes.slice(2)])
          yield* workload(sim, 3, 5)
          yield* sim.heal
          yield* workload(sim, 5, 9)
          const lost = sim.network.log.filter((m) => m.fate === "lost").length
          const duplicated = sim.network.log.filter((m) => m.fate === "duplicated").length
          check(sim, lost + duplicated > 0, "no message was lost or duplicated")
          faultTotals.lost += lost
          faultTotals.duplicated += duplicated
          yield* sim.finish
          check(sim, sim.commits.length > 0, "no commit at all")
        })
    )
    expectNoFailures(failures)
    if (process.env["GC_SIM_SEED"] === undefined) expect(Math.min(faultTotals.lost, faultTotals.duplicated)).toBeGreaterThan(100)
  })
})

describe("simulated network under TestClock", () => {
  it.scoped("delivers with seeded delays on the Effect clock; the same seed replays the same run", () =>
    Effect.gen(function* () {
      const run = (seed: number) =>
        Effect.scoped(
          Effect.gen(function* () {
            const network = yield* makeSimulatedNetwork({ seed, nodes: ["a", "b", "c"], delay: [5, 50], loss: 0.3, duplication: 0.3 })
            const nodes = yield* Effect.forEach(["a", "b", "c"], (id) =>
              buildNode({ nodeId: id, settings: { gcIntervalMs: 1000, gcAgeMs: 0 }, cluster: network.layerFor(id) }))
            const start = yield* Clock.currentTimeMillis
            yield* TestClock.adjust(5000)
            const statuses = yield* Effect.forEach(nodes, (n) => n.gc.status)
            return {
              log: network.log.map((m) => [m.at - start, m.from, m.to, m.message._tag, m.fate]),
              commits: statuses.map((s) => [s.commitsIssued, s.roundsCompleted, (s.lastSafeTimestamp?.millis ?? start) - start])
            }
          })
        )
      const first = yield* run(7)
      const again = yield* run(7)
      expect(again).toEqual(first)
      expect(first.log.some((m) => m[4] === "lost")).toBe(true)
      expect(first.log.some((m) => m[4] === "duplicated")).toBe(true)
      expect(first.commits[0]![0]).toBeGreaterThan(0)
    }))

  it.scoped("crash and restart change the leader and the epoch", () =>
    Effect.gen(function* () {
      const network = yield* makeSimulatedNetwork({ seed: 1, nodes: ["b", "a", "c"] })
      expect(yield* network.membership).toEqual({ members: ["a", "b", "c"], leader: "a", epoch: 1 })
      yield* network.crash("b")
      expect(yield* network.membership).toEqual({ members: ["a", "c"], leader: "a", epoch: 1 })
      yield* network.crash("a")
      expect(yield* network.membership).toEqual({ members: ["c"], leader: "c", epoch: 2 })
      yield* network.restart("a")
      expect(yield* network.membership).toEqual({ members: ["a", "c"], leader: "a", epoch: 3 })
      // A crashed node's sends go nowhere.
      const cluster = yield* Cluster.pipe(Effect.provide(network.layerFor("b")))
      yield* cluster.send("a", { _tag: "GcReport", epoch: 3, minHlc: ts(1) })
      expect(network.log.at(-1)?.fate).toBe("crashed")
    }))
})
