import { tokenize, tokenizeInto } from "./tokenizer.js"

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

/** Stride of `Posting.data`: document ordinal, tf in the field, slot of the entry in the document's entries. */
const POSTING_STRIDE = 3
const ORD = 0
const TF = 1
const SLOT = 2
/** Entries a new posting has room for; capacity doubles when full. */
const INITIAL_POSTING_CAPACITY = 2

/**
 * Documents containing one term. An entry is one (document, field) pair; `df` counts distinct documents.
 * Entries are interleaved in one typed array (one cache line per removal swap, no per-entry boxing);
 * removal is swap-with-last, so each entry remembers where its document refers back to it (its slot) and
 * the document remembers the entry's position. A posting whose last entry goes stays in the map with
 * `count = df = 0` (cheap to refill on the next upsert) until empty postings are swept in bulk.
 */
class Posting {
  df = 0
  /** Entries in use: `data[0, count × POSTING_STRIDE)`. */
  count = 0
  data = new Int32Array(INITIAL_POSTING_CAPACITY * POSTING_STRIDE)
  /** Removal pass that last counted this posting's df (a term can repeat across a document's fields). */
  removalStamp = 0
  /**
   * Upsert scratch (no Map per field): the field being tokenized that last saw this term, the term's tf in
   * it and its index among the document's distinct (field, term) pairs.
   */
  fieldStamp = 0
  fieldTf = 0
  fieldSlot = 0
  constructor(readonly term: string) {}

  append(ord: number, tf: number, slot: number): number {
    const position = this.count
    let base = position * POSTING_STRIDE
    if (base === this.data.length) {
      const grown = new Int32Array(this.data.length * 2)
      grown.set(this.data)
      this.data = grown
    }
    const data = this.data
    data[base++] = ord
    data[base++] = tf
    data[base] = slot
    this.count = position + 1
    return position
  }
}

/** Empty postings are swept once there are more than this many and they outnumber live ones. */
const EMPTY_POSTINGS_SWEEP_MIN = 1024

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

interface FieldBucket {
  readonly ords: number[]
  readonly tfs: number[]
  readonly lengths: number[]
}

