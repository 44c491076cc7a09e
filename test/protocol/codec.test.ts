import * as fc from "fast-check"
import { spawnSync } from "node:child_process"
import { isNativeAccelerationEnabled, Packr } from "msgpackr"
import { describe, expect, it } from "vitest"
import {
  decodeFrame,
  encodeMessage,
  encodeMessageFast,
  maxDepthExceeded,
  scanMsgpack,
  ScanStatus,
  unpackInboundBatch
} from "../../src/protocol/index.js"

const OPTS = { maxDepth: 256 }
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/[\s<>]/g, ""), "hex"))
const str = (s: string): string => Buffer.from(s).toString("hex")
/** msgpack fixstr header + bytes, as hex */
const fixstr = (s: string): string => (0xa0 + s.length).toString(16) + str(s)
/** The default msgpackr packer (map16 headers) = what the client emits */
const clientPackr = new Packr({ useRecords: false })

function ok(data: Uint8Array | string): Record<string, unknown> {
  const r = decodeFrame(data, OPTS)
  if (r._tag !== "Ok") throw new Error(`expected Ok, got ${JSON.stringify(r)}`)
  return r.value as Record<string, unknown>
}

/** `{type:"X", a: <k nested arrays around nil>}` */
function nestedFrame(arrays: number, inner = "c0"): Uint8Array {
  return hex("82" + fixstr("type") + fixstr("X") + fixstr("a") + "91".repeat(arrays) + inner)
}

function depthOf(u: unknown): number {
  if (Array.isArray(u)) return 1 + Math.max(0, ...u.map(depthOf))
  if (typeof u === "object" && u !== null) return 1 + Math.max(0, ...Object.values(u).map(depthOf))
  return 0
}

describe("Appendix A frames", () => {
  it("AUTH_REQUIRED", () => {
    expect(ok(hex("de0001 a474797065 ad415554485f5245515549524544"))).toEqual({ type: "AUTH_REQUIRED" })
  })

  it("OP_ACK", () => {
    const frame = hex("de0002 a474797065 a64f505f41434b a77061796c6f6164 de0001 a66c6173744964 a46f702d31")
    expect(ok(frame)).toEqual({ type: "OP_ACK", payload: { lastId: "op-1" } })
  })

  it("float64 epoch millis, negative fixint and ext-0 undefined (key absent)", () => {
    const body = "a174 cb4278bcfe56800000 a163 00 a166 cb3ff8000000000000 a16e ff a175 d40000"
    // as given: no `type`, so not a message
    expect(decodeFrame(hex("de0005 " + body), OPTS)._tag).toBe("Malformed")
    const value = ok(hex("de0006 " + body + fixstr("type") + fixstr("X")))
    expect(value).toEqual({ t: 1700000000000, c: 0, f: 1.5, n: -1, type: "X" })
    expect("u" in value).toBe(false)
  })

  it("server → client BATCH (little-endian count + lengths) decodes with `data` as bytes", () => {
    const pong = clientPackr.pack({ type: "PONG", timestamp: 1, serverTime: 2 })
    const authRequired = clientPackr.pack({ type: "AUTH_REQUIRED" })
    expect(pong.length).toBe(36)
    expect(authRequired.length).toBe(22)
    const frame = hex(
      "de0003 a474797065 a54241544348 a5636f756e74 02 a464617461 c446 02000000 24000000" + Buffer.from(pong).toString("hex") +
        "16000000" + Buffer.from(authRequired).toString("hex")
    )
    const value = ok(frame)
    expect(value.type).toBe("BATCH")
    expect(value.count).toBe(2)
    const data = value.data as Uint8Array
    expect(data).toBeInstanceOf(Uint8Array)
    expect(data.length).toBe(0x46)
    expect(ok(data.subarray(8, 44))).toEqual({ type: "PONG", timestamp: 1, serverTime: 2 })
  })

  it("client → server BATCH header (big-endian records, no count word)", () => {
    const inner = [clientPackr.pack({ type: "PING", timestamp: 5 }), clientPackr.pack({ type: "QUERY_UNSUB", payload: { queryId: "q" } })]
    let data = ""
    for (const m of inner) data += m.length.toString(16).padStart(8, "0") + Buffer.from(m).toString("hex")
    const len = (data.length / 2).toString(16).padStart(8, "0")
    const value = ok(hex("83 a474797065 a54241544348 a5636f756e74 01 a464617461 c6" + len + data))
    expect(value.type).toBe("BATCH")
    const unpacked = unpackInboundBatch(value.data as Uint8Array)
    if (unpacked._tag !== "Ok") throw new Error("TooMany")
    expect(unpacked.records.map((r) => ok(r))).toEqual([
      { type: "PING", timestamp: 5 },
      { type: "QUERY_UNSUB", payload: { queryId: "q" } }
    ])
  })
})

