/**
 * Frame codec (protocol.md §1.2, §1.3): depth-checked msgpack / JSON decoding of inbound frames and
 * msgpack encoding of outbound messages. Plain synchronous code: it runs once per frame.
 *
 * msgpackr keeps its extension table in module state shared by every Unpackr, so it cannot be told to
 * ignore its own extensions (records 0x72, structured clone, bundled strings, Dates, BigInt …).
 * Instead the pre-scan rejects every extension type other than 0 before msgpackr sees the frame:
 * only plain msgpack plus ext-0 `undefined` ever reaches the decoder. This is the one msgpackr
 * instance of the server (never the copy bundled in @effect/platform).
 *
 * Decoding goes through crdt/msgpack.ts (native string extraction where available, no decoded string
 * sharing storage with the frame).
 */
import { Packr } from "msgpackr"
import { makeUnpackr, unpackDetached } from "../crdt/msgpack.js"
import { jsonDepthExceeds, lastScanHadUndefined, scanMsgpack, ScanStatus } from "./scan.js"

export { jsonDepthExceeds, scanMsgpack, ScanStatus } from "./scan.js"

export const DEFAULT_MAX_DEPTH = 256

export type DecodeFrameResult =
  | { readonly _tag: "Ok"; readonly value: { readonly type: string; readonly [key: string]: unknown } }
  | { readonly _tag: "TooDeep" }
  | { readonly _tag: "Malformed"; readonly error: string }

const unpackr = makeUnpackr()

/**
 * Iterative container-depth check (outermost container = depth 1). Returns true only when the frame
 * nests deeper than `maxDepth`; malformed or truncated input that is not too deep returns false and
 * is left to the decoder (use {@link scanMsgpack} for the full status).
 */
export function maxDepthExceeded(buf: Uint8Array, maxDepth: number = DEFAULT_MAX_DEPTH): boolean {
  return scanMsgpack(buf, maxDepth) === ScanStatus.TooDeep
}

const TOO_DEEP: DecodeFrameResult = { _tag: "TooDeep" }

function malformed(error: string): DecodeFrameResult {
  return { _tag: "Malformed", error }
}

/**
 * Decodes one inbound frame. Binary frames are msgpack; string (text) frames are JSON. The depth
 * limit is checked before decoding in both cases. ext-0 `undefined` values become absent keys
 * (array elements become null). BigInt never escapes (int64/uint64 decode to numbers; the BigInt
 * extension is rejected). The top-level value must be a map with a string `type`.
 */
export function decodeFrame(data: Uint8Array | string, opts: { readonly maxDepth: number }): DecodeFrameResult {
  let value: unknown
  if (typeof data === "string") {
    if (jsonDepthExceeds(data, opts.maxDepth)) return TOO_DEEP
    try {
      // Rename `__proto__` keys as msgpackr does, so that copying decoded objects cannot swap a prototype.
      value = data.includes('"__proto__"') ? JSON.parse(data, renameProtoKey) : JSON.parse(data)
    } catch (e) {
      return malformed(`invalid JSON: ${errorText(e)}`)
    }
  } else {
    const status = scanMsgpack(data, opts.maxDepth)
    if (status !== ScanStatus.Ok) {
      if (status === ScanStatus.TooDeep) return TOO_DEEP
      return malformed(status === ScanStatus.DisallowedExt ? "msgpack extension type not allowed" : "malformed msgpack")
    }
    try {
      value = unpackDetached(unpackr, data)
    } catch (e) {
      return malformed(`malformed msgpack: ${errorText(e)}`)
    }
    if (lastScanHadUndefined()) value = stripUndefined(value)
  }
  if (!isMessageObject(value)) return malformed("frame is not a map with a string `type`")
  return { _tag: "Ok", value }
}

function renameProtoKey(this: Record<string, unknown>, key: string, value: unknown): unknown {
  if (key !== "__proto__") return value
  Object.defineProperty(this, "__proto_", { value, enumerable: true, writable: true, configurable: true })
  return undefined // removes the original key
}

function isMessageObject(value: unknown): value is { readonly type: string } {
  return (
    typeof value === "object" && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value) &&
    typeof (value as { type?: unknown }).type === "string"
  )
}

/**
 * Mirrors the client's pre-pass (§1.3 E3): removes object keys whose value is `undefined` and turns
 * `undefined` array elements (and a top-level `undefined`) into null. Only called for frames that
 * contained ext 0, so the common path pays nothing. Recursion depth is bounded by the pre-scan.
 */
export function stripUndefined(value: unknown): unknown {
  if (value === undefined) return null
  if (typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return value
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i]
      value[i] = item === undefined ? null : stripUndefined(item)
    }
    return value
  }
  const obj = value as Record<string, unknown>
  for (const key in obj) {
    const item = obj[key]
    if (item === undefined) delete obj[key]
    else if (typeof item === "object" && item !== null) stripUndefined(item)
  }
  return obj
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/*
 * Encoding. `skipValues` makes msgpackr drop object keys whose value is `undefined` (instead of
 * writing ext-0 `d4 00 00`, which the client decodes to `undefined`, D4), and `encodeUndefinedAsNil`
 * turns an `undefined` array element into nil, as the client's own pre-pass does. So a stray
 * `undefined` in an outbound object is omitted exactly as the protocol wants and can never reach
 * the wire as ext 0. Measured (Node 20, this machine): SERVER_EVENT 1.1 µs → 1.4 µs, 100-row
 * QUERY_RESP 32 µs → 43 µs, i.e. +25–35 % over msgpackr's default map16 path. The custom
 * `includes` is a little faster than `[undefined]`.
 * `encodeMessageFast` keeps msgpackr's default path for hot senders that build their objects
 * without `undefined`; it still never emits ext 0 (a stray `undefined` becomes nil).
 */
const SKIP_UNDEFINED = { includes: (v: unknown): boolean => v === undefined }

type PackrOptions = NonNullable<ConstructorParameters<typeof Packr>[0]>

const packr = new Packr({
  useRecords: false,
  encodeUndefinedAsNil: true,
  skipValues: SKIP_UNDEFINED
} as PackrOptions & { skipValues: unknown })

const fastPackr = new Packr({ useRecords: false, encodeUndefinedAsNil: true })

/** Encodes one outbound message as a binary msgpack frame; `undefined`-valued keys are omitted. */
export function encodeMessage(msg: object): Uint8Array {
  return packr.pack(msg) as unknown as Uint8Array
}

/**
 * Faster encoding for messages known to contain no `undefined` values (about 25 % cheaper).
 * A stray `undefined` becomes nil (never ext 0).
 */
export function encodeMessageFast(msg: object): Uint8Array {
  return fastPackr.pack(msg) as unknown as Uint8Array
}
