import { tokenize } from "./tokenizer.js"

/** BM25 parameters of protocol §4.10. */
export const K1 = 1.2
export const B = 0.75

export interface SearchOptions {
  readonly limit?: number
  readonly minScore?: number
  readonly boost?: Readonly<Record<string, number>>
}

export interface SearchHit {
  readonly key: string
  score: number
  readonly matchedTerms: string[]
}

export interface DocumentScore {
  readonly score: number
  readonly matchedTerms: string[]
}

/** `ln((N − df + 0.5) / (df + 0.5) + 1)`, always > 0. */
export const inverseDocumentFrequency = (docCount: number, df: number): number =>
  Math.log((docCount - df + 0.5) / (df + 0.5) + 1)

/** One query token's BM25 contribution, written in the reference server's operation order for identical floats. */
export const termScore = (idf: number, tf: number, dl: number, avgdl: number): number =>
  idf * ((tf * (K1 + 1)) / (tf + K1 * (1 - B + B * (dl / avgdl))))

/**
 * Documents containing one term. An entry is one (document, field) pair; `df` counts distinct documents.
 * Parallel arrays keep it compact; removal is swap-with-last, so each entry remembers where its document
 * refers back to it (`slots`) and the document remembers the entry's position.
 */
interface Posting {
  df: number
  readonly ords: number[]
  readonly tfs: number[]
  readonly slots: number[]
}

/** Stride of `IndexedDoc.entries`: term, field id, position in the term's posting. */
const STRIDE = 3

interface IndexedDoc {
  readonly key: string
  /** Combined token count (dl) over all indexed fields. */
  readonly length: number
  /** Flat (term, fieldId, postingPosition) triples, grouped by field. */
  readonly entries: Array<string | number>
  /** Flat (fieldId, fieldTokenCount) pairs for the fields with at least one token. */
  readonly fieldLengths: number[]
}

interface FieldStats {
  readonly name: string
  docCount: number
  totalLength: number
}

interface FieldTokens {
  readonly fieldId: number
  readonly termFrequencies: Map<string, number>
  readonly length: number
}

interface FieldBucket {
  readonly ords: number[]
  readonly tfs: number[]
  readonly lengths: number[]
}

const isDocument = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const byScoreThenKey = (a: SearchHit, b: SearchHit): number =>
  b.score - a.score || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

const hasEntries = (boost: Readonly<Record<string, number>> | undefined): boost is Readonly<Record<string, number>> => {
  if (boost === undefined) return false
  for (const _ in boost) return true
  return false
}

/**
 * Incremental BM25 full-text index of one map (protocol §4.10). Statistics (N, total length, df, tf, and the
 * same per field for boosted queries) are maintained on every upsert/remove in O(tokens of the document);
 * a search costs O(postings of the query terms) plus sorting the hits.
 */
export class FullTextIndex {
  private readonly configuredFields: ReadonlyArray<string> | undefined
  private readonly fieldIds = new Map<string, number>()
  private readonly fieldStats: FieldStats[] = []
  private readonly postings = new Map<string, Posting>()
  private readonly ordByKey = new Map<string, number>()
  private readonly docs: Array<IndexedDoc | undefined> = []
  private readonly docLengths: number[] = []
  private readonly freeOrds: number[] = []
  private docCount = 0
  private totalLength = 0
  /** Scratch for merging a term's per-field tfs of one document; all zero between uses. */
  private tfScratch = new Int32Array(64)
  /** Scratch hit per document ordinal; all undefined between searches. */
  private readonly hitScratch: Array<SearchHit | undefined> = []

  /** `fields`: the map's configured field list; absent = every top-level string property. */
  constructor(fields?: ReadonlyArray<string>) {
    this.configuredFields = fields === undefined ? undefined : [...fields]
    if (this.configuredFields !== undefined) for (const name of this.configuredFields) this.fieldId(name)
  }

  /** N: the number of indexed documents (those with at least one token). */
  get size(): number {
    return this.docCount
  }

  has(key: string): boolean {
    return this.ordByKey.has(key)
  }

  clear(): void {
    for (const key of [...this.ordByKey.keys()]) this.remove(key)
  }

