import { Effect, Option } from "effect"
import { blobFootprint, ByteArena, copyBytes, readString, stringWord, stringWordBytes, writeString } from "../crdt/byte-arena.js"
import { NodeIdInterner } from "../crdt/node-ids.js"
import type { Timestamp } from "../crdt/types.js"
import { decodeValueWord, wordBytes } from "../crdt/value-codec.js"
import { type Change, ChangeStage, Changes } from "./Changes.js"
import { type Connection, Connections } from "./Connections.js"
import { Security } from "./Security.js"
import { ServerConfig } from "./ServerConfig.js"
import { Storage } from "./Storage.js"
import { WriteBehind } from "./storage/write-behind.js"

export type JournalEventType = "PUT" | "UPDATE" | "DELETE"

/** One journal entry (protocol.md §3.14 JournalEventData), with the sequence kept numeric internally. */
interface JournalEntry {
  readonly seq: number
  readonly type: JournalEventType
  readonly mapName: string
  readonly key: string
  readonly value: unknown
  readonly previousValue: unknown
  readonly timestamp: Timestamp
}

interface JournalSubscription {
  readonly id: string
  readonly connection: Connection
  readonly mapName: string | undefined
  readonly types: ReadonlySet<JournalEventType> | undefined
}

/** Sequences are reserved in blocks persisted ahead of use, so a restart (even after a crash) never reuses one. */
const SEQ_BLOCK = 1000
const SEQ_META_KEY = "journal:reservedSequence"

const JOURNAL_TYPES: ReadonlyArray<JournalEventType> = ["PUT", "UPDATE", "DELETE"]
const PUT = 0
const UPDATE = 1
const DELETE = 2
/** OR values are arrays of live values; the journal reports the first. */
const firstOf = (v: unknown): unknown => (Array.isArray(v) ? v[0] : v)

/**
 * Fixed-capacity ring of journal events with consecutive sequences (`firstSeq` is the sequence at index
 * 0), stored column-wise: a write costs a few array stores and no object, so nothing per event has to be
 * promoted out of the young generation (at 100k writes/s a 10k ring turns over every 0.1 s, so per-event
 * objects would all survive a scavenge and die in the old generation). LWW values are kept as the bytes
 * the map stores them in (copied into the ring's own arena), so the ring holds no value objects either;
 * entries, with their values, are built when read.
 */
