/**
 * The server's one MessagePack decoder setup: every decode of client or peer bytes (frames, `POST /sync`
 * bodies, cluster change rows, stored values) goes through `unpackDetached`.
 *
 * msgpackr's main entry loads its native string extractor (msgpackr-extract) when the platform has it:
 * decoding strings natively is ~30 % faster than its JS path. The extractor hands out most strings as
 * slices of one block holding all short strings of the message, so one kept string would keep the whole
 * block alive: keeping one `{title, n}` value per 10-op frame, 200k frames held 450 MB against 28 MB
 * (V8's `--no-string-slices` does not change it). Anything may keep a decoded string (OR-map records,
 * the search index, tombstone key sets, live-query windows, an embedder's hooks), so `unpackDetached`
 * copies every string that can be a slice (13+ characters: V8 copies shorter substrings anyway) out of
 * its block, which still leaves decoding faster than the JS path. Whether the extractor is on is module
 * state shared by every ESM importer of msgpackr in the process, so this is checked per call.
 *
 * Binary values are copied too (`copyBuffers`): a view would keep the whole frame alive.
 */
import { isNativeAccelerationEnabled, Unpackr } from "msgpackr"

/** Maps as plain objects, 64-bit integers as numbers, binary copied; records stay off (the pre-scan rejects them). */
export const makeUnpackr = (): Unpackr =>
  new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number", copyBuffers: true })

/** V8 copies substrings shorter than this instead of slicing (`SlicedString::kMinLength`). */
const SLICE_MIN_LENGTH = 13

/** A copy of `s` that shares no storage: `" " + s` is flattened into a new string by the slice. */
const detach = (s: string): string => (" " + s).slice(1)

/** Replaces, in place, every string of `value` that may be a slice of an extraction block. */
export const detachStrings = (value: unknown): unknown => {
  if (typeof value === "string") return value.length >= SLICE_MIN_LENGTH ? detach(value) : value
  if (typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return value
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i]
      if (typeof v === "string" ? v.length >= SLICE_MIN_LENGTH : typeof v === "object" && v !== null) value[i] = detachStrings(v)
    }
    return value
  }
  const object = value as Record<string, unknown>
  for (const key in object) {
    const v = object[key]
    if (typeof v === "string" ? v.length >= SLICE_MIN_LENGTH : typeof v === "object" && v !== null) object[key] = detachStrings(v)
  }
  return value
}

/** `unpackr.unpack(bytes, range)` with no string sharing storage with the input. */
export const unpackDetached = (unpackr: Unpackr, bytes: Uint8Array, range?: { start: number; end: number }): unknown => {
  const value = range === undefined ? unpackr.unpack(bytes) : unpackr.unpack(bytes, range)
  return isNativeAccelerationEnabled ? detachStrings(value) : value
}
