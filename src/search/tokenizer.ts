import { stem } from "./stem.js"
import { STOPWORDS } from "./stopwords.js"

/** Runs of characters that are neither Unicode letters nor numbers. */
const SEPARATORS = /[^\p{L}\p{N}]+/u

const MIN_LENGTH = 2
const MAX_STEM_LENGTH = 40

/**
 * Protocol §4.10 tokenizer: lower-case, split on non-letter/number runs, drop words shorter than 2 (UTF-16
 * length) and stopwords, stem, drop stems shorter than 2 or longer than 40. Duplicates are kept (they are `tf`).
 */
export function tokenize(text: string): string[] {
  const tokens: string[] = []
  for (const word of text.toLowerCase().split(SEPARATORS)) {
    if (word.length < MIN_LENGTH || STOPWORDS.has(word)) continue
    const stemmed = stem(word)
    if (stemmed.length >= MIN_LENGTH && stemmed.length <= MAX_STEM_LENGTH) tokens.push(stemmed)
  }
  return tokens
}
