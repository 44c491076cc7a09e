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

/**
 * ASCII word → token memo probed straight from the text's char codes, so a known word costs no substring,
 * no lower-casing and no string hashing. Open addressing with linear probing; cleared when half full.
 */
const ASCII_TABLE_SIZE = 1 << 16
const ASCII_TABLE_MAX = ASCII_TABLE_SIZE >> 1
const asciiWords: Array<string | undefined> = new Array(ASCII_TABLE_SIZE).fill(undefined)
const asciiTokens: string[] = new Array(ASCII_TABLE_SIZE).fill("")
let asciiWordCount = 0

/** Lower-cased code of an ASCII letter or digit. */
const lowerAscii = (c: number): number => (c >= 65 && c <= 90 ? c + 32 : c)

/** Whether `word` equals the lower-cased `text[start, end)`. */
function sameWord(word: string, text: string, start: number, end: number): boolean {
  if (word.length !== end - start) return false
  for (let i = start; i < end; i++) if (word.charCodeAt(i - start) !== lowerAscii(text.charCodeAt(i))) return false
  return true
}

/** Token of the ASCII word `text[start, end)` (hash = FNV-1a of its lower-cased codes). */
function asciiTokenOf(text: string, start: number, end: number, hash: number): string {
  let slot = hash & (ASCII_TABLE_SIZE - 1)
  for (;;) {
    const word = asciiWords[slot]
    if (word === undefined) break
    if (sameWord(word, text, start, end)) return asciiTokens[slot]!
    slot = (slot + 1) & (ASCII_TABLE_SIZE - 1)
  }
  if (asciiWordCount >= ASCII_TABLE_MAX) {
    asciiWords.fill(undefined)
    asciiWordCount = 0
    slot = hash & (ASCII_TABLE_SIZE - 1)
  }
  const word = text.slice(start, end).toLowerCase()
  const token = tokenOf(word)
  // Own copies: a slice may pin the whole source text, and the table outlives it.
  asciiWords[slot] = (" " + word).slice(1)
  asciiTokens[slot] = token === "" ? "" : (" " + token).slice(1)
  asciiWordCount++
  return token
}

/**
 * Fast path without the Unicode regex split or a lower-cased copy of the whole text. For ASCII, `\p{L}` is
 * exactly A–Z/a–z, `\p{N}` is 0–9 and lower-casing maps only A–Z, so this equals the general path.
 * Returns -1 at the first non-ASCII character (the caller then redoes the whole text the general way).
 */
function tokenizeAscii(text: string, out: string[]): number {
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
      const token = asciiTokenOf(text, start, i, hash)
      if (token !== "") out[count++] = token
      start = -1
    }
  }
  return count
}

function tokenizeUnicode(text: string, out: string[]): number {
  let count = 0
  for (const word of text.toLowerCase().split(SEPARATORS)) {
    if (word.length === 0) continue
    const token = tokenOf(word)
    if (token !== "") out[count++] = token
  }
  return count
}
