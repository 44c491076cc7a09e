import { describe, expect, it, vi } from "vitest"
import * as fc from "fast-check"
import { decodeFrame, encodeMessageFast } from "../../src/protocol/codec.js"
import { encodeOpAck } from "../../src/protocol/op-ack.js"

/** The frame as the server's own decoder reads it (a strict, full MessagePack decode). */
const decoded = (frame: Uint8Array): unknown => {
  const result = decodeFrame(frame, { maxDepth: 256 })
  if (result._tag !== "Ok") throw new Error(`not decodable: ${result._tag}`)
  return result.value
}

const LEVELS = ["FIRE_AND_FORGET", "MEMORY", "APPLIED", "REPLICATED", "PERSISTED"] as const

// Lengths around every MessagePack header boundary, in ASCII, 2-byte, 3-byte and astral characters.
const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.constantFrom(31, 32, 255, 256, 65_535, 65_536).chain((n) => fc.constantFrom("a".repeat(n), "é".repeat(n / 2), "€".repeat(Math.ceil(n / 3))))
)

const result = fc.record(
  { opId: text, success: fc.boolean(), achievedLevel: fc.constantFrom(...LEVELS), error: text },
  { requiredKeys: ["opId", "success", "achievedLevel"] }
)

describe("encodeOpAck", () => {
  it("writes the bytes msgpackr writes for the same OP_ACK, for any ids, errors and batch sizes", () => {
    fc.assert(
      fc.property(text, fc.constantFrom(...LEVELS), fc.array(result, { maxLength: 40 }), (lastId, level, results) => {
        const message = { type: "OP_ACK", payload: { lastId, achievedLevel: level, results } }
        expect(decoded(encodeOpAck(lastId, level, results))).toEqual(message)
        expect(decoded(encodeOpAck(lastId, level, results))).toEqual(decoded(encodeMessageFast(message)))
      }),
      { numRuns: 300 }
    )
  })

  it("handles result arrays past the 16 and 65,536 header boundaries (the 65,536 one: array32), and each frame is its own buffer", () => {
    for (const n of [15, 16, 65_535, 65_536]) {
      const results = Array.from({ length: n }, (_, i) => ({ opId: String(i), success: true, achievedLevel: "MEMORY" }))
      const frame = encodeOpAck(String(n - 1), "MEMORY", results)
      expect(decoded(frame)).toEqual({ type: "OP_ACK", payload: { lastId: String(n - 1), achievedLevel: "MEMORY", results } })
    }
    const first = encodeOpAck("a", "MEMORY", [])
    const copy = Buffer.from(first)
    encodeOpAck("b".repeat(100), "PERSISTED", [{ opId: "x", success: false, achievedLevel: "APPLIED", error: "no" }])
    expect(Buffer.from(first).equals(copy)).toBe(true)
  })

  it("grows its buffer mid-result: an id that needs more than twice the buffer, followed by the rest of the result", async () => {
    // A fresh module (16 KiB buffer). Each id is > 2 × the buffer in UTF-8, so growth sizes the buffer to
    // the id exactly and what follows the id in the result (success, achievedLevel, error) needs room of its own.
    vi.resetModules()
    const { encodeOpAck } = await import("../../src/protocol/op-ack.js")
    for (const n of [30_000, 300_000]) {
      const opId = "€".repeat(n)
      const results = [{ opId, success: true, achievedLevel: "PERSISTED", error: "" }, { opId: "b", success: false, achievedLevel: "MEMORY" }]
      expect(decoded(encodeOpAck("", "FIRE_AND_FORGET", results))).toEqual({
        type: "OP_ACK",
        payload: { lastId: "", achievedLevel: "FIRE_AND_FORGET", results }
      })
    }
  })
})
