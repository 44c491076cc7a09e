/**
 * OP_ACK encoder for the write hot path: the ack of every CLIENT_OP / OP_BATCH, written straight into
 * bytes. It encodes `{ type: "OP_ACK", payload: { lastId, achievedLevel, results } }` as msgpackr
 * would, except that maps get the shortest header (fixmap where msgpackr writes map16), at a fraction
 * of the cost: no object walk, constant parts pre-encoded. A property test decodes both and compares.
 */

/** One op's entry in `OP_ACK.results` (protocol.md §3.0 OpResult). */
export interface AckResult {
  readonly opId: string
  readonly success: boolean
  readonly achievedLevel: string
  readonly error?: string
}

const ascii = (s: string): Array<number> => Array.from(s, (c) => c.charCodeAt(0))
const fixstr = (s: string): Array<number> => [0xa0 | s.length, ...ascii(s)]

// { type: "OP_ACK", payload: { lastId: … — a fixmap of 2, then the payload fixmap of 3.
const HEAD = Uint8Array.from([0x82, ...fixstr("type"), ...fixstr("OP_ACK"), ...fixstr("payload"), 0x83, ...fixstr("lastId")])
const ACHIEVED_LEVEL = Uint8Array.from(fixstr("achievedLevel"))
const RESULTS = Uint8Array.from(fixstr("results"))
const OP_ID = Uint8Array.from(fixstr("opId"))
const SUCCESS = Uint8Array.from(fixstr("success"))
const ERROR = Uint8Array.from(fixstr("error"))

let buf = Buffer.allocUnsafe(16 * 1024)
let pos = 0

const ensure = (extra: number): void => {
  if (pos + extra <= buf.length) return
  const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, pos + extra))
  buf.copy(bigger, 0, 0, pos)
  buf = bigger
}

const put = (bytes: Uint8Array): void => {
  buf.set(bytes, pos)
  pos += bytes.length
}

/** A MessagePack str with the shortest header, as msgpackr writes it. */
const putString = (s: string): void => {
  const n = s.length
  ensure(5 + n * 3)
  // Short ASCII (the usual op ids and levels): header and bytes in one pass.
  if (n < 32) {
    let i = 0
    for (; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) break
      buf[pos + 1 + i] = c
    }
    if (i === n) {
      buf[pos] = 0xa0 | n
      pos += 1 + n
      return
    }
  }
  const bytes = Buffer.byteLength(s, "utf8")
  const header = bytes < 32 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5
  buf.write(s, pos + header, bytes, "utf8")
  if (header === 1) buf[pos] = 0xa0 | bytes
  else if (header === 2) {
    buf[pos] = 0xd9
    buf[pos + 1] = bytes
  } else if (header === 3) {
    buf[pos] = 0xda
    buf.writeUInt16BE(bytes, pos + 1)
  } else {
    buf[pos] = 0xdb
    buf.writeUInt32BE(bytes, pos + 1)
  }
  pos += header + bytes
}

const putArrayHeader = (n: number): void => {
  ensure(5)
  if (n < 16) buf[pos++] = 0x90 | n
  else if (n < 0x10000) {
    buf[pos] = 0xdc
    buf.writeUInt16BE(n, pos + 1)
    pos += 3
  } else {
    buf[pos] = 0xdd
    buf.writeUInt32BE(n, pos + 1)
    pos += 5
  }
}

/** The OP_ACK frame; a fresh buffer the caller may keep (it is queued for sending). */
export const encodeOpAck = (lastId: string, achievedLevel: string, results: ReadonlyArray<AckResult>): Uint8Array => {
  pos = 0
  ensure(HEAD.length + ACHIEVED_LEVEL.length + RESULTS.length)
  put(HEAD)
  putString(lastId)
  ensure(ACHIEVED_LEVEL.length)
  put(ACHIEVED_LEVEL)
  putString(achievedLevel)
  ensure(RESULTS.length)
  put(RESULTS)
  putArrayHeader(results.length)
  // Room is reserved before each run of fixed bytes: a string may have grown the buffer to fit just itself.
  for (const r of results) {
    ensure(1 + OP_ID.length)
    buf[pos++] = r.error !== undefined ? 0x84 : 0x83
    put(OP_ID)
    putString(r.opId)
    ensure(SUCCESS.length + 1 + ACHIEVED_LEVEL.length)
    put(SUCCESS)
    buf[pos++] = r.success ? 0xc3 : 0xc2
    put(ACHIEVED_LEVEL)
    putString(r.achievedLevel)
    if (r.error !== undefined) {
      ensure(ERROR.length)
      put(ERROR)
      putString(r.error)
    }
  }
  const frame = Buffer.allocUnsafe(pos)
  buf.copy(frame, 0, 0, pos)
  return frame
}