class Ring {
  private readonly types: Uint8Array
  private readonly mapNames: Array<string | undefined>
  /**
   * Each event's key and, for LWW maps, its value and previous value as the bytes the map stores them
   * in, in one blob of `arena`: `[key][value][previous]`, described by three words (byte-arena.ts string
   * word for the key, value-codec.ts words for the values; 0 = none). The ring keeps no key string or
   * value object alive.
   */
  private readonly blobChunks: Uint16Array
  private readonly blobOffsets: Uint32Array
  private readonly keyWords: Uint32Array
  private readonly valueWords: Uint32Array
  private readonly previousWords: Uint32Array
  /** Events leave in order, so chunks empty in order: no evacuation needed. */
  private readonly arena = new ByteArena()
  /** Values as objects (OR maps, or when the map gave no encoded copy). */
  private readonly values: Array<unknown>
  private readonly previousValues: Array<unknown>
  // Timestamps flattened too: the ring must not keep the client's timestamp objects alive.
  private readonly millis: Float64Array
  private readonly counters: Float64Array
  private readonly nodeIds: Array<string | undefined>
  /** Writers' node ids repeat: one string per id. */
  private readonly ids = new NodeIdInterner()
  private start = 0
  size = 0
  firstSeq = 0
  constructor(readonly capacity: number) {
    this.types = new Uint8Array(capacity)
    this.mapNames = new Array(capacity)
    this.blobChunks = new Uint16Array(capacity)
    this.blobOffsets = new Uint32Array(capacity)
    this.keyWords = new Uint32Array(capacity)
    this.valueWords = new Uint32Array(capacity)
    this.previousWords = new Uint32Array(capacity)
    this.values = new Array(capacity)
    this.previousValues = new Array(capacity)
    this.millis = new Float64Array(capacity)
    this.counters = new Float64Array(capacity)
    this.nodeIds = new Array(capacity)
  }
  push(seq: number, change: Change): void {
    if (this.size === 0) this.firstSeq = seq
    let slot: number
    if (this.size < this.capacity) {
      slot = (this.start + this.size) % this.capacity
      this.size++
    } else {
      slot = this.start
      this.start = (this.start + 1) % this.capacity
      this.firstSeq++
      this.arena.free(this.blobChunks[slot]!, this.footprint(slot))
    }
    const removal = change.eventType === "REMOVE" || change.eventType === "OR_REMOVE"
    this.mapNames[slot] = change.mapName
    const key = change.key
    const keyWord = stringWord(key)
    const keyBytes = stringWordBytes(keyWord)
    const encoded = change.encoded
    let valueWord = 0
    let previousWord = 0
    if (encoded !== undefined && encoded.key === key) {
      this.types[slot] = removal ? DELETE : encoded.previousWord === 0 ? PUT : UPDATE
      this.values[slot] = undefined
      this.previousValues[slot] = undefined
      if (!removal && change.after !== undefined) valueWord = encoded.valueWord
      previousWord = encoded.previousWord
    } else {
      this.types[slot] = removal ? DELETE : change.before === undefined ? PUT : UPDATE
      this.values[slot] = change.eventType === "OR_ADD" ? change.orRecord!.value : removal ? undefined : change.after
      this.previousValues[slot] = firstOf(change.before)
    }
    const valueBytes = wordBytes(valueWord)
    const previousBytes = wordBytes(previousWord)
    const chunk = this.arena.alloc(blobFootprint(keyBytes + valueBytes + previousBytes))
    const at = this.arena.offset
    const buf = this.arena.chunks[chunk]!
    writeString(buf, at, key, keyWord)
    if (valueBytes > 0) copyBytes(encoded!.valueBuf, encoded!.valueStart, buf, at + keyBytes, valueBytes)
    if (previousBytes > 0) copyBytes(encoded!.previousBuf, 0, buf, at + keyBytes + valueBytes, previousBytes)
    this.blobChunks[slot] = chunk
    this.blobOffsets[slot] = at
    this.keyWords[slot] = keyWord
    this.valueWords[slot] = valueWord
    this.previousWords[slot] = previousWord
    // An OR removal carries no record timestamp: the time the server stored it stands in.
    const timestamp = change.record?.timestamp ?? change.orRecord?.timestamp ?? change.storedAt
    this.millis[slot] = timestamp.millis
    this.counters[slot] = timestamp.counter
    this.nodeIds[slot] = this.ids.intern(timestamp.nodeId)
  }
  at(i: number): JournalEntry {
    const slot = (this.start + i) % this.capacity
    const buf = this.arena.chunks[this.blobChunks[slot]!]!
    const at = this.blobOffsets[slot]!
    const keyWord = this.keyWords[slot]!
    const valueWord = this.valueWords[slot]!
    const previousWord = this.previousWords[slot]!
    const valueAt = at + stringWordBytes(keyWord)
    return {
      seq: this.firstSeq + i,
      type: JOURNAL_TYPES[this.types[slot]!]!,
      mapName: this.mapNames[slot]!,
      key: readString(buf, at, keyWord),
      value: valueWord === 0 ? this.values[slot] : decodeValueWord(buf, valueAt, valueWord),
      previousValue: previousWord === 0 ? this.previousValues[slot] : decodeValueWord(buf, valueAt + wordBytes(valueWord), previousWord),
      timestamp: { millis: this.millis[slot]!, counter: this.counters[slot]!, nodeId: this.nodeIds[slot]! }
    }
  }
  private footprint(slot: number): number {
    return blobFootprint(stringWordBytes(this.keyWords[slot]!) + wordBytes(this.valueWords[slot]!) + wordBytes(this.previousWords[slot]!))
  }
  /** Index of the first entry with seq >= `seq`. */
  lowerBound(seq: number): number {
    return Math.min(this.size, Math.max(0, seq - this.firstSeq))
  }
}

/**
 * The event journal (protocol.md §3.14, §4.14; behavior.md §3.23): a bounded ring of PUT / UPDATE /
 * DELETE events fed by `Changes`, with per-node sequences that start at 1 and continue across restarts.
 * Subscriptions and reads are filtered by map, type and READ permission, with FLS per recipient.
 */
