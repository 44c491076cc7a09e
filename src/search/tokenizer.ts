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
  for (const word of text.toLowerCase().split(SEPARATORS)) {
    if (word.length === 0) continue
    const token = tokenOf(word)
    if (token !== "") tokens.push(token)
  }
  return tokens
}