  /** Indexes (or re-indexes) `value` under `key`; a non-object or a document without tokens is not indexed. */
  upsert(key: string, value: unknown): void {
    this.remove(key)
    if (!isDocument(value)) return
    const fields = this.tokenizeFields(value)
    let length = 0
    for (const field of fields) length += field.length
    if (length === 0) return

    const ord = this.freeOrds.pop() ?? this.docs.length
    const entries: Array<string | number> = []
    const fieldLengths: number[] = []
    for (const { fieldId, termFrequencies, length: fieldLength } of fields) {
      const stats = this.fieldStats[fieldId]!
      stats.docCount++
      stats.totalLength += fieldLength
      fieldLengths.push(fieldId, fieldLength)
      for (const [term, tf] of termFrequencies) {
        let posting = this.postings.get(term)
        if (posting === undefined) {
          posting = { df: 0, ords: [], tfs: [], slots: [] }
          this.postings.set(term, posting)
        }
        const position = posting.ords.length
        // This document's entries are appended consecutively, so an earlier field already counted it in df
        // exactly when it owns the posting's last entry.
        if (position === 0 || posting.ords[position - 1] !== ord) posting.df++
        posting.ords.push(ord)
        posting.tfs.push(tf)
        posting.slots.push(entries.length / STRIDE)
        entries.push(term, fieldId, position)
      }
    }
    this.docs[ord] = { key, length, entries, fieldLengths }
    this.docLengths[ord] = length
    this.ordByKey.set(key, ord)
    this.docCount++
    this.totalLength += length
  }

  remove(key: string): void {
    const ord = this.ordByKey.get(key)
    if (ord === undefined) return
    const doc = this.docs[ord]!
    const { entries, fieldLengths } = doc
    // A term can repeat across fields; df drops once per distinct term.
    const seen = fieldLengths.length > 2 ? new Set<string>() : undefined
    for (let i = 0; i < entries.length; i += STRIDE) {
      const term = entries[i] as string
      const position = entries[i + 2] as number
      const posting = this.postings.get(term)!
      const last = posting.ords.length - 1
      if (position !== last) {
        const movedOrd = posting.ords[last]!
        const movedSlot = posting.slots[last]!
        posting.ords[position] = movedOrd
        posting.tfs[position] = posting.tfs[last]!
        posting.slots[position] = movedSlot
        const movedEntries = movedOrd === ord ? entries : this.docs[movedOrd]!.entries
        movedEntries[movedSlot * STRIDE + 2] = position
      }
      posting.ords.pop()
      posting.tfs.pop()
      posting.slots.pop()
      if (seen === undefined || !seen.has(term)) {
        seen?.add(term)
        posting.df--
      }
      if (posting.ords.length === 0) this.postings.delete(term)
    }
    for (let i = 0; i < fieldLengths.length; i += 2) {
      const stats = this.fieldStats[fieldLengths[i]!]!
      stats.docCount--
      stats.totalLength -= fieldLengths[i + 1]!
    }
    this.docs[ord] = undefined
    this.docLengths[ord] = 0
    this.freeOrds.push(ord)
    this.ordByKey.delete(key)
    this.docCount--
    this.totalLength -= doc.length
  }

  /** Tokenizes `query` and searches (protocol §4.10 "Search"/"Boost"). */
  search(query: string, options: SearchOptions = {}): SearchHit[] {
    return this.searchTokens(tokenize(query), options)
  }

  /** Searches with an already tokenized query (duplicates count again, as in BM25's query sum). */
  searchTokens(queryTokens: ReadonlyArray<string>, options: SearchOptions = {}): SearchHit[] {
    if (queryTokens.length === 0 || this.docCount === 0) return []
    const hits = hasEntries(options.boost)
      ? this.collectBoosted(queryTokens, options.boost)
      : this.collectCombined(queryTokens)
    const minScore = options.minScore
    const kept = minScore === undefined ? hits : hits.filter((hit) => hit.score >= minScore)
    kept.sort(byScoreThenKey)
    const limit = options.limit
    return limit !== undefined && limit > 0 && kept.length > limit ? kept.slice(0, limit) : kept
  }