export class Journal extends Effect.Service<Journal>()("tessera/Journal", {
  effect: Effect.gen(function* () {
    const config = yield* ServerConfig
    const changes = yield* Changes
    const connections = yield* Connections
    const security = yield* Security
    const storage = yield* Storage
    const writeBehind = yield* WriteBehind

    const enabled = config.journalEnabled
    const ring = new Ring(Math.max(1, config.journalCapacity))
    const subscriptions = new Map<string, Map<string, JournalSubscription>>()

    // Continue after the highest sequence ever reserved (behavior.md §3.23: never reused). Sequences are
    // per node: nodes sharing one database (a cluster) each keep their own reservation, and read the
    // single-node key too, so a store that served one node before keeps its numbers growing. A failed read
    // fails the start: numbering from 0 instead could reuse sequences.
    const seqMetaKey = config.cluster === "single" ? SEQ_META_KEY : `${SEQ_META_KEY}:${config.nodeId}`
    const readReserved = (key: string) =>
      storage.getMeta(key).pipe(Effect.map(Option.match({ onNone: () => 0, onSome: (v) => Number(v) || 0 })))
    const reserved = storage.durable
      ? Math.max(yield* readReserved(SEQ_META_KEY), seqMetaKey === SEQ_META_KEY ? 0 : yield* readReserved(seqMetaKey))
      : 0
    let lastSeq = reserved
    let reservedUpTo = reserved
    const reserve = () => {
      if (!storage.durable) return
      reservedUpTo = lastSeq + SEQ_BLOCK
      writeBehind.submitUnsafe([{ _tag: "Meta", key: seqMetaKey, value: String(reservedUpTo) }])
    }
    if (enabled) reserve()

    const toWire = (e: JournalEntry, c: Connection): object => {
      const filter = security.valueFilter(c.principal!, e.mapName)
      return {
        sequence: String(e.seq),
        type: e.type,
        mapName: e.mapName,
        key: e.key,
        ...(e.value !== undefined ? { value: e.value === null ? null : filter(e.value) } : {}),
        ...(e.previousValue !== undefined ? { previousValue: e.previousValue === null ? null : filter(e.previousValue) } : {}),
        timestamp: e.timestamp,
        nodeId: config.nodeId
      }
    }

    const visibleTo = (e: JournalEntry, c: Connection) => security.checkPermission(c.principal!, e.mapName, "READ")

    const matches = (e: JournalEntry, sub: JournalSubscription) =>
      (sub.mapName === undefined || sub.mapName === e.mapName) && (sub.types === undefined || sub.types.has(e.type)) && visibleTo(e, sub.connection)

    const onChange = (change: Change): void => {
      ++lastSeq
      if (lastSeq > reservedUpTo - SEQ_BLOCK / 2) reserve()
      ring.push(lastSeq, change)
      if (subscriptions.size === 0) return
      const entry = ring.at(ring.size - 1)
      for (const own of subscriptions.values()) {
        for (const sub of own.values()) {
          if (matches(entry, sub)) sub.connection.send({ type: "JOURNAL_EVENT", event: toWire(entry, sub.connection) })
        }
      }
    }
    if (enabled) {
      changes.subscribe(ChangeStage.Journal, "journal", onChange)
      changes.needBefore(undefined, "encoded") // PUT vs UPDATE and previousValue, kept as bytes
    }

    const disabled = (c: Connection) =>
      Effect.sync(() => c.send({ type: "ERROR", payload: { code: 503, message: "Event journal not enabled" } }))

    const parseSeq = (s: string | undefined): number | undefined => {
      if (s === undefined) return undefined
      const n = Number(s)
      return Number.isSafeInteger(n) && n >= 0 ? n : undefined
    }

    const subscribe = (c: Connection, m: { requestId: string; fromSequence?: string | undefined; mapName?: string | undefined; types?: ReadonlyArray<string> | undefined }) => {
      if (!enabled) return disabled(c)
      return Effect.sync(() => {
        const from = parseSeq(m.fromSequence)
        if (m.fromSequence !== undefined && from === undefined) {
          return c.send({ type: "ERROR", payload: { code: 400, message: `Invalid fromSequence: ${m.fromSequence}` } })
        }
        const sub: JournalSubscription = {
          id: m.requestId,
          connection: c,
          mapName: m.mapName,
          types: m.types === undefined ? undefined : new Set(m.types as ReadonlyArray<JournalEventType>)
        }
        let own = subscriptions.get(c.id)
        if (own === undefined) subscriptions.set(c.id, own = new Map())
        own.set(sub.id, sub)
        if (from === undefined) return
        // A subscriber asking for events the ring no longer holds is told, then gets what is retained.
        const oldest = ring.size > 0 ? ring.firstSeq : lastSeq + 1
        if (from < oldest && from <= lastSeq && from > 0) {
          c.send({
            type: "ERROR",
            payload: {
              code: 410,
              message: `Journal events before sequence ${oldest} are no longer retained`,
              details: { subscriptionId: sub.id, requestedSequence: String(from), oldestSequence: String(oldest) }
            }
          })
        }
        for (let i = ring.lowerBound(from); i < ring.size; i++) {
          const e = ring.at(i)
          if (matches(e, sub)) c.send({ type: "JOURNAL_EVENT", event: toWire(e, c) })
        }
      })
    }

    const unsubscribe = (c: Connection, subscriptionId: string) => {
      if (!enabled) return disabled(c)
      return Effect.sync(() => {
        subscriptions.get(c.id)?.delete(subscriptionId)
      })
    }

    const read = (c: Connection, m: { requestId: string; fromSequence: string; limit?: number | undefined; mapName?: string | undefined }) => {
      if (!enabled) return disabled(c)
      return Effect.sync(() => {
        const from = parseSeq(m.fromSequence)
        if (from === undefined) {
          return c.send({ type: "ERROR", payload: { code: 400, message: `Invalid fromSequence: ${m.fromSequence}` } })
        }
        const limit = Math.max(1, Math.min(m.limit ?? 100, 10_000))
        const sub: JournalSubscription = { id: m.requestId, connection: c, mapName: m.mapName, types: undefined }
        const events: object[] = []
        let hasMore = false
        for (let i = ring.lowerBound(from); i < ring.size; i++) {
          const e = ring.at(i)
          if (!matches(e, sub)) continue
          if (events.length === limit) {
            hasMore = true
            break
          }
          events.push(toWire(e, c))
        }
        c.send({ type: "JOURNAL_READ_RESPONSE", requestId: m.requestId, events, hasMore })
      })
    }

    connections.onDisconnect(10, (c) => Effect.sync(() => subscriptions.delete(c.id)))

    return { subscribe, unsubscribe, read, lastSequence: () => lastSeq, enabled } as const
  })
}) {}
