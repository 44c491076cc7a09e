/**
 * Protocol fuzzer: random and mutated frames against a live server, then a normal client must still work
 * and every acknowledged write must be intact.
 *
 *   node dist/bench/fuzz.js [--frames N] [--connections C] [--seed S] [--url ws://…]
 *
 * Without `--url` it starts Tessera (dist/src/programs/cli.js) as a child process with limits raised so
 * the fuzzer is not throttled (rate limits are tested separately). The suite runs a shorter pass of the
 * same engine (test/hardening/fuzz.test.ts).
 *
 * Frames are derived from one valid sample per client message type (test/protocol/samples.ts):
 * structural mutations (wrong types in every field, deleted / unknown keys, swapped `type`, huge strings,
 * deep nesting, big containers), byte mutations of the encoding (truncation, bit flips, oversized length
 * headers, disallowed extension types, trailing garbage), random bytes, JSON text frames and inbound
 * BATCH envelopes with corrupted records. Several connections pipeline frames in chunks and only wait for
 * a barrier per chunk (never per frame).
 */
import { writeFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { Packr, Unpackr } from "msgpackr"
import WebSocket from "ws"
import { packClientBatch } from "../src/protocol/batch.js"
import { clientSamples } from "../test/protocol/samples.js"
import { DEV_JWT_SECRET, signToken } from "./lib/client.js"
import { spawnServer, tesseraCliPath } from "./lib/server-process.js"

/** mulberry32: small, fast, seedable. */
export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  int(n: number): number {
    return Math.floor(this.next() * n)
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<T>(items: ReadonlyArray<T>): T {
    return items[this.int(items.length)]!
  }
}

const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

const SAMPLES: ReadonlyArray<object> = Object.values(clientSamples)
const TYPES: ReadonlyArray<string> = Object.keys(clientSamples)
const SAMPLE_FRAMES: ReadonlyArray<Uint8Array> = SAMPLES.map((s) => packr.pack(s))

const randomString = (rng: Rng, max: number): string => {
  const n = rng.int(max + 1)
  let s = ""
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.chance(0.9) ? 32 + rng.int(95) : rng.int(0xffff))
  return s
}

const nest = (depth: number, leaf: unknown, asMap: boolean): unknown => {
  let v = leaf
  for (let i = 0; i < depth; i++) v = asMap ? { d: v } : [v]
  return v
}

/** A value of the wrong shape for whatever field it replaces. Big ones are rare. */
const evilValue = (rng: Rng): unknown => {
  switch (rng.int(24)) {
    case 0: return null
    case 1: return rng.chance(0.5)
    case 2: return rng.pick([0, -1, 1.5, -0.0, 2 ** 53 + 2, -(2 ** 31) - 1, 2 ** 32, 2 ** 64, Number.MAX_VALUE])
    case 3: return rng.pick([NaN, Infinity, -Infinity])
    case 4: return ""
    case 5: return randomString(rng, 40)
    case 6: return rng.pick(["__proto__", "constructor", "prototype", "$sys/config", "*", "{userId}", "\u0000", "\ud800", "%", "(a+)+$", ".*.*.*.*"])
    case 7: return rng.chance(0.02) ? "x".repeat(256 * 1024 + rng.int(768 * 1024)) : "y".repeat(1 + rng.int(8192))
    case 8: return []
    case 9: return [rng.int(10), "a", null, {}]
    case 10: return {}
    case 11: return { __proto__: { admin: true }, roles: ["ADMIN"] }
    case 12: return nest(rng.chance(0.5) ? 100 + rng.int(150) : 250 + rng.int(60), 0, rng.chance(0.5))
    case 13: return rng.chance(0.05) ? Array.from({ length: 20_000 }, (_, i) => i) : Array.from({ length: rng.int(200) }, () => rng.int(100))
    case 14: {
      const o: Record<string, number> = {}
      const n = rng.chance(0.05) ? 5_000 : rng.int(50)
      for (let i = 0; i < n; i++) o[`k${i}`] = i
      return o
    }
    case 15: return new Uint8Array(Array.from({ length: rng.int(64) }, () => rng.int(256)))
    case 16: return undefined // msgpackr encodes it as ext 0 (allowed: treated as absent)
    case 17: return { millis: rng.pick([-1, 1e300, "now", NaN]), counter: rng.pick([-5, 1.5, "x"]), nodeId: rng.pick([1, null, ""]) }
    case 18: return { op: rng.pick(["and", "or", "not", "regex", "like", "eq", "bogus"]), attribute: evilValueShallow(rng), value: evilValueShallow(rng), children: rng.chance(0.5) ? [evilValueShallow(rng)] : evilValueShallow(rng) }
    case 19: return rng.pick(TYPES)
    case 20: return rng.pick(["PUT", "REMOVE", "OR_ADD", "OR_REMOVE", "FIRE_AND_FORGET", "PERSISTED", "MEMORY", "APPLIED", "REPLICATED"])
    case 21: return -rng.int(1e9)
    case 22: return rng.int(1e12)
    default: return randomString(rng, 8)
  }
}
const evilValueShallow = (rng: Rng): unknown => rng.pick([null, 1, -1, "a", "", [], {}, true, NaN, "%a%", "^(a|aa)+$"])