describe("decodeFrame numbers and undefined", () => {
  it("uint64 / int64 decode to numbers (never BigInt)", () => {
    const frame = hex(
      "84" + fixstr("type") + fixstr("X") + fixstr("u") + "cf0000018bcfe56800" + fixstr("i") + "d3ffffffffffffffff" +
        fixstr("m") + "cfffffffffffffffff"
    )
    const value = ok(frame)
    expect(value).toEqual({ type: "X", u: 1700000000000, i: -1, m: 18446744073709552000 })
    for (const v of [value.u, value.i, value.m]) expect(typeof v).toBe("number")
  })

  it("ext-0 undefined anywhere: keys removed, array elements become null", () => {
    const raw = clientPackr.pack({ type: "X", a: undefined, b: { c: undefined, d: 1 }, arr: [1, undefined, { e: undefined }] })
    expect(Buffer.from(raw).includes(Buffer.from([0xd4, 0, 0]))).toBe(true)
    const value = ok(raw)
    expect(value).toEqual({ type: "X", b: { d: 1 }, arr: [1, null, {}] })
    expect("a" in value).toBe(false)
    expect("c" in (value.b as object)).toBe(false)
  })

  it("ext-0 in the longer ext encodings is undefined too", () => {
    // fixext2 type 0 and ext8 (len 3) type 0
    const value = ok(hex("83" + fixstr("type") + fixstr("X") + fixstr("a") + "d5000000" + fixstr("b") + "c70300010203"))
    expect(value).toEqual({ type: "X" })
  })
})

describe("decodeFrame rejections", () => {
  const prefix = "82" + fixstr("type") + fixstr("X") + fixstr("v")
  const cases: Array<[string, string]> = [
    ["msgpackr record definition (fixext1 0x72)", "d47240"],
    ["msgpackr record (fixext2 0x72)", "d5724000"],
    ["timestamp / Date ext (-1)", "d6ff00000000"],
    ["BigInt ext 0x42", "d44201"],
    ["structured clone id 0x69", "d669000000019100"],
    ["Set ext 0x73", "d47300"],
    ["ext8 type 5", "c7010500"],
    ["ext32 type 0x62 bundled strings", "c900000001620000"],
    ["reserved byte 0xc1", "c1"]
  ]
  for (const [name, bytes] of cases) {
    it(`${name} → Malformed`, () => {
      const r = decodeFrame(hex(prefix + bytes), OPTS)
      expect(r._tag).toBe("Malformed")
    })
  }

  it("frames packed with msgpackr records (useRecords: true) → Malformed", () => {
    const recordsPackr = new Packr({ useRecords: true })
    const bytes = recordsPackr.pack({ type: "PING", timestamp: 1 })
    expect(decodeFrame(bytes, OPTS)._tag).toBe("Malformed")
  })

  it("a top-level Date or non-map value → Malformed", () => {
    expect(decodeFrame(clientPackr.pack(new Date()), OPTS)._tag).toBe("Malformed")
    expect(decodeFrame(clientPackr.pack([{ type: "X" }]), OPTS)._tag).toBe("Malformed")
    expect(decodeFrame(clientPackr.pack("PING"), OPTS)._tag).toBe("Malformed")
    expect(decodeFrame(clientPackr.pack({ type: 5 }), OPTS)._tag).toBe("Malformed")
    expect(decodeFrame(clientPackr.pack(Buffer.from("x")), OPTS)._tag).toBe("Malformed")
  })

  it("truncated frames and trailing bytes → Malformed", () => {
    const full = encodeMessage({ type: "PING", timestamp: 1700000000000 })
    for (let cut = 0; cut < full.length; cut++) expect(decodeFrame(full.subarray(0, cut), OPTS)._tag).toBe("Malformed")
    const trailing = new Uint8Array(full.length + 1)
    trailing.set(full)
    expect(decodeFrame(trailing, OPTS)._tag).toBe("Malformed")
  })

  it("a declared container or string length beyond the buffer → Malformed (no huge allocation)", () => {
    expect(decodeFrame(hex("dd ffffffff 01"), OPTS)._tag).toBe("Malformed")
    expect(decodeFrame(hex("df ffffffff a1 61"), OPTS)._tag).toBe("Malformed")
    expect(decodeFrame(hex("81 a474797065 db ffffffff 41"), OPTS)._tag).toBe("Malformed")
  })

  it("garbage bytes never throw and are never Ok unless they form a message", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = decodeFrame(bytes, OPTS)
        expect(["Ok", "TooDeep", "Malformed"]).toContain(r._tag)
        if (r._tag === "Ok") expect(typeof r.value.type).toBe("string")
      }),
      { numRuns: 2000 }
    )
    expect(decodeFrame(hex("ffffffffffff"), OPTS)._tag).toBe("Malformed")
    expect(decodeFrame(new Uint8Array(0), OPTS)._tag).toBe("Malformed")
  })
})

