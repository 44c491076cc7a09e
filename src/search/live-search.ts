import type { FullTextIndex } from "./bm25-index.js"

export type SearchChangeType = "ENTER" | "UPDATE" | "LEAVE"

export interface SearchChange {
  readonly changeType: SearchChangeType
  readonly score: number
  readonly matchedTerms: string[]
}

export interface LiveSearchOptions {
  readonly minScore?: number
}

interface Membership {
  score: number
  matchedTerms: string[]
}

/**
 * One search subscription's live state (protocol §4.10 "Live updates"): the query is tokenized once, `current`
 * starts from the initial results, and every change of a key is classified as ENTER / UPDATE / LEAVE.
 * The subscription's `limit` deliberately does not apply here.
 */
export class LiveSearch {
  readonly queryTokens: ReadonlyArray<string>
  private readonly minScore: number
  private readonly current = new Map<string, Membership>()

  constructor(
    queryTokens: ReadonlyArray<string>,
    options: LiveSearchOptions,
    initialResults: ReadonlyArray<{ readonly key: string; readonly score: number; readonly matchedTerms: ReadonlyArray<string> }>
  ) {
    this.queryTokens = [...queryTokens]
    this.minScore = options.minScore ?? 0
    for (const hit of initialResults) {
      this.current.set(hit.key, { score: hit.score, matchedTerms: [...hit.matchedTerms] })
    }
  }

  /** Keys currently considered inside the result set. */
  get size(): number {
    return this.current.size
  }

  has(key: string): boolean {
    return this.current.has(key)
  }

  /**
   * Classifies the change of `key` to `value` (undefined = removed). Call after `index` was updated with the
   * same value. Returns undefined when the key was and stays outside the results.
   */
  onChange(key: string, value: unknown, index: FullTextIndex): SearchChange | undefined {
    const scored =
      value === undefined || value === null ? undefined : index.scoreDocument(key, this.queryTokens)
    const isIn = scored !== undefined && scored.score > 0 && scored.score >= this.minScore
    const wasIn = this.current.has(key)
    if (isIn) {
      this.current.set(key, { score: scored.score, matchedTerms: scored.matchedTerms })
      return { changeType: wasIn ? "UPDATE" : "ENTER", score: scored.score, matchedTerms: [...scored.matchedTerms] }
    }
    if (!wasIn) return undefined
    this.current.delete(key)
    return { changeType: "LEAVE", score: 0, matchedTerms: [] }
  }
}