/** Every (parent, key) position in a value, for picking what to mutate. */
const positions = (root: unknown): Array<{ parent: Record<string, unknown> | unknown[]; key: string | number }> => {
  const out: Array<{ parent: Record<string, unknown> | unknown[]; key: string | number }> = []
  const walk = (v: unknown, depth: number) => {
    if (depth > 12 || v === null || typeof v !== "object" || v instanceof Uint8Array) return
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length && i < 50; i++) {
        out.push({ parent: v, key: i })
        walk(v[i], depth + 1)
      }
    } else {
      for (const k of Object.keys(v)) {
        out.push({ parent: v as Record<string, unknown>, key: k })
        walk((v as Record<string, unknown>)[k], depth + 1)
      }
    }
  }
  walk(root, 0)
  return out
}

const clone = <T>(v: T): T => structuredClone(v)

/** A sample with 1–3 structural mutations (wrong types, deleted / unknown keys, swapped type). */
const mutateObject = (rng: Rng): Record<string, unknown> => {
  const msg = clone(rng.pick(SAMPLES)) as Record<string, unknown>
  const count = 1 + rng.int(3)
  for (let m = 0; m < count; m++) {
    const spots = positions(msg)
    if (spots.length === 0) {
      msg.type = rng.pick(TYPES)
      continue
    }
    const spot = rng.pick(spots)
    const action = rng.int(10)
    if (action === 0 && !Array.isArray(spot.parent)) delete (spot.parent as Record<string, unknown>)[spot.key as string]
    else if (action === 1 && !Array.isArray(spot.parent)) (spot.parent as Record<string, unknown>)[randomString(rng, 12) || "extra"] = evilValue(rng)
    else if (action === 2) msg.type = rng.chance(0.5) ? rng.pick(TYPES) : rng.chance(0.5) ? randomString(rng, 20) : evilValue(rng)
    else (spot.parent as Record<string | number, unknown>)[spot.key] = evilValue(rng)
  }
  return msg
}

