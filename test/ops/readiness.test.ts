import { Effect, Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Storage, StorageError } from "../../src/layers/Storage.js"
import { makeMemoryStorage } from "../../src/layers/storage/memory.js"
import { postSync, type RunningOpsServer, signToken, startOpsServer } from "./support.js"

/**
 * A durable-looking store whose writes fail between `breakDown()` and `heal()`. Each write attempt resolves the
 * current `attempted` promise, so tests wait on the attempt itself instead of sleeping.
 */
const makeFlakyStorage = () => {
  const inner = makeMemoryStorage()
  let failing = false
  let notify: () => void = () => {}
  let attempted = new Promise<void>((resolve) => (notify = resolve))
  const nextAttempt = () => {
    attempted = new Promise<void>((resolve) => (notify = resolve))
  }
  const layer = Layer.succeed(Storage, {
    ...inner,
    durable: true,
    write: (batch) =>
      Effect.suspend(() => {
        const result = failing ? Effect.fail(new StorageError({ message: "disk on fire" })) : inner.write(batch)
        // The write-behind records the outcome synchronously after this returns, before the test resumes.
        notify()
        return result
      })
  })
  return {
    layer,
    /** Resolves at the next write attempt after the call. */
    attempt: () => attempted,
    breakDown: () => {
      failing = true
      nextAttempt()
    },
    heal: () => {
      failing = false
      nextAttempt()
    }
  }
}

describe("readiness with failing storage", () => {
  let server: RunningOpsServer
  const flaky = makeFlakyStorage()
  beforeAll(async () => {
    server = await startOpsServer({}, flaky.layer)
  })
  afterAll(async () => {
    flaky.heal()
    await server.close()
  })

  const ready = async () => {
    const res = await fetch(`${server.httpUrl}/health/ready`)
    return { status: res.status, body: await res.json() }
  }

  it("is ready, turns 503 while storage writes fail, and recovers once they commit", async () => {
    expect(await ready()).toEqual({ status: 200, body: { ready: true } })

    flaky.breakDown()
    const now = Date.now()
    const reply = await postSync(server.httpUrl, {
      clientHlc: { millis: now, counter: 0, nodeId: "c" },
      operations: [{ id: "w1", mapName: "flaky", key: "k", record: { value: 1, timestamp: { millis: now, counter: 0, nodeId: "c" } } }]
    }, { token: await signToken() })
    expect(reply.body.ack).toEqual({ lastId: "w1", results: [{ opId: "w1", success: true, achievedLevel: "REPLICATED" }] })

    await flaky.attempt()
    expect(await ready()).toEqual({ status: 503, body: { ready: false, reason: "storage unavailable: disk on fire" } })
    const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/^topgun_storage_errors_total [1-9]\d*$/m)
    expect(metrics).toMatch(/^topgun_storage_queue_depth [1-9]\d*$/m)

    flaky.heal()
    await flaky.attempt()
    expect(await ready()).toEqual({ status: 200, body: { ready: true } })
    expect(await (await fetch(`${server.httpUrl}/metrics`)).text()).toMatch(/^topgun_storage_queue_depth 0$/m)
  })
})
