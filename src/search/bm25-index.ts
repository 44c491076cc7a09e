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
  readonly score: number
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
  readonly term: string
  df: number
  /** Removal pass that last counted this posting's df (a term can repeat across a document's fields). */
  removalStamp: number
  readonly ords: number[]
  readonly tfs: number[]
  readonly slots: number[]
}

/** Stride of `IndexedDoc.entries`: posting, position in the posting. */
const STRIDE = 2
/** Stride of `IndexedDoc.fields`: field id, field token count, end slot of the field's entries. */
const FIELD_STRIDE = 3

interface IndexedDoc {
  readonly key: string
  /** Combined token count (dl) over all indexed fields. */
  readonly length: number
  /**
   * Flat (posting, postingPosition) pairs, one per distinct term of each field, grouped by field. Referencing
   * the posting (not the token string) shares one term string per index instead of one per document.
   */
  readonly entries: Array<Posting | number>
  /** Flat (fieldId, fieldTokenCount, entryEndSlot) triples for the fields with at least one token. */
  readonly fields: number[]
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

/** Per distinct query term: the documents containing it and each one's contribution. */
interface TermContributions {
  readonly ords: ReadonlyArray<number>
  readonly scores: Float64Array
}

const isDocument = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const compareKeys = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const hasEntries = (boost: Readonly<Record<string, number>> | undefined): boost is Readonly<Record<string, number>> => {
  if (boost === undefined) return false
  for (const _ in boost) return true
  return false
}

/** Distinct query tokens in first-occurrence order, and for each query token the index of its distinct term. */
function distinctTerms(queryTokens: ReadonlyArray<string>): { terms: string[]; termOf: number[] } {
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

/** Up to this `limit`, a bounded heap picks the top hits; above it, a full ordering is cheaper. */
const TOP_K_HEAP_MAX = 1000

/** Bit marking "document matched distinct term i"; beyond 32 terms bits alias and serve only as "touched". */
const termBit = (i: number): number => 1 << (i & 31)

/**
 * Incremental BM25 full-text index of one map (protocol §4.10). Statistics (N, total length, df, tf, and the
 * same per field for boosted queries) are maintained on every upsert/remove in O(tokens of the document);
 * a search costs O(postings of the query terms) plus ordering the hits (a bounded heap when `limit` is set).
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
  /** Counter for `Posting.removalStamp`. */
  private removals = 0
  private docCount = 0
  private totalLength = 0
  // Per-ordinal scratch for searches; every slot is back to zero between searches.
  private scoreScratch = new Float64Array(0)
  private maskScratch = new Uint32Array(0)
  private fieldScoreScratch = new Float64Array(0)
  private tfScratch = new Int32Array(0)

  /** `fields`: the map's configured field list; absent = every top-level string property. */
  constructor(fields?: ReadonlyArray<string>) {
    // A field listed twice is indexed once (it would otherwise count twice in its own statistics).
    this.configuredFields = fields === undefined ? undefined : [...new Set(fields)]
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
    let entryCount = 0
    for (const field of fields) {
      length += field.length
      entryCount += field.termFrequencies.size
    }
    if (length === 0) return

    const ord = this.freeOrds.pop() ?? this.docs.length
    const entries: Array<Posting | number> = new Array(entryCount * STRIDE)
    const fieldInfo: number[] = new Array(fields.length * FIELD_STRIDE)
    let slot = 0
    for (let f = 0; f < fields.length; f++) {
      const { fieldId, termFrequencies, length: fieldLength } = fields[f]!
      const stats = this.fieldStats[fieldId]!
      stats.docCount++
      stats.totalLength += fieldLength
      fieldInfo[FIELD_STRIDE * f] = fieldId
      fieldInfo[FIELD_STRIDE * f + 1] = fieldLength
      for (const [term, tf] of termFrequencies) {
        let posting = this.postings.get(term)
        if (posting === undefined) {
          const owned = detach(term)
          posting = { term: owned, df: 0, removalStamp: 0, ords: [], tfs: [], slots: [] }
          this.postings.set(owned, posting)
        }
        const position = posting.ords.length
        // This document's entries are appended consecutively, so an earlier field already counted it in df
        // exactly when it owns the posting's last entry.
        if (position === 0 || posting.ords[position - 1] !== ord) posting.df++
        posting.ords.push(ord)
        posting.tfs.push(tf)
        posting.slots.push(slot)
        entries[slot * STRIDE] = posting
        entries[slot * STRIDE + 1] = position
        slot++
      }
      fieldInfo[FIELD_STRIDE * f + 2] = slot
    }
    this.docs[ord] = { key, length, entries, fields: fieldInfo }
    this.docLengths[ord] = length
    this.ordByKey.set(key, ord)
    this.docCount++
    this.totalLength += length
  }

  remove(key: string): void {
    const ord = this.ordByKey.get(key)
    if (ord === undefined) return
    const doc = this.docs[ord]!
    const { entries, fields } = doc
    // A term can repeat across fields; df drops once per distinct term (stamped, no Set per removal).
    const stamp = ++this.removals
    for (let i = 0; i < entries.length; i += STRIDE) {
      const posting = entries[i] as Posting
      const position = entries[i + 1] as number
      const last = posting.ords.length - 1
      if (position !== last) {
        const movedOrd = posting.ords[last]!
        const movedSlot = posting.slots[last]!
        posting.ords[position] = movedOrd
        posting.tfs[position] = posting.tfs[last]!
        posting.slots[position] = movedSlot
        this.docs[movedOrd]!.entries[movedSlot * STRIDE + 1] = position
      }
      posting.ords.pop()
      posting.tfs.pop()
      posting.slots.pop()
      if (posting.removalStamp !== stamp) {
        posting.removalStamp = stamp
        posting.df--
      }
      if (posting.ords.length === 0) this.postings.delete(posting.term)
    }
    for (let i = 0; i < fields.length; i += FIELD_STRIDE) {
      const stats = this.fieldStats[fields[i]!]!
      stats.docCount--
      stats.totalLength -= fields[i + 1]!
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
    this.ensureScratch()
    const { terms, termOf } = distinctTerms(queryTokens)
    const touched: number[] = []
    const matchOrder = hasEntries(options.boost)
      ? this.accumulateBoosted(terms, termOf, options.boost, touched)
      : (this.accumulateCombined(terms, termOf, touched), undefined)
    try {
      return this.rank(touched, terms, matchOrder, options)
    } finally {
      for (const ord of touched) {
        this.scoreScratch[ord] = 0
        this.maskScratch[ord] = 0
      }
    }
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
      const posting = entries[i] as Posting
      const tf = tfByTerm.get(posting.term)
      if (tf !== undefined) tfByTerm.set(posting.term, tf + posting.tfs[entries[i + 1] as number]!)
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

  private ensureScratch(): void {
    const needed = this.docs.length
    if (this.scoreScratch.length >= needed) return
    const capacity = Math.max(needed, this.scoreScratch.length * 2, 64)
    this.scoreScratch = new Float64Array(capacity)
    this.maskScratch = new Uint32Array(capacity)
    this.fieldScoreScratch = new Float64Array(capacity)
    this.tfScratch = new Int32Array(capacity)
  }

  /** Unboosted scoring over the combined statistics into `scoreScratch` / `maskScratch`. */
  private accumulateCombined(terms: string[], termOf: number[], touched: number[]): void {
    const avgdl = this.totalLength / this.docCount
    const perTerm: Array<TermContributions | undefined> = terms.map((term) => {
      const posting = this.postings.get(term)
      if (posting === undefined) return undefined
      const idf = inverseDocumentFrequency(this.docCount, posting.df)
      const { ords, tfs } = this.mergeFieldEntries(posting)
      const scores = new Float64Array(ords.length)
      for (let i = 0; i < ords.length; i++) scores[i] = termScore(idf, tfs[i]!, this.docLengths[ords[i]!]!, avgdl)
      return { ords, scores }
    })
    // Sum in query-token order (duplicates again): each document's float sum is the reference's left-to-right sum.
    const scores = this.scoreScratch
    const masks = this.maskScratch
    for (const term of termOf) {
      const contributions = perTerm[term]
      if (contributions === undefined) continue
      const bit = termBit(term)
      const { ords } = contributions
      for (let i = 0; i < ords.length; i++) {
        const ord = ords[i]!
        if (masks[ord] === 0) touched.push(ord)
        masks[ord]! |= bit
        scores[ord]! += contributions.scores[i]!
      }
    }
  }

  /** Per-document combined tf of a term: sums the document's per-field entries (skipped when df = entries). */
  private mergeFieldEntries(posting: Posting): { ords: ReadonlyArray<number>; tfs: ReadonlyArray<number> } {
    if (posting.df === posting.ords.length) return posting
    const scratch = this.tfScratch
    const ords: number[] = []
    for (let i = 0; i < posting.ords.length; i++) {
      const ord = posting.ords[i]!
      if (scratch[ord] === 0) ords.push(ord)
      scratch[ord]! += posting.tfs[i]!
    }
    const tfs: number[] = new Array(ords.length)
    for (let i = 0; i < ords.length; i++) {
      tfs[i] = scratch[ords[i]!]!
      scratch[ords[i]!] = 0
    }
    return { ords, tfs }
  }

  /**
   * Boosted scoring: each field with its own statistics, `Σ fieldScore × (boost[field] ?? 1)` in field order.
   * Returns, per touched ordinal, the distinct-term indices in the union order (field order, then query order).
   */
  private accumulateBoosted(
    terms: string[],
    termOf: number[],
    boost: Readonly<Record<string, number>>,
    touched: number[]
  ): Map<number, number[]> {
    const bucketsByTerm: Array<Map<number, FieldBucket>> = []
    const fieldsTouched = new Set<number>()
    for (const term of terms) {
      const buckets = new Map<number, FieldBucket>()
      bucketsByTerm.push(buckets)
      const posting = this.postings.get(term)
      if (posting === undefined) continue
      for (let i = 0; i < posting.ords.length; i++) {
        const doc = this.docs[posting.ords[i]!]!
        const group = fieldGroupOf(doc, posting.slots[i]!)
        const fieldId = doc.fields[group]!
        let bucket = buckets.get(fieldId)
        if (bucket === undefined) {
          bucket = { ords: [], tfs: [], lengths: [] }
          buckets.set(fieldId, bucket)
          fieldsTouched.add(fieldId)
        }
        bucket.ords.push(posting.ords[i]!)
        bucket.tfs.push(posting.tfs[i]!)
        bucket.lengths.push(doc.fields[group + 1]!)
      }
    }
    const scores = this.scoreScratch
    const masks = this.maskScratch
    const fieldScores = this.fieldScoreScratch
    const matchOrder = new Map<number, number[]>()
    const fieldTouched: number[] = []
    for (const fieldId of this.fieldOrder(fieldsTouched)) {
      const stats = this.fieldStats[fieldId]!
      const avgdl = stats.totalLength / stats.docCount
      const weight = Object.hasOwn(boost, stats.name) ? boost[stats.name]! : 1
      for (const term of termOf) {
        const bucket = bucketsByTerm[term]!.get(fieldId)
        if (bucket === undefined) continue
        const idf = inverseDocumentFrequency(stats.docCount, bucket.ords.length)
        for (let i = 0; i < bucket.ords.length; i++) {
          const ord = bucket.ords[i]!
          if (fieldScores[ord] === 0) fieldTouched.push(ord)
          fieldScores[ord]! += termScore(idf, bucket.tfs[i]!, bucket.lengths[i]!, avgdl)
          let order = matchOrder.get(ord)
          if (order === undefined) {
            order = []
            matchOrder.set(ord, order)
            touched.push(ord)
          }
          if (!order.includes(term)) order.push(term)
          masks[ord]! |= termBit(term)
        }
      }
      for (const ord of fieldTouched) {
        scores[ord]! += fieldScores[ord]! * weight
        fieldScores[ord] = 0
      }
      fieldTouched.length = 0
    }
    return matchOrder
  }

  /** Configured fields keep their configured order; discovered fields are summed in name order (deterministic). */
  private fieldOrder(fieldIds: Set<number>): number[] {
    const ordered = [...fieldIds]
    if (this.configuredFields !== undefined) return ordered.sort((a, b) => a - b)
    return ordered.sort((a, b) => compareKeys(this.fieldStats[a]!.name, this.fieldStats[b]!.name))
  }

  /** minScore filter, order (score desc, key asc), limit, and materialization of the surviving hits only. */
  private rank(
    touched: number[],
    terms: string[],
    matchOrder: Map<number, number[]> | undefined,
    options: SearchOptions
  ): SearchHit[] {
    const scores = this.scoreScratch
    const docs = this.docs
    const minScore = options.minScore
    const candidates = minScore === undefined ? touched : touched.filter((ord) => scores[ord]! >= minScore)
    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : candidates.length
    const ordered =
      limit <= TOP_K_HEAP_MAX && limit < candidates.length
        ? topK(candidates, limit, (a, b) => scores[b]! - scores[a]! || compareKeys(docs[a]!.key, docs[b]!.key))
        : this.sortByScoreThenKey(candidates, limit)
    const hits: SearchHit[] = new Array(ordered.length)
    for (let i = 0; i < ordered.length; i++) {
      const ord = ordered[i]!
      hits[i] = { key: docs[ord]!.key, score: scores[ord]!, matchedTerms: this.matchedTerms(ord, terms, matchOrder) }
    }
    return hits
  }

  /**
   * Full ordering without a JS comparator on the hot path: bucket by score, sort the distinct scores natively,
   * and sort each tie bucket's keys with the default (UTF-16 code unit) string order. Stops after `limit`.
   */
  private sortByScoreThenKey(candidates: ReadonlyArray<number>, limit: number): number[] {
    const scores = this.scoreScratch
    const buckets = new Map<number, number[]>()
    for (const ord of candidates) {
      const score = scores[ord]!
      const bucket = buckets.get(score)
      if (bucket === undefined) buckets.set(score, [ord])
      else bucket.push(ord)
    }
    const distinct = new Float64Array(buckets.size)
    let d = 0
    for (const score of buckets.keys()) distinct[d++] = score
    distinct.sort()
    const ordered: number[] = []
    for (let i = distinct.length - 1; i >= 0 && ordered.length < limit; i--) {
      const bucket = buckets.get(distinct[i]!)!
      if (bucket.length === 1) {
        ordered.push(bucket[0]!)
        continue
      }
      const keys = bucket.map((ord) => this.docs[ord]!.key).sort()
      for (let k = 0; k < keys.length && ordered.length < limit; k++) ordered.push(this.ordByKey.get(keys[k]!)!)
    }
    return ordered
  }

  private matchedTerms(ord: number, terms: string[], matchOrder: Map<number, number[]> | undefined): string[] {
    const order = matchOrder?.get(ord)
    if (order !== undefined) return order.map((term) => terms[term]!)
    if (terms.length <= 32) {
      const mask = this.maskScratch[ord]!
      const matched: string[] = []
      for (let i = 0; i < terms.length; i++) if ((mask & (1 << i)) !== 0) matched.push(terms[i]!)
      return matched
    }
    const present = new Set<string>()
    const { entries } = this.docs[ord]!
    for (let i = 0; i < entries.length; i += STRIDE) present.add((entries[i] as Posting).term)
    return terms.filter((term) => present.has(term))
  }
}

/**
 * A copy of a token that does not keep its source text alive: tokens from `split`/`slice` can be V8 sliced
 * strings pointing into the whole field text, and a posting's term lives as long as the term is indexed.
 */
const detach = (token: string): string => (" " + token).slice(1)

/** Offset in `doc.fields` of the field owning entry `slot` (a document has few fields: a linear scan). */
function fieldGroupOf(doc: IndexedDoc, slot: number): number {
  const fields = doc.fields
  let i = 0
  while (i + FIELD_STRIDE < fields.length && slot >= fields[i + 2]!) i += FIELD_STRIDE
  return i
}

/** The first `k` items in `before` order, via a bounded max-heap whose root is the worst kept item. */
function topK(items: ReadonlyArray<number>, k: number, before: (a: number, b: number) => number): number[] {
  const heap: number[] = []
  const siftUp = (i: number) => {
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (before(heap[parent]!, heap[i]!) >= 0) return
      ;[heap[parent], heap[i]] = [heap[i]!, heap[parent]!]
      i = parent
    }
  }
  const siftDown = (i: number) => {
    for (;;) {
      const left = 2 * i + 1
      const right = left + 1
      let worst = i
      if (left < heap.length && before(heap[left]!, heap[worst]!) > 0) worst = left
      if (right < heap.length && before(heap[right]!, heap[worst]!) > 0) worst = right
      if (worst === i) return
      ;[heap[worst], heap[i]] = [heap[i]!, heap[worst]!]
      i = worst
    }
  }
  for (const item of items) {
    if (heap.length < k) {
      heap.push(item)
      siftUp(heap.length - 1)
    } else if (before(item, heap[0]!) < 0) {
      heap[0] = item
      siftDown(0)
    }
  }
  return heap.sort(before)
}