/** Byte-level damage to an encoded frame. */
const mutateBytes = (rng: Rng, frame: Uint8Array): Uint8Array => {
  const bytes = Buffer.from(frame)
  switch (rng.int(9)) {
    case 0: return bytes.subarray(0, rng.int(bytes.length)) // truncated
    case 1: { // bit flips
      for (let i = 0, n = 1 + rng.int(8); i < n; i++) bytes[rng.int(bytes.length)] ^= 1 << rng.int(8)
      return bytes
    }
    case 2: { // an oversized length header (array32 / map32 / str32 / bin32) at a random position
      const at = rng.int(bytes.length)
      const header = Buffer.from([rng.pick([0xdd, 0xdf, 0xdb, 0xc6, 0xc9]), 0xff, 0xff, 0xff, rng.int(256)])
      return Buffer.concat([bytes.subarray(0, at), header, bytes.subarray(at)])
    }
    case 3: { // a disallowed extension (msgpackr records 0x72, timestamps -1, structured clone)
      const at = rng.int(bytes.length)
      const ext = Buffer.from([0xd4, rng.pick([0x72, 0xff, 0x74, 0x78, 0x01]), 0x00])
      return Buffer.concat([bytes.subarray(0, at), ext, bytes.subarray(at + 1)])
    }
    case 4: return Buffer.concat([bytes, Buffer.from(Array.from({ length: 1 + rng.int(16) }, () => rng.int(256)))]) // trailing garbage
    case 5: return Buffer.concat([Buffer.alloc(200 + rng.int(200), 0x91), bytes]) // deep nesting prefix
    case 6: { // random bytes inserted
      const at = rng.int(bytes.length)
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(Array.from({ length: 1 + rng.int(8) }, () => rng.int(256))), bytes.subarray(at)])
    }
    case 7: { // reserved byte 0xc1
      bytes[rng.int(bytes.length)] = 0xc1
      return bytes
    }
    default: return new Uint8Array(0)
  }
}

/** One fuzz frame: binary unless `text` is set. */
export interface FuzzFrame {
  readonly data: Uint8Array | string
  readonly text: boolean
}

const safePack = (v: unknown): Uint8Array => {
  try {
    return packr.pack(v)
  } catch {
    return packr.pack({ type: "UNPACKABLE" })
  }
}

/** Generates the next frame. */
export const nextFrame = (rng: Rng): FuzzFrame => {
  const kind = rng.int(100)
  if (kind < 8) return { data: rng.pick(SAMPLE_FRAMES), text: false } // valid
  if (kind < 48) return { data: safePack(mutateObject(rng)), text: false }
  if (kind < 78) return { data: mutateBytes(rng, rng.chance(0.5) ? rng.pick(SAMPLE_FRAMES) : safePack(mutateObject(rng))), text: false }
  if (kind < 84) return { data: new Uint8Array(Array.from({ length: rng.int(96) }, () => rng.int(256))), text: false }
  if (kind < 90) {
    let json: string
    try {
      json = JSON.stringify(mutateObject(rng)) ?? "null"
    } catch {
      json = "{"
    }
    if (rng.chance(0.3)) json = json.slice(0, rng.int(json.length))
    if (rng.chance(0.1)) json = "[".repeat(300 + rng.int(100))
    return { data: json, text: true }
  }
  // Inbound BATCH with valid, mutated and corrupted records; sometimes a broken envelope.
  const records = Array.from({ length: 1 + rng.int(12) }, () => {
    const r = rng.int(3)
    return r === 0 ? rng.pick(SAMPLE_FRAMES) : r === 1 ? safePack(mutateObject(rng)) : mutateBytes(rng, rng.pick(SAMPLE_FRAMES))
  })
  let data = packClientBatch(records)
  if (rng.chance(0.3)) data = mutateBytes(rng, data)
  const envelope: Record<string, unknown> = { type: "BATCH", count: rng.chance(0.5) ? records.length : evilValue(rng), data }
  if (rng.chance(0.1)) envelope.data = evilValue(rng)
  return { data: safePack(envelope), text: false }
}

/** The wrong-typed values the exhaustive sweep puts into every field. */
const SWEEP_VALUES: ReadonlyArray<unknown> = [
  null, true, 0, -1, 1.5, NaN, 2 ** 64, "", "str", [], [1, "a"], {}, { nested: { x: 1 } },
  undefined, "z".repeat(64 * 1024), nest(300, 0, false)
]

