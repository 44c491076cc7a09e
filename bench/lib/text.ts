/**
 * Deterministic pseudo-text for the search benchmarks: a vocabulary of made-up words (consonant–vowel
 * syllables, so the tokenizer and stemmer treat them like ordinary words) drawn with a skewed distribution,
 * so a few words are common and most are rare, as in real text.
 */
import { mulberry32 } from "../../src/layers/cluster/simulated.js"

/** A small seeded PRNG (mulberry32), enough for reproducible fixtures. */
export const seededRandom = mulberry32

const CONSONANTS = "bdfgklmnprstvz"
const VOWELS = "aeiou"

export class TextGenerator {
  readonly vocabulary: ReadonlyArray<string>
  private readonly random: () => number

  constructor(seed: number, vocabularySize = 2000) {
    this.random = seededRandom(seed)
    const words = new Set<string>()
    while (words.size < vocabularySize) {
      const syllables = 2 + Math.floor(this.random() * 2)
      let word = ""
      for (let s = 0; s < syllables; s++) {
        word += CONSONANTS[Math.floor(this.random() * CONSONANTS.length)]! + VOWELS[Math.floor(this.random() * VOWELS.length)]!
      }
      words.add(word)
    }
    this.vocabulary = [...words]
  }

  /** A word; index ~ V·u², so low indexes are frequent. */
  word(): string {
    const u = this.random()
    return this.vocabulary[Math.floor(this.vocabulary.length * u * u)]!
  }

  phrase(words: number): string {
    const out = new Array<string>(words)
    for (let i = 0; i < words; i++) out[i] = this.word()
    return out.join(" ")
  }

  /** A short document: a 3–5 word title and an 8–14 word body. */
  doc(n: number): { title: string; body: string; n: number } {
    return { title: this.phrase(3 + Math.floor(this.random() * 3)), body: this.phrase(8 + Math.floor(this.random() * 7)), n }
  }

  /** A query of 1 or 2 words. */
  query(): string {
    return this.random() < 0.5 ? this.word() : `${this.word()} ${this.word()}`
  }
}
