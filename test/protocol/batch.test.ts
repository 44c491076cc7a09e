import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { decodeFrame, encodeMessage, MAX_BATCH_ITEMS, packClientBatch, unpackInboundBatch } from "../../src/protocol/index.js"

const OPTS = { maxDepth: 256 }

function records(data: Uint8Array, maxItems?: number): ReadonlyArray<Uint8Array> {
  const r = unpackInboundBatch(data, maxItems)
  if (r._tag !== "Ok") throw new Error("TooMany")
  return r.records
}

const frames = [
  encodeMessage({ type: "PING", timestamp: 1 }),
  encodeMessage({ type: "CLIENT_OP", payload: { id: "1", mapName: "m", key: "k", record: { value: 1, timestamp: { millis: 1, counter: 0, nodeId: "n" } } } }),
  encodeMessage({ type: "QUERY_UNSUB", payload: { queryId: "q" } })
]

describe("inbound BATCH (§1.5b)", () => {
  it("splits big-endian length-prefixed records in order", () => {
    const data = packClientBatch(frames)
    expect(data.length).toBe(frames.reduce((n, f) => n + 4 + f.length, 0))
    // big-endian prefix
    expect(Array.from(data.subarray(0, 4))).toEqual([0, 0, 0, frames[0]!.length])
    expect(records(data).map((r) => Array.from(r))).toEqual(frames.map((f) => Array.from(f)))
  })

  it("a truncated record or length prefix ends the loop; earlier records are kept", () => {
    const data = packClientBatch(frames)
    const lastStart = data.length - (4 + frames[2]!.length)
    expect(records(data.subarray(0, data.length - 1))).toHaveLength(2) // truncated last record
    expect(records(data.subarray(0, lastStart + 2))).toHaveLength(2) // truncated length prefix
    expect(records(data.subarray(0, 3))).toHaveLength(0)
    expect(records(new Uint8Array(0))).toHaveLength(0)
    // a length prefix claiming more than what is left
    const lying = new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3])
    expect(records(lying)).toHaveLength(0)
  })

  it("zero-length records are records (they then fail to decode and are skipped by the caller)", () => {
    const data = packClientBatch([new Uint8Array(0), frames[0]!])
    const rs = records(data)
    expect(rs).toHaveLength(2)
    expect(decodeFrame(rs[0]!, OPTS)._tag).toBe("Malformed")
    expect(decodeFrame(rs[1]!, OPTS)._tag).toBe("Ok")
  })

  it("a too-deep inner record is returned and flagged by decodeFrame; its neighbours decode", () => {
    const deep = new Uint8Array([0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, ...new Array<number>(300).fill(0x91), 0xc0])
    const rs = records(packClientBatch([frames[0]!, deep, frames[2]!]))
    expect(rs.map((r) => decodeFrame(r, OPTS)._tag)).toEqual(["Ok", "TooDeep", "Ok"])
  })

  it("more than 8192 records → TooMany; exactly 8192 is fine", () => {
    const tiny = encodeMessage({ type: "PING", timestamp: 1 })
    const exact = packClientBatch(new Array<Uint8Array>(MAX_BATCH_ITEMS).fill(tiny))
    expect(records(exact)).toHaveLength(8192)
    const over = packClientBatch(new Array<Uint8Array>(MAX_BATCH_ITEMS + 1).fill(tiny))
    expect(unpackInboundBatch(over)).toEqual({ _tag: "TooMany" })
    expect(unpackInboundBatch(packClientBatch(frames), 2)).toEqual({ _tag: "TooMany" })
  })

  it("property: pack ∘ unpack is the identity on record lists", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 20 }), (rs) => {
        expect(records(packClientBatch(rs)).map((r) => Array.from(r))).toEqual(rs.map((r) => Array.from(r)))
      }),
      { numRuns: 200 }
    )
  })

  it("property: arbitrary bytes never throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = unpackInboundBatch(bytes, 4)
        expect(["Ok", "TooMany"]).toContain(r._tag)
      }),
      { numRuns: 500 }
    )
  })
})