describe("depth limit", () => {
  it("256 levels pass, 257 are TooDeep (outermost map = 1), empty containers count", () => {
    expect(decodeFrame(nestedFrame(255), OPTS)._tag).toBe("Ok")
    expect(decodeFrame(nestedFrame(256), OPTS)._tag).toBe("TooDeep")
    expect(decodeFrame(nestedFrame(254, "90"), OPTS)._tag).toBe("Ok") // empty array at depth 256
    expect(decodeFrame(nestedFrame(255, "80"), OPTS)._tag).toBe("TooDeep") // empty map at depth 257
    expect(maxDepthExceeded(nestedFrame(255))).toBe(false)
    expect(maxDepthExceeded(nestedFrame(256))).toBe(true)
  })

  it("a 2,000-deep frame → TooDeep without throwing", () => {
    const frame = nestedFrame(2000)
    expect(() => decodeFrame(frame, OPTS)).not.toThrow()
    expect(decodeFrame(frame, OPTS)._tag).toBe("TooDeep")
    expect(maxDepthExceeded(frame)).toBe(true)
  })

  it("100,000 levels (maps and arrays, even truncated) do not blow the stack", () => {
    const arrays = nestedFrame(100_000)
    expect(decodeFrame(arrays, OPTS)._tag).toBe("TooDeep")
    const maps = hex("81a161".repeat(100_000) + "c0")
    expect(decodeFrame(maps, OPTS)._tag).toBe("TooDeep")
    expect(maxDepthExceeded(hex("91".repeat(100_000)), 256)).toBe(true) // truncated after the openings
    expect(maxDepthExceeded(arrays, 200_000)).toBe(false) // a larger limit: still iterative
  })

  it("malformed input that is not too deep reports false (left to the decoder)", () => {
    expect(maxDepthExceeded(hex("91 91"))).toBe(false)
    expect(scanMsgpack(hex("91 91"), 256)).toBe(ScanStatus.Malformed)
  })

  it("a respected custom limit", () => {
    expect(decodeFrame(nestedFrame(3), { maxDepth: 4 })._tag).toBe("Ok")
    expect(decodeFrame(nestedFrame(4), { maxDepth: 4 })._tag).toBe("TooDeep")
  })

  it("property: scan depth equals the value's container depth", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
        const value = JSON.parse(JSON.stringify(v)) as unknown
        const bytes = clientPackr.pack(value)
        const depth = depthOf(value)
        expect(scanMsgpack(bytes, Math.max(depth, 1))).toBe(ScanStatus.Ok)
        if (depth > 0) expect(scanMsgpack(bytes, depth - 1)).toBe(ScanStatus.TooDeep)
      }),
      { numRuns: 500 }
    )
  })
})

