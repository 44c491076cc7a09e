/**
 * Inbound client `BATCH` envelope [head] (protocol.md §1.5b): `data` is a concatenation of
 * `[uint32 big-endian length L][L bytes msgpack message]` records with no leading count. The declared
 * `count` is not trusted. Each record is decoded (depth-checked) by the caller exactly like a frame;
 * a record that fails to decode is skipped by the caller. Tessera never sends `BATCH` (§1.5a).
 */

export const MAX_BATCH_ITEMS = 8192

export type UnpackBatchResult =
  | { readonly _tag: "Ok"; readonly records: ReadonlyArray<Uint8Array> }
  | { readonly _tag: "TooMany" }

const TOO_MANY: UnpackBatchResult = { _tag: "TooMany" }

/**
 * Splits `data` into its records (zero-copy subarrays). A truncated length prefix or record ends the
 * loop (the records before it are kept). More than `maxItems` complete records → `TooMany`, the
 * whole frame is dropped by the caller (ERROR 413).
 */
export function unpackInboundBatch(data: Uint8Array, maxItems: number = MAX_BATCH_ITEMS): UnpackBatchResult {
  const records: Array<Uint8Array> = []
  const end = data.length
  let pos = 0
  while (pos + 4 <= end) {
    const len = data[pos]! * 0x1000000 + ((data[pos + 1]! << 16) | (data[pos + 2]! << 8) | data[pos + 3]!)
    pos += 4
    if (len > end - pos) break
    if (records.length === maxItems) return TOO_MANY
    records.push(data.subarray(pos, pos + len))
    pos += len
  }
  return { _tag: "Ok", records }
}

/** Builds a client → server `BATCH` `data` payload from encoded frames (for tests and tools). */
export function packClientBatch(frames: ReadonlyArray<Uint8Array>): Uint8Array {
  let size = 0
  for (const f of frames) size += 4 + f.length
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  let pos = 0
  for (const f of frames) {
    view.setUint32(pos, f.length, false)
    out.set(f, pos + 4)
    pos += 4 + f.length
  }
  return out
}
