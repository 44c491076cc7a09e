/**
 * In-suite fuzz pass (the long run is `node dist/bench/fuzz.js --frames 1000000`): random and mutated
 * frames of every message type from several pipelining connections against a live server, while an
 * honest client writes; afterwards a normal client works and every acknowledged write is intact.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runFuzz, sweepFrames } from "../../bench/fuzz.js"
import { type RunningServer, signToken, startServer } from "../support/server.js"
import { storedValue } from "./support.js"

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000)

describe("protocol fuzzing against a live server", () => {
  let server: RunningServer
  beforeAll(async () => {
    // Throttling would drop most frames before the parsers see them; the limits have their own tests.
    server = await startServer({ rateLimitPerSecond: 10_000_000, rateLimitBurst: 10_000_000, connectionRateLimit: 100_000 })
  })
  afterAll(async () => {
    await server.close()
  })

  it(`survives ${FRAMES} random and mutated frames with every acknowledged write intact`, async () => {
    const stats = await runFuzz({ url: server.url, frames: FRAMES, connections: 4, chunk: 1000, seed: 20_261_122, token: () => signToken({ sub: "fuzzer" }), ledgerWrites: 300, poolSize: 3000 })
    console.log(`fuzz: ${JSON.stringify(stats)}`)
    expect(stats.framesSent).toBe(FRAMES)
    let sweep = 0
    for (const _ of sweepFrames()) sweep++
    expect(stats.sweepFrames).toBe(sweep) // every field of every message type got every wrong type
    expect(stats.healthy).toBe(true)
    expect(stats.ledgerAcked).toBeGreaterThan(0)
    expect(stats.ledgerLost).toBe(0)
    expect(stats.internalErrors).toBe(0)
    expect(stats.stalledBarriers).toBe(0)
    // Most mutated frames are answered with ERROR 400 after authentication: the parsers were reached.
    expect(stats.errors["400"] ?? 0).toBeGreaterThan(FRAMES / 10)
    expect(await storedValue(server, "never-written", "k")).toBeUndefined()
  }, 120_000)
})