describe("JSON text frames", () => {
  it("are accepted like msgpack", () => {
    expect(ok('{"type":"PING","timestamp":1700000000000}')).toEqual({ type: "PING", timestamp: 1700000000000 })
  })

  it("are depth-checked before JSON.parse; brackets inside strings do not count", () => {
    expect(decodeFrame('{"type":"X","a":' + "[".repeat(300) + "]".repeat(300) + "}", OPTS)._tag).toBe("TooDeep")
    expect(decodeFrame('{"type":"X","a":' + "[".repeat(100_000), OPTS)._tag).toBe("TooDeep")
    const inString = '{"type":"X","s":"' + "[{".repeat(1000) + '\\"[["}'
    expect(ok(inString).s).toBe("[{".repeat(1000) + '"[[')
    expect(decodeFrame('{"type":"X","a":' + "[".repeat(255) + "]".repeat(255) + "}", OPTS)._tag).toBe("Ok")
    expect(decodeFrame('{"type":"X","a":' + "[".repeat(256) + "]".repeat(256) + "}", OPTS)._tag).toBe("TooDeep")
  })

  it("a `__proto__` key is renamed like msgpackr does (never an own `__proto__` property)", () => {
    const value = ok('{"type":"X","a":{"__proto__":{"polluted":true},"b":1}}')
    const a = value.a as Record<string, unknown>
    expect(Object.getPrototypeOf(a)).toBe(Object.prototype)
    expect(Object.prototype.hasOwnProperty.call(a, "__proto__")).toBe(false)
    expect(a.__proto_).toEqual({ polluted: true })
    expect(a.b).toBe(1)
    const viaMsgpack = ok(hex("82" + fixstr("type") + fixstr("X") + fixstr("__proto__") + "01"))
    expect(viaMsgpack).toEqual({ type: "X", __proto_: 1 })
  })

  it("invalid JSON or a non-message value → Malformed", () => {
    expect(decodeFrame("{not json", OPTS)._tag).toBe("Malformed")
    expect(decodeFrame("[1,2]", OPTS)._tag).toBe("Malformed")
    expect(decodeFrame('{"type":1}', OPTS)._tag).toBe("Malformed")
    expect(decodeFrame("", OPTS)._tag).toBe("Malformed")
  })
})

describe("encodeMessage", () => {
  it("omits absent optional fields: no nil, no ext-0 (QUERY_RESP without nextCursor)", () => {
    const msg = { type: "QUERY_RESP", payload: { queryId: "q1", results: [], nextCursor: undefined, hasMore: undefined } }
    const bytes = encodeMessage(msg)
    const buf = Buffer.from(bytes)
    expect(buf.includes(Buffer.from("nextCursor"))).toBe(false)
    expect(buf.includes(Buffer.from("hasMore"))).toBe(false)
    expect(buf.includes(0xc0)).toBe(false)
    expect(buf.includes(Buffer.from([0xd4, 0x00]))).toBe(false)
    expect(scanMsgpack(bytes, 256)).toBe(ScanStatus.Ok)
    expect(ok(bytes)).toEqual({ type: "QUERY_RESP", payload: { queryId: "q1", results: [] } })
  })

  it("an undefined array element becomes nil; explicit null stays nil", () => {
    const value = ok(encodeMessage({ type: "X", arr: [1, undefined], v: null }))
    expect(value).toEqual({ type: "X", arr: [1, null], v: null })
  })

  it("encodeMessageFast never emits ext-0 either", () => {
    const bytes = encodeMessageFast({ type: "X", a: undefined })
    expect(Buffer.from(bytes).includes(Buffer.from([0xd4, 0x00, 0x00]))).toBe(false)
    expect(ok(bytes)).toEqual({ type: "X", a: null })
  })

  it("encodes large integers as the client can read them and binary as bin", () => {
    const value = ok(encodeMessage({ type: "X", big: 1700000000000, neg: -5e12, bin: new Uint8Array([1, 2]) }))
    expect(value.big).toBe(1700000000000)
    expect(value.neg).toBe(-5e12)
    expect(Array.from(value.bin as Uint8Array)).toEqual([1, 2])
  })

  it("property: JSON-like messages round-trip through encode → decodeFrame", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 4 })), (body) => {
        // msgpackr renames a `__proto__` key (prototype-pollution guard): keep such keys out
        const msg = JSON.parse(JSON.stringify({ ...body, type: "X" }), (k, v: unknown) => (k === "__proto__" ? undefined : v)) as object
        expect(ok(encodeMessage(msg))).toEqual(msg)
        expect(ok(JSON.stringify(msg))).toEqual(msg)
      }),
      { numRuns: 300 }
    )
  })
})