  /**
   * Single-document BM25 over the combined statistics (live updates, protocol §4.10): undefined when the
   * document is not indexed, contains no query token, scores ≤ 0 or below `minScore`.
   */
  scoreDocument(
    key: string,
    queryTokens: ReadonlyArray<string>,
    options: { readonly minScore?: number } = {}
  ): DocumentScore | undefined {
    const ord = this.ordByKey.get(key)
    if (ord === undefined || queryTokens.length === 0) return undefined
    const doc = this.docs[ord]!
    const tfByTerm = new Map<string, number>()
    for (const token of queryTokens) tfByTerm.set(token, 0)
    const { entries } = doc
    for (let i = 0; i < entries.length; i += STRIDE) {
      const term = entries[i] as string
      const tf = tfByTerm.get(term)
      if (tf !== undefined) tfByTerm.set(term, tf + this.postings.get(term)!.tfs[entries[i + 2] as number]!)
    }
    const avgdl = this.totalLength / this.docCount
    let score = 0
    for (const token of queryTokens) {
      const tf = tfByTerm.get(token)!
      if (tf === 0) continue
      const idf = inverseDocumentFrequency(this.docCount, this.postings.get(token)!.df)
      score += termScore(idf, tf, doc.length, avgdl)
    }
    const matchedTerms: string[] = []
    for (const [term, tf] of tfByTerm) if (tf > 0) matchedTerms.push(term)
    if (matchedTerms.length === 0 || !(score > 0)) return undefined
    if (options.minScore !== undefined && !(score >= options.minScore)) return undefined
    return { score, matchedTerms }
  }

  private fieldId(name: string): number {
    let id = this.fieldIds.get(name)
    if (id === undefined) {
      id = this.fieldStats.length
      this.fieldIds.set(name, id)
      this.fieldStats.push({ name, docCount: 0, totalLength: 0 })
    }
    return id
  }

  private tokenizeFields(value: Record<string, unknown>): FieldTokens[] {
    const names = this.configuredFields ?? Object.keys(value)
    const fields: FieldTokens[] = []
    for (const name of names) {
      const text = value[name]
      if (typeof text !== "string") continue
      const tokens = tokenize(text)
      if (tokens.length === 0) continue
      const termFrequencies = new Map<string, number>()
      for (const token of tokens) termFrequencies.set(token, (termFrequencies.get(token) ?? 0) + 1)
      fields.push({ fieldId: this.fieldId(name), termFrequencies, length: tokens.length })
    }
    return fields
  }

  /** Distinct tokens in first-occurrence order, and for each query token the index of its distinct term. */
  private static distinct(queryTokens: ReadonlyArray<string>): { terms: string[]; termOf: number[] } {
    const indexByTerm = new Map<string, number>()
    const terms: string[] = []
    const termOf: number[] = []
    for (const token of queryTokens) {
      let index = indexByTerm.get(token)
      if (index === undefined) {
        index = terms.length
        indexByTerm.set(token, index)
        terms.push(token)
      }
      termOf.push(index)
    }
    return { terms, termOf }
  }

  /** The hit for `ord`, created on first touch (`touched` lists the ordinals to read and reset afterwards). */
  private hitFor(ord: number, touched: number[]): SearchHit {
    let hit = this.hitScratch[ord]
    if (hit === undefined) {
      hit = { key: this.docs[ord]!.key, score: 0, matchedTerms: [] }
      this.hitScratch[ord] = hit
      touched.push(ord)
    }
    return hit
  }

  private drainHits(touched: number[]): SearchHit[] {
    const hits: SearchHit[] = new Array(touched.length)
    for (let i = 0; i < touched.length; i++) {
      const ord = touched[i]!
      hits[i] = this.hitScratch[ord]!
      this.hitScratch[ord] = undefined
    }
    return hits
  }

  /** Unboosted scoring over the combined statistics. */
  private collectCombined(queryTokens: ReadonlyArray<string>): SearchHit[] {
    const { terms, termOf } = FullTextIndex.distinct(queryTokens)
    const avgdl = this.totalLength / this.docCount
    const termOrds: Array<number[] | undefined> = []
    const termContributions: number[][] = []
    for (const term of terms) {
      const posting = this.postings.get(term)
      if (posting === undefined) {
        termOrds.push(undefined)
        termContributions.push([])
        continue
      }
      const idf = inverseDocumentFrequency(this.docCount, posting.df)
      const { ords, tfs } = this.mergeFieldEntries(posting)
      const contributions: number[] = new Array(ords.length)
      for (let i = 0; i < ords.length; i++) {
        contributions[i] = termScore(idf, tfs[i]!, this.docLengths[ords[i]!]!, avgdl)
      }
      termOrds.push(ords)
      termContributions.push(contributions)
    }
    // Sum in query-token order (duplicates again) so that floats equal a per-document left-to-right sum.
    const touched: number[] = []
    const firstSeen = new Array<boolean>(terms.length).fill(false)
    for (const term of termOf) {
      const ords = termOrds[term]
      if (ords === undefined) continue
      const contributions = termContributions[term]!
      const first = !firstSeen[term]
      firstSeen[term] = true
      for (let i = 0; i < ords.length; i++) {
        const hit = this.hitFor(ords[i]!, touched)
        hit.score += contributions[i]!
        if (first) hit.matchedTerms.push(terms[term]!)
      }
    }
    return this.drainHits(touched)
  }