/**
 * Every field of every sample message replaced by each of `SWEEP_VALUES` (one field at a time), and every
 * field deleted: the deterministic part of the fuzz run, sent before the random frames.
 */
export function* sweepFrames(): Generator<FuzzFrame> {
  for (const sample of SAMPLES) {
    const count = positions(sample).length
    for (let i = 0; i < count; i++) {
      for (let v = 0; v <= SWEEP_VALUES.length; v++) {
        const msg = clone(sample)
        const spot = positions(msg)[i]!
        if (v === SWEEP_VALUES.length) {
          if (Array.isArray(spot.parent)) spot.parent.splice(spot.key as number, 1)
          else delete (spot.parent as Record<string, unknown>)[spot.key as string]
        } else {
          (spot.parent as Record<string | number, unknown>)[spot.key] = SWEEP_VALUES[v]
        }
        yield { data: safePack(msg), text: false }
      }
    }
  }
}

/**
 * Frames to send: fresh from `nextFrame`, or (with `poolSize`) drawn from a pool of generated frames with
 * a fresh cheap byte mutation on about half of the draws. The pool keeps the in-suite run within its time
 * budget, since the fuzzer shares the event loop with the in-process server there.
 */
export const frameSource = (rng: Rng, poolSize: number): (() => FuzzFrame) => {
  if (poolSize <= 0) return () => nextFrame(rng)
  const pool = Array.from({ length: poolSize }, () => nextFrame(rng))
  return () => {
    const frame = rng.pick(pool)
    if (frame.text || rng.chance(0.5)) return frame
    const bytes = frame.data as Uint8Array
    if (bytes.length === 0) return frame
    switch (rng.int(3)) {
      case 0: return { data: bytes.subarray(0, rng.int(bytes.length)), text: false }
      case 1: {
        const copy = Buffer.from(bytes)
        copy[rng.int(copy.length)] ^= 1 << rng.int(8)
        return { data: copy, text: false }
      }
      default: return { data: mutateBytes(rng, bytes), text: false }
    }
  }
}

export interface FuzzOptions {
  readonly url: string
  readonly frames: number
  readonly connections: number
  readonly seed: number
  /** Token for the authenticated fuzz connections; the last connection stays unauthenticated. */
  readonly token: () => Promise<string>
  /** Frames per pipelined chunk before a barrier. */
  readonly chunk?: number
  /** Generated frames per connection to draw from (0 = every frame freshly generated). */
  readonly poolSize?: number
  /** Acknowledged writes made by an honest client while the fuzzers run. */
  readonly ledgerWrites?: number
  readonly onProgress?: (sent: number) => void
}

export interface FuzzStats {
  framesSent: number
  /** Frames of the exhaustive every-field sweep (part of framesSent). */
  sweepFrames: number
  bytesSent: number
  elapsedMs: number
  connectionsOpened: number
  /** Server closes of fuzz connections by code (e.g. 4001 after a mutated AUTH, 1008 decode budget). */
  closes: Record<string, number>
  /** ERROR replies by code. */
  errors: Record<string, number>
  /** ERROR 500 "Internal Error" replies: a handler threw (a server defect). */
  internalErrors: number
  /** Barriers that did not come back in time (the connection is dropped and reopened). */
  stalledBarriers: number
  ledgerAcked: number
  /** Acknowledged ledger writes missing or changed in the final read (must be 0). */
  ledgerLost: number
  /** A fresh client authenticated, wrote and read back after the run. */
  healthy: boolean
}

type Inbound = { readonly type: string; readonly [k: string]: any }