describe("decoded strings and binaries share no storage with their frame", () => {
  /**
   * Decodes `frames` 10-op frames (the bench's shape) in a fresh process with the server's modules, keeping
   * per frame one value, one key and one node id (13+ characters: the strings V8 would slice) and a stored
   * value read back; prints the heap kept per frame. Without the detaching copy, a kept slice of msgpackr's
   * native extractor holds its frame's whole string block.
   */
  const keptPerFrame = () => {
    const dist = (path: string) => JSON.stringify(new URL(`../../dist/src/${path}`, import.meta.url).href)
    const script = `
      const { decodeFrame } = await import(${dist("protocol/codec.js")})
      const { decodeValueWord } = await import(${dist("crdt/value-codec.js")})
      const { isNativeAccelerationEnabled, Packr } = await import("msgpackr")
      const packr = new Packr({ useRecords: false })
      const frames = Array.from({ length: 20000 }, (_, b) => packr.pack({ type: "OP_BATCH", payload: { ops: Array.from({ length: 10 }, (_, j) => ({
        id: String(j), mapName: "bench", key: "user:" + b + ":" + j + "-padding", opType: "PUT",
        record: { value: { title: "Quarterly report draft " + b, n: j }, timestamp: { millis: 1, counter: j, nodeId: "node-" + b + "-0123456789abcdef" } }
      })) } }))
      const stored = Buffer.from(packr.pack({ title: "a stored value read back from the arena", n: 1 }))
      globalThis.gc(); const before = process.memoryUsage().heapUsed
      const kept = []
      for (const frame of frames) {
        const op = decodeFrame(frame, { maxDepth: 256 }).value.payload.ops[3]
        kept.push(op.record.value, op.key, op.record.timestamp.nodeId, decodeValueWord(stored, 0, stored.length))
      }
      frames.length = 0
      globalThis.gc()
      process.stdout.write(JSON.stringify({ native: isNativeAccelerationEnabled, perFrame: (process.memoryUsage().heapUsed - before) / 20000, kept: kept.length }))
    `
    const out = spawnSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], { cwd: new URL("../..", import.meta.url), encoding: "utf8" })
    expect(out.stderr).toBe("")
    return JSON.parse(out.stdout) as { native: boolean; perFrame: number; kept: number }
  }

  // Without msgpackr-extract (an optional, prebuilt dependency) strings are decoded in JS and share nothing.
  it.skipIf(!isNativeAccelerationEnabled)("keeps what it keeps of a frame, not the frame's string block", () => {
    const result = keptPerFrame()
    expect(result.native).toBe(true) // the slicing decoder is in use in the child too
    expect(result.kept).toBe(80_000)
    expect(result.perFrame).toBeLessThan(1000) // measured ~350 B; ~2,050 B when the strings are not detached
  })

  it("binary values are copies, not views of the frame", () => {
    const frame = new Packr({ useRecords: false }).pack({ type: "X", payload: { data: new Uint8Array([1, 2, 3]) } })
    const decoded = decodeFrame(frame, { maxDepth: 256 })
    const data = decoded._tag === "Ok" ? (decoded.value as any).payload.data as Uint8Array : undefined
    expect(Array.from(data!)).toEqual([1, 2, 3])
    expect(data!.buffer).not.toBe(frame.buffer)
  })
})
