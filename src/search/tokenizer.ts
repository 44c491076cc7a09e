import { stem } from "./stem.js"
import { STOPWORDS } from "./stopwords.js"

/** Runs of characters that are neither Unicode letters nor numbers. */
const SEPARATORS = /[^\p{L}\p{N}]+/u

const MIN_LENGTH = 2
const MAX_STEM_LENGTH = 40

/**
 * Word → token memo ("" = dropped). Text repeats words heavily, and stemming dominates tokenizing, so
 * indexing a document mostly hits this. Bounded: cleared when full.
 */
const MEMO_LIMIT = 50_000
const memo = new Map<string, string>()

const tokenOf = (word: string): string => {
  let token = memo.get(word)
  if (token !== undefined) return token
  if (word.length < MIN_LENGTH || STOPWORDS.has(word)) token = ""
  else {
    const stemmed = stem(word)
    token = stemmed.length >= MIN_LENGTH && stemmed.length <= MAX_STEM_LENGTH ? stemmed : ""
  }
  if (memo.size >= MEMO_LIMIT) memo.clear()
  memo.set(word, token)
  return token
}

/**
 * Protocol §4.10 tokenizer: lower-case, split on non-letter/number runs, drop words shorter than 2 (UTF-16
 * length) and stopwords, stem, drop stems shorter than 2 or longer than 40. Duplicates are kept (they are `tf`).
 */
export function tokenize(text: string): string[] {
  const tokens: string[] = []
  tokens.length = tokenizeInto(text, tokens)
  return tokens
}

/**
 * `tokenize` writing into `out` from index 0 (a reusable scratch array; entries past the returned count are
 * stale). Returns the token count.
 */
export function tokenizeInto(text: string, out: string[]): number {
  const count = tokenizeAscii(text, out)
  return count >= 0 ? count : tokenizeUnicode(text, out)
}

/** Lower-cased code of an ASCII letter or digit. */
const lowerAscii = (c: number): number => (c >= 65 && c <= 90 ? c + 32 : c)

/** Whether `word` equals the lower-cased `text[start, end)`. */
function sameWord(word: string, text: string, start: number, end: number): boolean {
  if (word.length !== end - start) return false
  for (let i = start; i < end; i++) if (word.charCodeAt(i - start) !== lowerAscii(text.charCodeAt(i))) return false
  return true
}

const MEMO_INITIAL_SLOTS = 1024
/** Slots a memo grows to; past half of this it is cleared instead. */
const MEMO_MAX_SLOTS = 1 << 16

/**
 * ASCII word → value memo probed straight from the text's char codes, so a known word costs no substring,
 * no lower-casing and no string hashing: the tokenizer's word → token memo, and each search index's
 * word → posting table (so indexing a known word is one probe). Open addressing with linear probing on
 * FNV-1a of the lower-cased codes; the hash is kept beside each word so most mismatches never touch the
 * word. Starts small (a small table stays in cache) and doubles at half load up to 64K slots, where it
 * is cleared when half full.
 */
export class AsciiWordMemo<T> {
  private hashes = new Int32Array(MEMO_INITIAL_SLOTS)
  private words: Array<string | undefined> = new Array(MEMO_INITIAL_SLOTS).fill(undefined)
  /** undefined: the word yields no token (too short, stopword, or dropped by `valueOf`). */
  private values: Array<T | undefined> = new Array(MEMO_INITIAL_SLOTS).fill(undefined)
  private size = 0

  /** `valueOf`: the value of a token (called once per new word that yields one); undefined drops it. */
  constructor(private readonly valueOf: (token: string) => T | undefined) {}

  clear(): void {
    this.hashes = new Int32Array(MEMO_INITIAL_SLOTS)
    this.words = new Array(MEMO_INITIAL_SLOTS).fill(undefined)
    this.values = new Array(MEMO_INITIAL_SLOTS).fill(undefined)
    this.size = 0
  }

  /**
   * Writes the values of `text`'s tokens, in order, into `out` from index 0 and returns their count;
   * -1 at the first non-ASCII character (the caller then tokenizes the whole text the general way). For
   * ASCII, `\p{L}` is exactly A–Z/a–z, `\p{N}` is 0–9 and lower-casing maps only A–Z, so this splits and
   * lower-cases exactly as the general path.
   */
  scan(text: string, out: T[]): number {
    let count = 0
    let start = -1
    let hash = 0
    const length = text.length
    for (let i = 0; i <= length; i++) {
      const c = i < length ? text.charCodeAt(i) : 32
      if (c >= 128) return -1
      const lower = lowerAscii(c)
      if ((lower >= 97 && lower <= 122) || (lower >= 48 && lower <= 57)) {
        if (start < 0) {
          start = i
          hash = 0x811c9dc5
        }
        hash = Math.imul(hash ^ lower, 0x01000193)
      } else if (start >= 0) {
        const value = this.lookup(text, start, i, hash)
        if (value !== undefined) out[count++] = value
        start = -1
      }
    }
    return count
  }

  private lookup(text: string, start: number, end: number, hash: number): T | undefined {
    const hashes = this.hashes
    const words = this.words
    const mask = hashes.length - 1
    let slot = hash & mask
    for (;;) {
      const word = words[slot]
      if (word === undefined) break
      if (hashes[slot] === hash && sameWord(word, text, start, end)) return this.values[slot]
      slot = (slot + 1) & mask
    }
    const lowered = text.slice(start, end).toLowerCase()
    const token = tokenOf(lowered)
    const value = token === "" ? undefined : this.valueOf(token)
    if (2 * (this.size + 1) > hashes.length) {
      if (hashes.length < MEMO_MAX_SLOTS) this.grow()
      else this.clear()
      slot = this.freeSlot(hash)
    }
    // An own copy: a slice may pin the whole source text, and the memo outlives it.
    this.words[slot] = (" " + lowered).slice(1)
    this.hashes[slot] = hash
    this.values[slot] = value
    this.size++
    return value
  }

  private freeSlot(hash: number): number {
    const mask = this.hashes.length - 1
    let slot = hash & mask
    while (this.words[slot] !== undefined) slot = (slot + 1) & mask
    return slot
  }

  private grow(): void {
    const { hashes, words, values } = this
    const slots = hashes.length * 2
    this.hashes = new Int32Array(slots)
    this.words = new Array(slots).fill(undefined)
    this.values = new Array(slots).fill(undefined)
    for (let i = 0; i < hashes.length; i++) {
      const word = words[i]
      if (word === undefined) continue
      const slot = this.freeSlot(hashes[i]!)
      this.words[slot] = word
      this.hashes[slot] = hashes[i]!
      this.values[slot] = values[i]
    }
  }
}

/** The tokenizer's own memo: ASCII word → token (tokens are own copies: they outlive the text). */
const tokenMemo = new AsciiWordMemo<string>((token) => (" " + token).slice(1))

/** Fast path of `tokenizeInto` for ASCII text; -1 when the text is not ASCII. */
const tokenizeAscii = (text: string, out: string[]): number => tokenMemo.scan(text, out)

function tokenizeUnicode(text: string, out: string[]): number {
  let count = 0
  for (const word of text.toLowerCase().split(SEPARATORS)) {
    if (word.length === 0) continue
    const token = tokenOf(word)
    if (token !== "") out[count++] = token
  }
  return count
}
