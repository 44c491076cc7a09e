/**
 * Iterative structural pre-scans for inbound frames (protocol.md §1.3, §1.6).
 *
 * They run before any decoder so that a hostile frame (deep nesting, msgpackr-specific extensions)
 * can neither exhaust the stack nor reach msgpackr's extension handlers. Both scans walk the bytes
 * once with an explicit counter stack, allocate nothing per value, and never throw.
 */

/** Result of {@link scanMsgpack}. */
export const ScanStatus = {
  /** One complete, well-formed msgpack value that fills the buffer exactly. */
  Ok: 0,
  /** Container nesting exceeds `maxDepth` (outermost container = depth 1). */
  TooDeep: 1,
  /** Truncated value, trailing bytes after the value, or the reserved byte 0xc1. */
  Malformed: 2,
  /** An extension type other than 0 (`undefined`): msgpackr records (0x72), dates (-1), etc. */
  DisallowedExt: 3
} as const
export type ScanStatus = (typeof ScanStatus)[keyof typeof ScanStatus]

let lastScanSawUndefined = false

/** Whether the last frame given to {@link scanMsgpack} contained ext type 0 (`undefined`). */
export function lastScanHadUndefined(): boolean {
  return lastScanSawUndefined
}

// Remaining child counts per open container; reused across calls (single-threaded).
let remainingStack = new Float64Array(258)

/**
 * Scans one msgpack value. Returns `TooDeep` as soon as depth `maxDepth + 1` is opened, even when the
 * rest of the frame is truncated. Any other structural problem is `Malformed`; ext types other
 * than 0 are `DisallowedExt`.
 */
export function scanMsgpack(buf: Uint8Array, maxDepth: number): ScanStatus {
  if (remainingStack.length < maxDepth + 2) remainingStack = new Float64Array(maxDepth + 2)
  const remaining = remainingStack
  const end = buf.length
  let pos = 0
  let depth = 0
  lastScanSawUndefined = false
  for (;;) {
    if (pos >= end) return ScanStatus.Malformed
    const token = buf[pos++]!
    // Container: children count, or -1 when the token is a scalar whose size `skip` is known.
    let children = -1
    let skip = 0
    if (token < 0x80) {
      // positive fixint
    } else if (token < 0x90) {
      children = (token - 0x80) * 2
    } else if (token < 0xa0) {
      children = token - 0x90
    } else if (token < 0xc0) {
      skip = token - 0xa0
    } else if (token >= 0xe0) {
      // negative fixint
    } else {
      switch (token) {
        case 0xc0: case 0xc2: case 0xc3:
          break
        case 0xc1:
          return ScanStatus.Malformed
        case 0xc4: case 0xd9: // bin8, str8
          if (pos + 1 > end) return ScanStatus.Malformed
          skip = buf[pos]!
          pos += 1
          break
        case 0xc5: case 0xda: // bin16, str16
          if (pos + 2 > end) return ScanStatus.Malformed
          skip = (buf[pos]! << 8) | buf[pos + 1]!
          pos += 2
          break
        case 0xc6: case 0xdb: // bin32, str32
          if (pos + 4 > end) return ScanStatus.Malformed
          skip = readU32(buf, pos)
          pos += 4
          break
        case 0xc7: case 0xc8: case 0xc9: { // ext8/16/32: length, type, data
          const lenBytes = token === 0xc7 ? 1 : token === 0xc8 ? 2 : 4
          if (pos + lenBytes + 1 > end) return ScanStatus.Malformed
          const len = lenBytes === 1 ? buf[pos]! : lenBytes === 2 ? (buf[pos]! << 8) | buf[pos + 1]! : readU32(buf, pos)
          pos += lenBytes
          if (buf[pos] !== 0) return ScanStatus.DisallowedExt
          lastScanSawUndefined = true
          skip = len + 1
          break
        }
        case 0xca: skip = 4; break // float32
        case 0xcb: skip = 8; break // float64
        case 0xcc: case 0xd0: skip = 1; break
        case 0xcd: case 0xd1: skip = 2; break
        case 0xce: case 0xd2: skip = 4; break
        case 0xcf: case 0xd3: skip = 8; break
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: { // fixext 1/2/4/8/16: type, data
          if (pos + 1 > end) return ScanStatus.Malformed
          if (buf[pos] !== 0) return ScanStatus.DisallowedExt
          lastScanSawUndefined = true
          skip = 1 + (1 << (token - 0xd4))
          break
        }
        case 0xdc: // array16
          if (pos + 2 > end) return ScanStatus.Malformed
          children = (buf[pos]! << 8) | buf[pos + 1]!
          pos += 2
          break
        case 0xdd: // array32
          if (pos + 4 > end) return ScanStatus.Malformed
          children = readU32(buf, pos)
          pos += 4
          break
        case 0xde: // map16
          if (pos + 2 > end) return ScanStatus.Malformed
          children = ((buf[pos]! << 8) | buf[pos + 1]!) * 2
          pos += 2
          break
        case 0xdf: // map32
          if (pos + 4 > end) return ScanStatus.Malformed
          children = readU32(buf, pos) * 2
          pos += 4
          break
      }
    }
    if (children >= 0) {
      if (depth >= maxDepth) return ScanStatus.TooDeep
      // Every child needs at least one byte: a declared count beyond the buffer is truncated.
      if (children > end - pos) return ScanStatus.Malformed
      if (children > 0) {
        remaining[++depth] = children
        continue
      }
    } else {
      pos += skip
      if (pos > end) return ScanStatus.Malformed
    }
    // A value is complete: close every container it completes.
    while (depth > 0 && --remaining[depth]! === 0) depth--
    if (depth === 0) return pos === end ? ScanStatus.Ok : ScanStatus.Malformed
  }
}

function readU32(buf: Uint8Array, pos: number): number {
  return buf[pos]! * 0x1000000 + ((buf[pos + 1]! << 16) | (buf[pos + 2]! << 8) | buf[pos + 3]!)
}

/**
 * Maximum `{`/`[` nesting of a JSON text, ignoring brackets inside strings. Stops counting (and
 * returns `maxDepth + 1`) as soon as the limit is crossed. Malformed JSON is left to `JSON.parse`.
 */
export function jsonDepthExceeds(text: string, maxDepth: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0, n = text.length; i < n; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return true
    } else if (c === 0x7d || c === 0x5d) {
      depth--
    }
  }
  return false
}