/** A minimal client: decodes every inbound frame, lets callers wait for one matching a predicate. */
class Peer {
  readonly waiters = new Set<{ pred: (m: Inbound) => boolean; resolve: (m: Inbound | undefined) => void }>()
  closed: { code: number } | undefined
  private readonly onClosed: Array<() => void> = []
  constructor(readonly ws: WebSocket, private readonly onMessage: (m: Inbound) => void) {
    ws.on("message", (data, isBinary) => {
      let m: Inbound
      try {
        m = (isBinary ? unpackr.unpack(data as Buffer) : JSON.parse(String(data))) as Inbound
      } catch {
        return
      }
      this.onMessage(m)
      for (const w of this.waiters) {
        if (w.pred(m)) {
          this.waiters.delete(w)
          w.resolve(m)
        }
      }
    })
    ws.on("close", (code) => {
      this.closed = { code }
      for (const w of this.waiters) w.resolve(undefined)
      this.waiters.clear()
      for (const f of this.onClosed) f()
    })
    ws.on("error", () => {})
  }
  static open(url: string, onMessage: (m: Inbound) => void): Promise<Peer | undefined> {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, { maxPayload: 256 * 1024 * 1024 })
      const peer = new Peer(ws, onMessage)
      ws.once("open", () => resolve(peer))
      ws.once("error", () => resolve(undefined))
      ws.once("close", () => resolve(undefined))
    })
  }
  /** Resolves with the first matching message, or undefined on close / timeout. */
  wait(pred: (m: Inbound) => boolean, timeoutMs: number): Promise<Inbound | undefined> {
    if (this.closed !== undefined) return Promise.resolve(undefined)
    return new Promise((resolve) => {
      const waiter = {
        pred,
        resolve: (m: Inbound | undefined) => {
          clearTimeout(timer)
          resolve(m)
        }
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        resolve(undefined)
      }, timeoutMs)
      this.waiters.add(waiter)
    })
  }
  send(frame: Uint8Array | string, text = false): void {
    if (this.closed === undefined && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame, { binary: !text })
  }
  close(): Promise<void> {
    if (this.closed !== undefined) return Promise.resolve()
    return new Promise((resolve) => {
      this.onClosed.push(resolve)
      this.ws.close()
    })
  }
}

const authenticate = async (peer: Peer, token: string): Promise<boolean> => {
  const ack = peer.wait((m) => m.type === "AUTH_ACK" || m.type === "AUTH_FAIL", 10_000)
  peer.send(packr.pack({ type: "AUTH", token }))
  return (await ack)?.type === "AUTH_ACK"
}

let barrierSeq = 0

