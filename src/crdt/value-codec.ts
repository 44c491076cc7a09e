/**
 * The encoding of stored LWW values (lww-store.ts keeps them serialized, off the JS heap, and decodes on
 * read). MessagePack, because values arrive as MessagePack and must read back as the client wrote them:
 * the same decoder options as the wire codec (maps as plain objects, 64-bit integers as numbers).
 * Object keys whose value is `undefined` are dropped (as the wire and the JSON store drop them); a bare
 * `undefined` round-trips as ext 0. Decoded like frames (crdt/msgpack.ts): no decoded string shares
 * storage with the arena's bytes.
 */
import { Packr, REUSE_BUFFER_MODE, RESET_BUFFER_MODE } from "msgpackr"
import { makeUnpackr, unpackDetached } from "./msgpack.js"

type PackrOptions = NonNullable<ConstructorParameters<typeof Packr>[0]>

const SKIP_UNDEFINED = { includes: (v: unknown): boolean => v === undefined }
const packr = new Packr({ useRecords: false, skipValues: SKIP_UNDEFINED } as PackrOptions & { skipValues: unknown })
const unpackr = makeUnpackr()

/** The encoder's own buffer, holding the last encoded value at `[start, end)`. */
export type EncodedValue = Buffer & { readonly start: number; readonly end: number }

/**
 * Encodes `value` into the encoder's buffer, which is returned and reused by the next call (copy the bytes
 * out right away). Reusing one buffer, with no view per value, keeps a write free of allocations here.
 */
export const encodeStoredValue = (value: unknown): EncodedValue =>
  packr.pack(value, REUSE_BUFFER_MODE | RESET_BUFFER_MODE) as unknown as EncodedValue

/** Decodes `bytes[start, end)`. */
const decodeStoredValue = (bytes: Uint8Array, start: number, end: number): unknown => unpackDetached(unpackr, bytes, { start, end })

/**
 * How stores describe one encoded value in a number: its byte length, with `JSON_TEXT` set when the bytes
 * are JSON text (UTF-8, as loaded from storage) rather than MessagePack. 0 = no value (a tombstone).
 */
export const JSON_TEXT = 0x80000000

/** The byte length of a value word. */
export const wordBytes = (word: number): number => word & ~JSON_TEXT

/** Decodes the value described by `word` starting at `buf[start]`. */
export const decodeValueWord = (buf: Buffer, start: number, word: number): unknown =>
  word & JSON_TEXT ? JSON.parse(buf.toString("utf8", start, start + wordBytes(word))) : decodeStoredValue(buf, start, start + word)
