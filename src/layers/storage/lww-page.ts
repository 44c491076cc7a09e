/**
 * One page of LWW rows as SQLite's `json_group_array(json_array(key, json(value), ts_millis, ts_counter,
 * ts_node_id, ttl_ms, stored_millis, stored_counter, stored_node_id))` returns it: one JSON text, read in
 * place. A cold start loads millions of rows, and `JSON.parse` would build every row's array, strings,
 * numbers and value object only for the map to copy them into its store and drop them; promoted out of
 * the young generation in bulk, that garbage grew the heap by more than the whole store. `scan` walks the
 * text and hands each row's fields to a sink, the value as a range of the text (the store copies its JSON
 * as is). Per row it builds only the key string (node ids repeat and are reused).
 */
import type { LwwRow } from "../Storage.js"

/** Receives one row; the value is `text[valueStart, valueEnd)` (`valueStart` < 0: null, a tombstone). */
export type LwwRowSink = (
  key: string,
  text: string,
  valueStart: number,
  valueEnd: number,
  millis: number,
  counter: number,
  nodeId: string,
  ttlMs: number | undefined,
  storedMillis: number,
  storedCounter: number,
  storedNodeId: string
) => void

const QUOTE = 34
const BACKSLASH = 92
const COMMA = 44
const OPEN_BRACKET = 91
const CLOSE_BRACKET = 93
const OPEN_BRACE = 123
const CLOSE_BRACE = 125
const MINUS = 45

const malformed = (at: number): Error => new Error(`Malformed LWW page at character ${at}`)

/** A page of `count` rows (the SQL's `count(*)`), scanned on demand. */
export class LwwPage {
  readonly _tag = "LwwPage"
  constructor(readonly text: string, readonly count: number) {}

  /** Calls `sink` for every row, in order. Throws on text that is not a page of well-formed rows. */
  scan(sink: LwwRowSink): void {
    new Scanner(this.text).rows(sink)
  }

  /** The rows as `LwwRow` tuples (tests and whole-map reads; allocates what `scan` avoids). */
  get rows(): ReadonlyArray<LwwRow> {
    const out: Array<LwwRow> = []
    this.scan((key, text, vs, ve, millis, counter, nodeId, ttlMs, sm, sc, sn) => {
      out.push([key, vs < 0 ? null : text.slice(vs, ve), millis, counter, nodeId, ttlMs ?? null, sm, sc, sn])
    })
    return out
  }
}

class Scanner {
  private i = 0
  private lastNode = ""
  private lastStoredNode = ""
  constructor(private readonly s: string) {}

  rows(sink: LwwRowSink): void {
    const s = this.s
    this.expect(OPEN_BRACKET)
    if (s.charCodeAt(this.i) === CLOSE_BRACKET) return this.end()
    for (;;) {
      this.expect(OPEN_BRACKET)
      const key = this.string()
      this.expect(COMMA)
      let valueStart = -1
      let valueEnd = -1
      if (s.startsWith("null", this.i)) this.i += 4
      else {
        valueStart = this.i
        this.skipValue()
        valueEnd = this.i
      }
      this.expect(COMMA)
      const millis = this.number()
      this.expect(COMMA)
      const counter = this.number()
      this.expect(COMMA)
      const nodeId = (this.lastNode = this.id(this.lastNode))
      this.expect(COMMA)
      let ttlMs: number | undefined
      if (s.startsWith("null", this.i)) this.i += 4
      else ttlMs = this.number()
      this.expect(COMMA)
      const storedMillis = this.number()
      this.expect(COMMA)
      const storedCounter = this.number()
      this.expect(COMMA)
      const storedNodeId = (this.lastStoredNode = this.id(this.lastStoredNode))
      this.expect(CLOSE_BRACKET)
      sink(key, s, valueStart, valueEnd, millis, counter, nodeId, ttlMs, storedMillis, storedCounter, storedNodeId)
      const c = s.charCodeAt(this.i++)
      if (c === CLOSE_BRACKET) return this.end()
      if (c !== COMMA) throw malformed(this.i - 1)
    }
  }

  private end(): void {
    if (this.i !== this.s.length && this.s.charCodeAt(this.i) !== CLOSE_BRACKET) throw malformed(this.i)
  }

  private expect(c: number): void {
    if (this.s.charCodeAt(this.i) !== c) throw malformed(this.i)
    this.i++
  }

  /** Index of the closing quote of the string whose opening quote is at `from`; sets `escaped`. */
  private stringEnd(from: number): number {
    const s = this.s
    this.escaped = false
    for (let j = from + 1; j < s.length; j++) {
      const c = s.charCodeAt(j)
      if (c === QUOTE) return j
      if (c === BACKSLASH) {
        this.escaped = true
        j++
      }
    }
    throw malformed(from)
  }
  private escaped = false

  private string(): string {
    const start = this.i
    if (this.s.charCodeAt(start) !== QUOTE) throw malformed(start)
    const end = this.stringEnd(start)
    this.i = end + 1
    return this.escaped ? (JSON.parse(this.s.slice(start, end + 1)) as string) : this.s.slice(start + 1, end)
  }

  /** A node id: the previous row's string again when the text repeats it (it nearly always does). */
  private id(last: string): string {
    const s = this.s
    const start = this.i
    if (last.length > 0 && s.charCodeAt(start) === QUOTE && s.startsWith(last, start + 1) && s.charCodeAt(start + 1 + last.length) === QUOTE) {
      this.i = start + last.length + 2
      return last
    }
    return this.string()
  }

  /** A JSON number; integers (what the columns hold) are read digit by digit, anything else by `Number`. */
  private number(): number {
    const s = this.s
    const start = this.i
    let j = start
    if (s.charCodeAt(j) === MINUS) j++
    let n = 0
    const digitsFrom = j
    for (let c = s.charCodeAt(j); c >= 48 && c <= 57; c = s.charCodeAt(++j)) n = n * 10 + (c - 48)
    if (j === digitsFrom) throw malformed(start)
    const c = s.charCodeAt(j)
    if (c === 46 || c === 101 || c === 69 || j - digitsFrom > 15) {
      // fraction, exponent, or more digits than a double holds exactly digit by digit: let Number round
      while (j < s.length && s.charCodeAt(j) !== COMMA && s.charCodeAt(j) !== CLOSE_BRACKET) j++
      const parsed = Number(s.slice(start, j))
      if (Number.isNaN(parsed)) throw malformed(start)
      this.i = j
      return parsed
    }
    this.i = j
    return s.charCodeAt(start) === MINUS ? -n : n
  }

  /** Skips one JSON value (SQLite's `json()` output: well-formed, no whitespace). */
  private skipValue(): void {
    const s = this.s
    const c = s.charCodeAt(this.i)
    if (c === QUOTE) {
      this.i = this.stringEnd(this.i) + 1
      return
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      let depth = 0
      for (let j = this.i; j < s.length; j++) {
        const d = s.charCodeAt(j)
        if (d === QUOTE) j = this.stringEnd(j)
        else if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++
        else if ((d === CLOSE_BRACE || d === CLOSE_BRACKET) && --depth === 0) {
          this.i = j + 1
          return
        }
      }
      throw malformed(this.i)
    }
    // number, true, false
    let j = this.i
    while (j < s.length && s.charCodeAt(j) !== COMMA && s.charCodeAt(j) !== CLOSE_BRACKET) j++
    if (j === this.i) throw malformed(j)
    this.i = j
  }
}
