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
  /** Keys as bytes in `arena` (string words, byte-arena.ts): the ring keeps no key string alive. */
  private readonly keyWords: Uint32Array
  private readonly keyChunks: Uint16Array
  private readonly keyOffsets: Uint32Array
  /** Writers' node ids repeat: one string per id. */
  private readonly ids = new NodeIdInterner()
  /** Values as objects (OR maps, or when the map gave no encoded copy). */
  private readonly values: Array<unknown>
  private readonly previousValues: Array<unknown>
  /** Values as bytes in `arena`: value words (value-codec.ts; 0 = none), chunk and offset. */
  private readonly valueWords: Uint32Array
  private readonly valueChunks: Uint16Array
  private readonly valueOffsets: Uint32Array
  private readonly previousWords: Uint32Array
  private readonly previousChunks: Uint16Array
  private readonly previousOffsets: Uint32Array
  /** Events leave in order, so chunks empty in order: no evacuation needed. */
  private readonly arena = new ByteArena()
  // Timestamps flattened too: the ring must not keep the client's timestamp objects alive.
  private readonly millis: Float64Array
  private readonly counters: Float64Array
  private readonly nodeIds: Array<string | undefined>
  private start = 0
  size = 0
  firstSeq = 0
  constructor(readonly capacity: number) {
    this.types = new Uint8Array(capacity)
    this.mapNames = new Array(capacity)
    this.keyWords = new Uint32Array(capacity)
    this.keyChunks = new Uint16Array(capacity)
    this.keyOffsets = new Uint32Array(capacity)
    this.values = new Array(capacity)
    this.previousValues = new Array(capacity)
    this.valueWords = new Uint32Array(capacity)
    this.valueChunks = new Uint16Array(capacity)
    this.valueOffsets = new Uint32Array(capacity)
    this.previousWords = new Uint32Array(capacity)
    this.previousChunks = new Uint16Array(capacity)
    this.previousOffsets = new Uint32Array(capacity)
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
      this.release(slot)
    }
    const removal = change.eventType === "REMOVE" || change.eventType === "OR_REMOVE"
    this.mapNames[slot] = change.mapName
    const keyWord = stringWord(change.key)
    this.keyChunks[slot] = this.arena.alloc(blobFootprint(stringWordBytes(keyWord)))
    this.keyOffsets[slot] = this.arena.offset
    this.keyWords[slot] = keyWord
    writeString(this.arena.chunks[this.keyChunks[slot]!]!, this.arena.offset, change.key, keyWord)
    const encoded = change.encoded
    if (encoded !== undefined && encoded.key === change.key) {
      this.types[slot] = removal ? DELETE : encoded.previousWord === 0 ? PUT : UPDATE
      this.values[slot] = undefined
      this.previousValues[slot] = undefined
      if (!removal && change.after !== undefined) {
        this.valueWords[slot] = this.copy(encoded.valueBuf, encoded.valueStart, encoded.valueWord)
        this.valueChunks[slot] = this.copiedChunk
        this.valueOffsets[slot] = this.arena.offset
      }
      if (encoded.previousWord !== 0) {
        this.previousWords[slot] = this.copy(encoded.previousBuf, 0, encoded.previousWord)
        this.previousChunks[slot] = this.copiedChunk
        this.previousOffsets[slot] = this.arena.offset
      }
    } else {
      this.types[slot] = removal ? DELETE : change.before === undefined ? PUT : UPDATE
      this.values[slot] = change.eventType === "OR_ADD" ? change.orRecord!.value : removal ? undefined : change.after
      this.previousValues[slot] = firstOf(change.before)
    }
    // An OR removal carries no record timestamp: the time the server stored it stands in.
    const timestamp = change.record?.timestamp ?? change.orRecord?.timestamp ?? change.storedAt
    this.millis[slot] = timestamp.millis
    this.counters[slot] = timestamp.counter
    this.nodeIds[slot] = this.ids.intern(timestamp.nodeId)
  }
  at(i: number): JournalEntry {
    const slot = (this.start + i) % this.capacity
    const valueWord = this.valueWords[slot]!
    const previousWord = this.previousWords[slot]!
    return {
      seq: this.firstSeq + i,
      type: JOURNAL_TYPES[this.types[slot]!]!,
      mapName: this.mapNames[slot]!,
      key: readString(this.arena.chunks[this.keyChunks[slot]!]!, this.keyOffsets[slot]!, this.keyWords[slot]!),
      value: valueWord === 0 ? this.values[slot] : decodeValueWord(this.arena.chunks[this.valueChunks[slot]!]!, this.valueOffsets[slot]!, valueWord),
      previousValue: previousWord === 0
        ? this.previousValues[slot]
        : decodeValueWord(this.arena.chunks[this.previousChunks[slot]!]!, this.previousOffsets[slot]!, previousWord),
      timestamp: { millis: this.millis[slot]!, counter: this.counters[slot]!, nodeId: this.nodeIds[slot]! }
    }
  }
  /** Chunk of the last `copy` (its offset is `arena.offset`). */
  private copiedChunk = 0
  /** Copies the value `word` describes from `buf[start]` into the arena; returns the word. */
  private copy(buf: Buffer, start: number, word: number): number {
    const n = wordBytes(word)
    this.copiedChunk = this.arena.alloc(blobFootprint(n))
    copyBytes(buf, start, this.arena.chunks[this.copiedChunk]!, this.arena.offset, n)
    return word
  }
  /** Frees the bytes of the event in `slot` (about to be overwritten). */
  private release(slot: number): void {
    const v = this.valueWords[slot]!
    const p = this.previousWords[slot]!
    this.valueWords[slot] = 0
    this.previousWords[slot] = 0
    this.arena.free(this.keyChunks[slot]!, blobFootprint(stringWordBytes(this.keyWords[slot]!)))
    if (v !== 0) this.arena.free(this.valueChunks[slot]!, blobFootprint(wordBytes(v)))
    if (p !== 0) this.arena.free(this.previousChunks[slot]!, blobFootprint(wordBytes(p)))
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

    // Continue after the highest sequence ever reserved (behavior.md §3.23: never reused).
    const reserved = storage.durable
      ? yield* storage.getMeta(SEQ_META_KEY).pipe(
        Effect.map(Option.match({ onNone: () => 0, onSome: (v) => Number(v) || 0 })),
        Effect.orElseSucceed(() => 0)
      )
      : 0
    let lastSeq = reserved
    let reservedUpTo = reserved
    const reserve = () => {
      if (!storage.durable) return
      reservedUpTo = lastSeq + SEQ_BLOCK
      writeBehind.submitUnsafe([{ _tag: "Meta", key: SEQ_META_KEY, value: String(reservedUpTo) }])
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