/** Runs the fuzzers and the honest ledger client; then checks the server with a fresh client. */
export const runFuzz = async (options: FuzzOptions): Promise<FuzzStats> => {
  const chunk = options.chunk ?? 200
  const stats: FuzzStats = {
    framesSent: 0, sweepFrames: 0, bytesSent: 0, elapsedMs: 0, connectionsOpened: 0, closes: {}, errors: {}, internalErrors: 0,
    stalledBarriers: 0, ledgerAcked: 0, ledgerLost: 0, healthy: false
  }
  const token = await options.token()
  const started = performance.now()
  const countInbound = (m: Inbound) => {
    if (m.type !== "ERROR") return
    const code = String(m.payload?.code)
    stats.errors[code] = (stats.errors[code] ?? 0) + 1
    if (m.payload?.code === 500 && m.payload?.message === "Internal Error") stats.internalErrors++
  }
  let remaining = options.frames
  const sweep = sweepFrames()
  let sweepDone = false
  /** The sweep first (shared by the authenticated connections), then random frames. */
  const nextOf = (random: () => FuzzFrame, authed: boolean): FuzzFrame => {
    if (!sweepDone && authed) {
      const r = sweep.next()
      if (r.done !== true) {
        stats.sweepFrames++
        return r.value
      }
      sweepDone = true
    }
    return random()
  }
  let ledgerWrite = (): void => {}
  const worker = async (index: number) => {
    const rng = new Rng(options.seed * 1000 + index)
    const next = frameSource(rng, options.poolSize ?? 0)
    const authed = index < options.connections - 1 || options.connections === 1
    let refusals = 0
    while (remaining > 0) {
      const peer = await Peer.open(options.url, countInbound)
      if (peer === undefined) {
        // Refused (e.g. 1013 under a connection-rate limit): back off briefly, client-side pacing only.
        if (++refusals > 50) throw new Error("fuzz: the server keeps refusing connections")
        await new Promise((r) => setTimeout(r, 50 * refusals))
        continue
      }
      stats.connectionsOpened++
      if (authed && !(await authenticate(peer, token))) {
        if (peer.closed === undefined) await peer.close()
        continue
      }
      while (remaining > 0 && peer.closed === undefined) {
        const n = Math.min(chunk, remaining)
        remaining -= n
        for (let i = 0; i < n; i++) {
          const frame = nextOf(next, authed)
          // An unauthenticated connection that sends a mutated AUTH is closed 4001; keep most of them going.
          peer.send(frame.data, frame.text)
          stats.framesSent++
          stats.bytesSent += typeof frame.data === "string" ? frame.data.length : frame.data.byteLength
        }
        options.onProgress?.(stats.framesSent)
        ledgerWrite()
        // Barrier: an unknown type goes through the ordered inbound queue (authenticated), PING is answered on receipt.
        const id = `__FUZZ_BARRIER_${++barrierSeq}__`
        const reply = authed
          ? peer.wait((m) => m.type === "ERROR" && typeof m.payload?.message === "string" && m.payload.message.includes(id), 30_000)
          : peer.wait((m) => m.type === "PONG" && m.timestamp === barrierSeq, 30_000)
        peer.send(packr.pack(authed ? { type: id } : { type: "PING", timestamp: barrierSeq }))
        if ((await reply) === undefined && peer.closed === undefined) {
          stats.stalledBarriers++
          await peer.close()
        }
      }
      if (peer.closed !== undefined) {
        const code = String(peer.closed.code)
        stats.closes[code] = (stats.closes[code] ?? 0) + 1
      } else {
        await peer.close()
      }
    }
  }

  // The honest client: writes to its own map while the fuzzers run (one write per fuzz chunk) and
  // remembers what was acknowledged.
  const ledgerMap = `fuzz-ledger-${options.seed}-${Date.now()}`
  const acked = new Map<string, number>()
  const pendingAcks: Array<Promise<void>> = []
  const ledgerLimit = options.ledgerWrites ?? 200
  let ledgerSeq = 0
  const ledgerPeer = await Peer.open(options.url, () => {})
  if (ledgerPeer === undefined || !(await authenticate(ledgerPeer, token))) throw new Error("fuzz: ledger client could not connect")
  ledgerWrite = () => {
    if (ledgerSeq >= ledgerLimit || ledgerPeer.closed !== undefined) return
    const i = ledgerSeq++
    const id = `L${i}`
    const now = Date.now()
    pendingAcks.push(ledgerPeer.wait((m) => m.type === "OP_ACK" && m.payload?.lastId === id, 60_000).then((reply) => {
      if (reply?.payload?.results?.[0]?.success === true) acked.set(`k${i}`, i)
    }))
    ledgerPeer.send(packr.pack({ type: "CLIENT_OP", payload: { id, mapName: ledgerMap, key: `k${i}`, opType: "PUT", record: { value: { i, v: now }, timestamp: { millis: now, counter: i, nodeId: "ledger" } } } }))
  }

  await Promise.all(Array.from({ length: options.connections }, (_, i) => worker(i)))
  while (ledgerSeq < Math.min(ledgerLimit, 20)) ledgerWrite()
  await Promise.all(pendingAcks)
  await ledgerPeer.close()
  stats.elapsedMs = performance.now() - started
  stats.ledgerAcked = acked.size

  // A normal client still works: authenticate, write, read back the whole ledger through a query.
  const check = await Peer.open(options.url, () => {})
  if (check !== undefined && (await authenticate(check, token))) {
    const ack = check.wait((m) => m.type === "OP_ACK" && m.payload?.lastId === "after", 10_000)
    const now = Date.now()
    check.send(packr.pack({ type: "CLIENT_OP", payload: { id: "after", mapName: ledgerMap, key: "after", opType: "PUT", record: { value: { i: -1 }, timestamp: { millis: now, counter: 0, nodeId: "check" } } } }))
    const ackOk = (await ack)?.payload?.results?.[0]?.success === true
    const resp = check.wait((m) => m.type === "QUERY_RESP" && m.payload?.queryId === "ledger", 10_000)
    check.send(packr.pack({ type: "QUERY_SUB", payload: { queryId: "ledger", mapName: ledgerMap, query: {} } }))
    const rows = ((await resp)?.payload?.results ?? []) as Array<{ key: string; value: { i: number } }>
    const found = new Map(rows.map((r) => [r.key, r.value?.i]))
    for (const [key, i] of acked) if (found.get(key) !== i) stats.ledgerLost++
    stats.healthy = ackOk && found.get("after") === -1
    await check.close()
  }
  return stats
}