/** Per distinct query term: the documents containing it and each one's contribution. */
interface TermContributions {
  readonly ords: Int32Array
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
  /** Counter for `Posting.fieldStamp`. */
  private tokenizedFields = 0
  /** Postings in `postings` with no entries (kept for reuse, swept in bulk). */
  private emptyPostings = 0
  // Upsert scratch, reused across documents: tokens of one field; per distinct (field, term) of the document
  // its posting and tf; per field (fieldId, token count, end index into the distinct arrays).
  private readonly tokenScratch: string[] = []
  private readonly distinctPostings: Posting[] = []
  private readonly distinctTfs: number[] = []
  private readonly fieldScratch: number[] = []
  /** Per tokenized field: its `Posting.fieldStamp` value. */
  private readonly fieldStampScratch: number[] = []
  // Replace scratch: per old entry slot its new slot (or -1); per new slot whether an old entry was kept.
  private readonly keptAs: number[] = []
  private readonly kept: boolean[] = []
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
    for (const key of [...this.ordByKey.keys()]) this.removeDocument(key)
    this.sweepEmptyPostings(true)
  }

  /** Indexes (or re-indexes) `value` under `key`; a non-object or a document without tokens is not indexed. */
  upsert(key: string, value: unknown): void {
    const ord = this.ordByKey.get(key)
    if (!isDocument(value)) this.removeDocument(key)
    else if (ord === undefined) this.addDocument(key, value)
    else this.replaceDocument(key, ord, value)
    this.sweepEmptyPostings(false)
  }

  remove(key: string): void {
    this.removeDocument(key)
    this.sweepEmptyPostings(false)
  }

  private addDocument(key: string, value: Record<string, unknown>): void {
    const fieldCount = this.tokenizeFields(value)
    if (fieldCount === 0) return
    const distinctPostings = this.distinctPostings
    const distinctTfs = this.distinctTfs
    const distinct = this.fieldScratch[FIELD_STRIDE * (fieldCount - 1) + 2]!
    const ord = this.freeOrds.pop() ?? this.docs.length
    const entries: Array<Posting | number> = new Array(distinct * STRIDE)
    for (let slot = 0; slot < distinct; slot++) {
      const posting = distinctPostings[slot]!
      const count = posting.count
      if (count === 0) this.emptyPostings--
      // This document's entries are appended consecutively, so an earlier field already counted it in df
      // exactly when it owns the posting's last entry.
      if (count === 0 || posting.data[(count - 1) * POSTING_STRIDE + ORD] !== ord) posting.df++
      entries[slot * STRIDE] = posting
      entries[slot * STRIDE + 1] = posting.append(ord, distinctTfs[slot]!, slot)
    }
    const fields = this.addFieldStats(fieldCount)
    let length = 0
    for (let f = 0; f < fields.length; f += FIELD_STRIDE) length += fields[f + 1]!
    this.docs[ord] = { key, length, entries, fields }
    this.docLengths[ord] = length
    this.ordByKey.set(key, ord)
    this.docCount++
    this.totalLength += length
  }

  /**
   * Re-indexes the document at `ord` as a diff: an entry whose (field, term) is in both versions stays where
   * it is in its posting (only tf and slot are rewritten); the others are removed / appended. Updates that
   * keep most of the text (and common terms, whose postings are the largest) thus skip the swap and append.
   */
  private replaceDocument(key: string, ord: number, value: Record<string, unknown>): void {
    const fieldCount = this.tokenizeFields(value)
    if (fieldCount === 0) return this.removeDocument(key)
    const docs = this.docs
    const old = docs[ord]!
    const oldEntries = old.entries
    const oldFields = old.fields
    const fieldScratch = this.fieldScratch
    const distinctPostings = this.distinctPostings
    const distinctTfs = this.distinctTfs
    const keptAs = this.keptAs
    const kept = this.kept
    const distinct = fieldScratch[FIELD_STRIDE * (fieldCount - 1) + 2]!
    for (let d = 0; d < distinct; d++) kept[d] = false

    // Match old entries to new (field, term) pairs: a posting stamped by the same field id's tokenization.
    let oldSlot = 0
    for (let g = 0; g < oldFields.length; g += FIELD_STRIDE) {
      const fieldId = oldFields[g]!
      const end = oldFields[g + 2]!
      let stamp = -1
      for (let f = 0; f < fieldCount; f++) {
        if (fieldScratch[f * FIELD_STRIDE] === fieldId) stamp = this.fieldStampScratch[f]!
      }
      for (; oldSlot < end; oldSlot++) {
        const posting = oldEntries[oldSlot * STRIDE] as Posting
        if (posting.fieldStamp === stamp) {
          keptAs[oldSlot] = posting.fieldSlot
          kept[posting.fieldSlot] = true
        } else keptAs[oldSlot] = -1
      }
    }

    // df: −1 per distinct term of the old version, +1 per distinct term of the new one.
    const removedStamp = ++this.removals
    for (let i = 0; i < oldEntries.length; i += STRIDE) {
      const posting = oldEntries[i] as Posting
      if (posting.removalStamp !== removedStamp) {
        posting.removalStamp = removedStamp
        posting.df--
      }
    }
    const addedStamp = ++this.removals
    for (let d = 0; d < distinct; d++) {
      const posting = distinctPostings[d]!
      if (posting.removalStamp !== addedStamp) {
        posting.removalStamp = addedStamp
        posting.df++
      }
    }

    // Unmatched old entries leave their postings first (swaps keep `oldEntries` positions current, also for
    // this document's own kept entries, whose stored slot is still the old one).
    for (let slot = 0; slot < oldSlot; slot++) {
      if (keptAs[slot] === -1) this.removeEntry(oldEntries[slot * STRIDE] as Posting, oldEntries[slot * STRIDE + 1] as number)
    }
    const entries: Array<Posting | number> = new Array(distinct * STRIDE)
    for (let slot = 0; slot < oldSlot; slot++) {
      const d = keptAs[slot]!
      if (d === -1) continue
      const posting = oldEntries[slot * STRIDE] as Posting
      const position = oldEntries[slot * STRIDE + 1] as number
      posting.data[position * POSTING_STRIDE + TF] = distinctTfs[d]!
      posting.data[position * POSTING_STRIDE + SLOT] = d
      entries[d * STRIDE] = posting
      entries[d * STRIDE + 1] = position
    }
    for (let d = 0; d < distinct; d++) {
      if (kept[d]) continue
      const posting = distinctPostings[d]!
      if (posting.count === 0) this.emptyPostings--
      entries[d * STRIDE] = posting
      entries[d * STRIDE + 1] = posting.append(ord, distinctTfs[d]!, d)
    }

    this.subtractFieldStats(oldFields)
    const fields = this.addFieldStats(fieldCount)
    let length = 0
    for (let f = 0; f < fields.length; f += FIELD_STRIDE) length += fields[f + 1]!
    docs[ord] = { key, length, entries, fields }
    this.docLengths[ord] = length
    this.totalLength += length - old.length
  }

  /** Swap-with-last removal of the entry at `position` (df is the caller's business). */
  private removeEntry(posting: Posting, position: number): void {
    const last = posting.count - 1
    if (position !== last) {
      const data = posting.data
      const from = last * POSTING_STRIDE
      const to = position * POSTING_STRIDE
      const movedOrd = data[from + ORD]!
      const movedSlot = data[from + SLOT]!
      data[to + ORD] = movedOrd
      data[to + TF] = data[from + TF]!
      data[to + SLOT] = movedSlot
      this.docs[movedOrd]!.entries[movedSlot * STRIDE + 1] = position
    }
    posting.count = last
    if (last === 0) this.emptyPostings++
  }

  private subtractFieldStats(fields: ReadonlyArray<number>): void {
    for (let i = 0; i < fields.length; i += FIELD_STRIDE) {
      const stats = this.fieldStats[fields[i]!]!
      stats.docCount--
      stats.totalLength -= fields[i + 1]!
    }
  }

  /** Adds the tokenized fields' statistics; returns the document's (fieldId, length, end) triples. */
  private addFieldStats(fieldCount: number): number[] {
    const fieldScratch = this.fieldScratch
    const fields: number[] = new Array(fieldCount * FIELD_STRIDE)
    for (let f = 0; f < fieldCount * FIELD_STRIDE; f += FIELD_STRIDE) {
      const stats = this.fieldStats[fieldScratch[f]!]!
      stats.docCount++
      stats.totalLength += fieldScratch[f + 1]!
      fields[f] = fieldScratch[f]!
      fields[f + 1] = fieldScratch[f + 1]!
      fields[f + 2] = fieldScratch[f + 2]!
    }
    return fields
  }

  private removeDocument(key: string): void {
    const ord = this.ordByKey.get(key)
    if (ord === undefined) return
    const doc = this.docs[ord]!
    const entries = doc.entries
    // A term can repeat across fields; df drops once per distinct term (stamped, no Set per removal).
    const stamp = ++this.removals
    for (let i = 0; i < entries.length; i += STRIDE) {
      const posting = entries[i] as Posting
      this.removeEntry(posting, entries[i + 1] as number)
      if (posting.removalStamp !== stamp) {
        posting.removalStamp = stamp
        posting.df--
      }
    }
    this.subtractFieldStats(doc.fields)
    this.docs[ord] = undefined
    this.docLengths[ord] = 0
    this.freeOrds.push(ord)
    this.ordByKey.delete(key)
    this.docCount--
    this.totalLength -= doc.length
  }

  /** Drops empty postings in one pass when they are many (bounded memory for terms that left the index). */
  private sweepEmptyPostings(force: boolean): void {
    const empty = this.emptyPostings
    if (empty === 0) return
    if (!force && (empty <= EMPTY_POSTINGS_SWEEP_MIN || empty * 2 <= this.postings.size)) return
    for (const [term, posting] of this.postings) if (posting.count === 0) this.postings.delete(term)
    this.emptyPostings = 0
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
      if (tf !== undefined) {
        tfByTerm.set(posting.term, tf + posting.data[(entries[i + 1] as number) * POSTING_STRIDE + TF]!)
      }
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

  /**
   * Tokenizes the indexed fields of `value` into the upsert scratch: per field with at least one token its
   * (fieldId, token count, end) in `fieldScratch`, and its distinct terms in first-occurrence order with their
   * tf in `distinctPostings` / `distinctTfs`. Creates (empty) postings for new terms. Returns the field count.
   */
  private tokenizeFields(value: Record<string, unknown>): number {
    const names = this.configuredFields ?? Object.keys(value)
    const tokens = this.tokenScratch
    const distinctPostings = this.distinctPostings
    const distinctTfs = this.distinctTfs
    const fieldScratch = this.fieldScratch
    let fieldCount = 0
    let distinct = 0
    for (const name of names) {
      const text = value[name]
      if (typeof text !== "string") continue
      const tokenCount = tokenizeInto(text, tokens)
      if (tokenCount === 0) continue
      const fieldStamp = ++this.tokenizedFields
      const fieldStart = distinct
      for (let t = 0; t < tokenCount; t++) {
        const posting = this.postingOf(tokens[t]!)
        if (posting.fieldStamp === fieldStamp) {
          posting.fieldTf++
        } else {
          posting.fieldStamp = fieldStamp
          posting.fieldTf = 1
          posting.fieldSlot = distinct
          distinctPostings[distinct++] = posting
        }
      }
      for (let d = fieldStart; d < distinct; d++) distinctTfs[d] = distinctPostings[d]!.fieldTf
      fieldScratch[fieldCount * FIELD_STRIDE] = this.fieldId(name)
      fieldScratch[fieldCount * FIELD_STRIDE + 1] = tokenCount
      fieldScratch[fieldCount * FIELD_STRIDE + 2] = distinct
      this.fieldStampScratch[fieldCount] = fieldStamp
      fieldCount++
    }
    return fieldCount
  }

  /** The posting of `term`, created empty when absent. */
  private postingOf(term: string): Posting {
    let posting = this.postings.get(term)
    if (posting === undefined) {
      const owned = detach(term)
      posting = new Posting(owned)
      this.postings.set(owned, posting)
      this.emptyPostings++
    }
    return posting
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
      // An empty (retained) posting is an absent term.
      if (posting === undefined || posting.df === 0) return undefined
      const idf = inverseDocumentFrequency(this.docCount, posting.df)
      const { ords, tfs } = this.combinedTermFrequencies(posting)
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

  /** Per-document combined tf of a term: sums the document's per-field entries (no merging when df = entries). */
  private combinedTermFrequencies(posting: Posting): { ords: Int32Array; tfs: Int32Array } {
    const { data, count } = posting
    const ords = new Int32Array(posting.df)
    const tfs = new Int32Array(posting.df)
    if (posting.df === count) {
      for (let i = 0, base = 0; i < count; i++, base += POSTING_STRIDE) {
        ords[i] = data[base + ORD]!
        tfs[i] = data[base + TF]!
      }
      return { ords, tfs }
    }
    const scratch = this.tfScratch
    let distinct = 0
    for (let base = 0; base < count * POSTING_STRIDE; base += POSTING_STRIDE) {
      const ord = data[base + ORD]!
      if (scratch[ord] === 0) ords[distinct++] = ord
      scratch[ord]! += data[base + TF]!
    }
    for (let i = 0; i < distinct; i++) {
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
      const { data, count } = posting
      for (let base = 0; base < count * POSTING_STRIDE; base += POSTING_STRIDE) {
        const ord = data[base + ORD]!
        const doc = this.docs[ord]!
        const group = fieldGroupOf(doc, data[base + SLOT]!)
        const fieldId = doc.fields[group]!
        let bucket = buckets.get(fieldId)
        if (bucket === undefined) {
          bucket = { ords: [], tfs: [], lengths: [] }
          buckets.set(fieldId, bucket)
          fieldsTouched.add(fieldId)
        }
        bucket.ords.push(ord)
        bucket.tfs.push(data[base + TF]!)
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
