import { describe, expect, it } from "vitest"
import { TurnFlush } from "../../src/layers/turn-flush.js"

/** Resolves in the check phase of a later loop turn than every `setImmediate` queued before it. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

describe("TurnFlush", () => {
  it("runs every flush added in a turn once, after the turn's callbacks, in order", async () => {
    const flush = new TurnFlush((error) => {
      throw error
    })
    const log: Array<string> = []
    flush.add(() => log.push("a"))
    // Callbacks of the same turn (I/O, microtasks, nextTick) come first.
    process.nextTick(() => {
      log.push("tick")
      flush.add(() => log.push("b"))
    })
    await Promise.resolve()
    expect(log).not.toContain("a")
    await nextTurn()
    expect(log).toEqual(["tick", "a", "b"])
  })

  it("defers a flush added while flushing to the next turn and keeps both queues usable", async () => {
    const flush = new TurnFlush((error) => {
      throw error
    })
    const log: Array<string> = []
    flush.add(() => {
      log.push("first")
      flush.add(() => log.push("second"))
    })
    await nextTurn()
    expect(log).toEqual(["first"])
    await nextTurn()
    expect(log).toEqual(["first", "second"])
    for (let turn = 0; turn < 3; turn++) {
      flush.add(() => log.push(`turn ${turn}`))
      await nextTurn()
    }
    expect(log).toEqual(["first", "second", "turn 0", "turn 1", "turn 2"])
  })

  it("reports a throwing flush and still runs the others", async () => {
    const errors: Array<unknown> = []
    const flush = new TurnFlush((error) => errors.push(error))
    const ran: Array<number> = []
    flush.add(() => ran.push(1))
    flush.add(() => {
      throw new Error("socket gone")
    })
    flush.add(() => ran.push(3))
    await nextTurn()
    expect(ran).toEqual([1, 3])
    expect(errors).toHaveLength(1)
    expect(String(errors[0])).toContain("socket gone")
  })
})
