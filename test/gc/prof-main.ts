import { Effect } from "effect"
import { runSeeds, seedRange, type Sim } from "./simulation.js"
const t0 = performance.now()
const f = runSeeds("p", seedRange(30), (seed) => ({ seed, nodes: ["n1","n2","n3","n4","n5"], faults: { delay: [1, 30] } }), (sim: Sim) => Effect.gen(function* () {
  for (let k = 0; k < 8; k++) { yield* sim.advanceTo(k * 1000 + 300); yield* sim.writeRound(3, 2) }
  yield* sim.finish
}))
console.log((globalThis as any).__tasks, (globalThis as any).__timers, f.length, ((performance.now() - t0) / 30).toFixed(1), "ms/seed")