  /** Per-document combined tf of a term: sums the document's per-field entries (one array pass when df = entries). */
  private mergeFieldEntries(posting: Posting): { ords: number[]; tfs: number[] } {
    if (posting.df === posting.ords.length) return posting
    if (this.tfScratch.length < this.docs.length) {
      this.tfScratch = new Int32Array(Math.max(this.docs.length, this.tfScratch.length * 2))
    }
    const scratch = this.tfScratch
    const ords: number[] = []
    for (let i = 0; i < posting.ords.length; i++) {
      const ord = posting.ords[i]!
      if (scratch[ord] === 0) ords.push(ord)
      scratch[ord] += posting.tfs[i]!
    }
    const tfs: number[] = new Array(ords.length)
    for (let i = 0; i < ords.length; i++) {
      tfs[i] = scratch[ords[i]!]!
      scratch[ords[i]!] = 0
    }
    return { ords, tfs }
  }

  /** Boosted scoring: each field with its own statistics, `Σ fieldScore × (boost[field] ?? 1)` in field order. */
  private collectBoosted(queryTokens: ReadonlyArray<string>, boost: Readonly<Record<string, number>>): SearchHit[] {
    const { terms, termOf } = FullTextIndex.distinct(queryTokens)
    const bucketsByTerm: Array<Map<number, FieldBucket>> = []
    const fieldsTouched = new Set<number>()
    for (const term of terms) {
      const buckets = new Map<number, FieldBucket>()
      bucketsByTerm.push(buckets)
      const posting = this.postings.get(term)
      if (posting === undefined) continue
      for (let i = 0; i < posting.ords.length; i++) {
        const doc = this.docs[posting.ords[i]!]!
        const fieldId = doc.entries[posting.slots[i]! * STRIDE + 1] as number
        let bucket = buckets.get(fieldId)
        if (bucket === undefined) {
          bucket = { ords: [], tfs: [], lengths: [] }
          buckets.set(fieldId, bucket)
          fieldsTouched.add(fieldId)
        }
        bucket.ords.push(posting.ords[i]!)
        bucket.tfs.push(posting.tfs[i]!)
        bucket.lengths.push(fieldLengthOf(doc, fieldId))
      }
    }
    const touched: number[] = []
    const fieldScores = new Map<number, number>()
    for (const fieldId of this.fieldOrder(fieldsTouched)) {
      const stats = this.fieldStats[fieldId]!
      const avgdl = stats.totalLength / stats.docCount
      const weight = Object.hasOwn(boost, stats.name) ? boost[stats.name]! : 1
      fieldScores.clear()
      for (const term of termOf) {
        const bucket = bucketsByTerm[term]!.get(fieldId)
        if (bucket === undefined) continue
        const idf = inverseDocumentFrequency(stats.docCount, bucket.ords.length)
        for (let i = 0; i < bucket.ords.length; i++) {
          const ord = bucket.ords[i]!
          const score = termScore(idf, bucket.tfs[i]!, bucket.lengths[i]!, avgdl)
          fieldScores.set(ord, (fieldScores.get(ord) ?? 0) + score)
          const hit = this.hitFor(ord, touched)
          if (!hit.matchedTerms.includes(terms[term]!)) hit.matchedTerms.push(terms[term]!)
        }
      }
      for (const [ord, fieldScore] of fieldScores) this.hitScratch[ord]!.score += fieldScore * weight
    }
    return this.drainHits(touched)
  }

  /** Configured fields keep their configured order; discovered fields are summed in name order (deterministic). */
  private fieldOrder(fieldIds: Set<number>): number[] {
    const ordered = [...fieldIds]
    if (this.configuredFields !== undefined) return ordered.sort((a, b) => a - b)
    return ordered.sort((a, b) => {
      const x = this.fieldStats[a]!.name
      const y = this.fieldStats[b]!.name
      return x < y ? -1 : x > y ? 1 : 0
    })
  }
}

function fieldLengthOf(doc: IndexedDoc, fieldId: number): number {
  const pairs = doc.fieldLengths
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === fieldId) return pairs[i + 1]!
  return 0
}