const parseFlags = (argv: ReadonlyArray<string>): Record<string, string> => {
  const flags: Record<string, string> = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a.startsWith("--")) flags[a.slice(2)] = argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("--") ? argv[++i]! : "true"
  }
  return flags
}

const main = async () => {
  const flags = parseFlags(process.argv.slice(2))
  if (flags.help !== undefined) {
    console.log("usage: node dist/bench/fuzz.js [--frames N (1000000)] [--connections C (4)] [--seed S (1)] [--url ws://host:port/ws]")
    return
  }
  const frames = Number(flags.frames ?? 1_000_000)
  const connections = Number(flags.connections ?? 4)
  const seed = Number(flags.seed ?? 1)
  let url = flags.url
  let stop: (() => Promise<void>) | undefined
  let stderrTail = () => ""
  let tempDir: string | undefined
  if (url === undefined) {
    tempDir = mkdtempSync(join(tmpdir(), "tessera-fuzz-"))
    const configPath = join(tempDir, "fuzz-config.json")
    // Throttling would drop most frames before they reach the parsers: limits are raised for the run.
    writeFileSync(configPath, JSON.stringify({ rateLimitPerSecond: 10_000_000, rateLimitBurst: 10_000_000, connectionRateLimit: 100_000, logLevel: "error" }))
    const server = await spawnServer({
      name: "tessera",
      script: tesseraCliPath,
      args: ["serve", "--port", "0", "--storage", "memory", "--config", configPath],
      env: { NODE_ENV: "development", JWT_SECRET: DEV_JWT_SECRET }
    })
    url = server.url
    stop = server.stop
    stderrTail = server.stderrTail
  }
  console.log(`fuzz: ${frames} frames over ${connections} connections against ${url} (seed ${seed})`)
  let lastReport = 0
  const stats = await runFuzz({
    url,
    frames,
    connections,
    seed,
    token: () => signToken("fuzzer"),
    ledgerWrites: 1000,
    onProgress: (sent) => {
      if (sent - lastReport >= 100_000) {
        lastReport = sent
        console.log(`  ${sent} frames`)
      }
    }
  })
  if (stop !== undefined) await stop()
  if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true })
  const seconds = stats.elapsedMs / 1000
  console.log(JSON.stringify({ ...stats, framesPerSecond: Math.round(stats.framesSent / seconds), megabytes: +(stats.bytesSent / 1048576).toFixed(1) }, null, 2))
  const ok = stats.healthy && stats.ledgerLost === 0 && stats.internalErrors === 0
  console.log(ok ? "fuzz: OK" : "fuzz: FAILED")
  if (!ok) {
    console.log(stderrTail())
    process.exitCode = 1
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
