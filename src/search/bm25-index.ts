import { AsciiWordMemo, tokenize, tokenizeInto } from "./tokenizer.js"

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

/** Stride of `Posting.data`: document ordinal, the document's version when added, field id, tf in the field. */
const POSTING_STRIDE = 4
const ORD = 0
const VERSION = 1
const FIELD = 2
const TF = 3
/** Entries a new posting has room for; capacity doubles when full. */
const INITIAL_POSTING_CAPACITY = 2
/** A posting is compacted once it holds at least this many dead entries and more than half as many as live ones. */
const COMPACT_MIN_DEAD = 2
/**
 * Versions count up per ordinal and are never reused; an ordinal whose version reaches this is retired
 * (its document moves to a fresh ordinal), so a stale entry can never look current again.
 */
const MAX_VERSION = 0x7fffffff

/**
 * Documents containing one term. An entry is one (document, field) pair; `df` counts distinct documents.
 * Entries are interleaved in one typed array (no per-entry boxing) and are never moved when their
 * document changes: a replaced or removed document's entries just stop being current (their version is
 * older than the document's, see `FullTextIndex.docVersions`) and count as `dead`. Compaction drops dead
 * entries in one sequential pass once they reach half the live ones, so a posting holds at most about
 * 1.5× its live entries. (Removing entries in place needs a back-pointer update in another document per
 * removal: a cache miss per term that dominated indexing time in a running server.)
 */
class Posting {
  df = 0
  /** Entries in `data[0, count × POSTING_STRIDE)`, dead ones included. */
  count = 0
  dead = 0
  data = new Int32Array(INITIAL_POSTING_CAPACITY * POSTING_STRIDE)
  /** Pass that last counted this posting's df (a term can repeat across a document's fields). */
  dfStamp = 0
  /** Upsert scratch (no Map per field): the field being tokenized that last saw this term, and its tf there. */
  fieldStamp = 0
  fieldTf = 0
  constructor(readonly term: string) {}

  append(ord: number, version: number, fieldId: number, tf: number): void {
    let base = this.count * POSTING_STRIDE
    if (base === this.data.length) {
      const grown = new Int32Array(this.data.length * 2)
      grown.set(this.data)
      this.data = grown
    }
    const data = this.data
    data[base++] = ord
    data[base++] = version
    data[base++] = fieldId
    data[base] = tf
    this.count++
  }
}

/** Empty postings are swept once there are more than this many and they outnumber live ones. */
const EMPTY_POSTINGS_SWEEP_MIN = 1024

/** Stride of `IndexedDoc.entries`: posting, tf. */
const STRIDE = 2
/** Stride of `IndexedDoc.fields`: field id, field token count, end slot of the field's entries. */
const FIELD_STRIDE = 3

/**
 * One indexed document. A replace rewrites it in place (same object and arrays): documents live until their
 * key is next written, long enough to be promoted, so allocating new ones per write would be old-generation
 * garbage at the write rate.
 */
interface IndexedDoc {
  readonly key: string
  /** Combined token count (dl) over all indexed fields. */
  length: number
  /**
   * Flat (posting, tf) pairs, one per distinct term of each field, grouped by field, in
   * `[0, entryCount(doc))`: the array is reused across versions and may be longer. Referencing the posting
   * (not the token string) shares one term string per index instead of one per document.
   */
  readonly entries: Array<Posting | number>
  /** Flat (fieldId, fieldTokenCount, entryEndSlot) triples for the fields with at least one token. */
  readonly fields: number[]
}

/** Used length of `doc.entries`: the end slot of its last field. */
const entryCount = (doc: IndexedDoc): number => doc.fields[doc.fields.length - 1]! * STRIDE

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
  /** `ordOf`'s memory of the latest key written and its ordinal. */
  private recentKey: string | undefined
  private recentOrd: number | undefined
  private readonly docs: Array<IndexedDoc | undefined> = []
  private readonly docLengths: number[] = []
  private readonly freeOrds: number[] = []
  /** Per ordinal: the version its current entries carry (entries with another version are dead). */
  private docVersions = new Int32Array(64)
  /** Counter for `Posting.dfStamp` (one per pass that counts df up or down). */
  private dfPasses = 0
  /** Counter for `Posting.fieldStamp`. */
  private tokenizedFields = 0
  /** Postings in `postings` with df 0 (kept for reuse, swept in bulk). */
  private emptyPostings = 0
  // Upsert scratch, reused across documents: tokens of one field; per distinct (field, term) of the document
  // its posting and tf; per field (fieldId, token count, end index into the distinct arrays).
  private readonly tokenScratch: string[] = []
  private readonly postingScratch: Posting[] = []
  /** ASCII word → its posting: indexing a known word is one probe (emptied whenever postings are swept). */
  private readonly wordPostings = new AsciiWordMemo<Posting>((token) => this.postingOf(token))
  private readonly distinctPostings: Posting[] = []
  private readonly distinctTfs: number[] = []
  private readonly fieldScratch: number[] = []
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
    return this.ordOf(key) !== undefined
  }

  clear(): void {
    for (const [key, ord] of [...this.ordByKey]) this.removeDocument(key, ord)
    this.sweepEmptyPostings(true)
  }

  /** Indexes (or re-indexes) `value` under `key`; a non-object or a document without tokens is not indexed. */
  upsert(key: string, value: unknown): void {
    const ord = this.ordOf(key)
    if (!isDocument(value)) {
      if (ord !== undefined) this.removeDocument(key, ord)
    } else if (ord === undefined) this.addDocument(key, value)
    else this.replaceDocument(key, ord, value)
    this.sweepEmptyPostings(false)
  }

  remove(key: string): void {
    const ord = this.ordOf(key)
    if (ord !== undefined) this.removeDocument(key, ord)
    this.sweepEmptyPostings(false)
  }

  /**
   * The ordinal of `key` (undefined: not indexed). The latest key written is remembered: a live search
   * scores the document its change just indexed, and a map lookup per change showed in server profiles.
   */
  private ordOf(key: string): number | undefined {
    return key === this.recentKey ? this.recentOrd : this.ordByKey.get(key)
  }

  /** Records `key`'s ordinal after each write of it; every change of `ordByKey` goes through here. */
  private remember(key: string, ord: number | undefined): void {
    this.recentKey = key
    this.recentOrd = ord
  }

  private addDocument(key: string, value: Record<string, unknown>): void {
    const fieldCount = this.tokenizeFields(value)
    if (fieldCount === 0) return this.remember(key, undefined)
    const ord = this.freeOrds.pop() ?? this.docs.length
    if (ord >= this.docVersions.length) {
      const grown = new Int32Array(Math.max(ord + 1, this.docVersions.length * 2))
      grown.set(this.docVersions)
      this.docVersions = grown
    }
    const entries = this.appendEntries(ord, this.docVersions[ord]!, fieldCount, [], 0)
    const fields = this.addFieldStats(fieldCount, [])
    let length = 0
    for (let f = 0; f < fields.length; f += FIELD_STRIDE) length += fields[f + 1]!
    this.docs[ord] = { key, length, entries, fields }
    this.docLengths[ord] = length
    this.ordByKey.set(key, ord)
    this.remember(key, ord)
    this.docCount++
    this.totalLength += length
  }

  /**
   * Adds the tokenized document (the upsert scratch) to its postings under (`ord`, `version`), counting df
   * once per distinct term; writes the document's (posting, tf) entries into `entries` (from index 0;
   * `[end, staleEnd)` is cleared, so the array keeps no posting alive) and returns it.
   */
  private appendEntries(
    ord: number,
    version: number,
    fieldCount: number,
    entries: Array<Posting | number>,
    staleEnd: number
  ): Array<Posting | number> {
    const fieldScratch = this.fieldScratch
    const distinctPostings = this.distinctPostings
    const distinctTfs = this.distinctTfs
    const distinct = fieldScratch[FIELD_STRIDE * (fieldCount - 1) + 2]!
    const stamp = ++this.dfPasses
    let slot = 0
    for (let f = 0; f < fieldCount; f++) {
      const fieldId = fieldScratch[f * FIELD_STRIDE]!
      const end = fieldScratch[f * FIELD_STRIDE + 2]!
      for (; slot < end; slot++) {
        const posting = distinctPostings[slot]!
        const tf = distinctTfs[slot]!
        if (posting.dfStamp !== stamp) {
          posting.dfStamp = stamp
          if (posting.df++ === 0) this.emptyPostings--
        }
        posting.append(ord, version, fieldId, tf)
        entries[slot * STRIDE] = posting
        entries[slot * STRIDE + 1] = tf
      }
    }
    for (let i = distinct * STRIDE; i < staleEnd; i++) entries[i] = 0
    return entries
  }

  /**
   * Marks a document's entries dead (the caller has already moved its ordinal to a new version): df drops
   * once per distinct term.
   */
  private retireEntries(entries: ReadonlyArray<Posting | number>, end: number): void {
    const stamp = ++this.dfPasses
    for (let i = 0; i < end; i += STRIDE) {
      const posting = entries[i] as Posting
      posting.dead++
      if (posting.dfStamp !== stamp) {
        posting.dfStamp = stamp
        if (--posting.df === 0) this.emptyPostings++
      }
    }
  }

  /**
   * After `retireEntries`: a posting left without documents is emptied at once, one whose dead entries
   * reach half its live ones is compacted.
   */
  private tidyPostings(entries: ReadonlyArray<Posting | number>, end: number): void {
    for (let i = 0; i < end; i += STRIDE) {
      const posting = entries[i] as Posting
      if (posting.df === 0) {
        // No document left: every entry is dead.
        posting.count = 0
        posting.dead = 0
      } else if (posting.dead >= COMPACT_MIN_DEAD && posting.dead * 3 > posting.count) this.compact(posting)
    }
  }

  /** Drops a posting's dead entries in one pass, keeping the live ones in order; shrinks a mostly empty array. */
  private compact(posting: Posting): void {
    const versions = this.docVersions
    const data = posting.data
    const end = posting.count * POSTING_STRIDE
    let w = 0
    for (let r = 0; r < end; r += POSTING_STRIDE) {
      if (versions[data[r + ORD]!] !== data[r + VERSION]) continue
      if (w !== r) {
        data[w + ORD] = data[r + ORD]!
        data[w + VERSION] = data[r + VERSION]!
        data[w + FIELD] = data[r + FIELD]!
        data[w + TF] = data[r + TF]!
      }
      w += POSTING_STRIDE
    }
    posting.count = w / POSTING_STRIDE
    posting.dead = 0
    // Appends double the array; one left over 4× its live entries goes back to 2× (at most one copy per
    // compaction, which comes after ~count/2 writes to the term).
    const capacity = Math.max(INITIAL_POSTING_CAPACITY, posting.count * 2) * POSTING_STRIDE
    if (data.length >= 2 * capacity) posting.data = data.slice(0, capacity)
  }

  /**
   * Re-indexes the document at `ord`: its old entries become dead (a version bump, no posting is searched or
   * rewritten), and the new version's entries are appended.
   */
  private replaceDocument(key: string, ord: number, value: Record<string, unknown>): void {
    if (this.docVersions[ord]! >= MAX_VERSION - 1) {
      // Retire the ordinal (removeDocument does not free it at this version) and index under a fresh one.
      this.removeDocument(key, ord)
      this.addDocument(key, value)
      return
    }
    const fieldCount = this.tokenizeFields(value)
    if (fieldCount === 0) return this.removeDocument(key, ord)
    const doc = this.docs[ord]!
    const version = ++this.docVersions[ord]!
    const oldEnd = entryCount(doc)
    this.retireEntries(doc.entries, oldEnd)
    this.tidyPostings(doc.entries, oldEnd)
    this.appendEntries(ord, version, fieldCount, doc.entries, oldEnd)
    this.subtractFieldStats(doc.fields)
    const fields = this.addFieldStats(fieldCount, doc.fields)
    let length = 0
    for (let f = 0; f < fields.length; f += FIELD_STRIDE) length += fields[f + 1]!
    this.totalLength += length - doc.length
    doc.length = length
    this.docLengths[ord] = length
    this.remember(key, ord)
  }

  private subtractFieldStats(fields: ReadonlyArray<number>): void {
    for (let i = 0; i < fields.length; i += FIELD_STRIDE) {
      const stats = this.fieldStats[fields[i]!]!
      stats.docCount--
      stats.totalLength -= fields[i + 1]!
    }
  }

  /** Adds the tokenized fields' statistics; writes the document's (fieldId, length, end) triples into `fields`. */
  private addFieldStats(fieldCount: number, fields: number[]): number[] {
    const fieldScratch = this.fieldScratch
    if (fields.length !== fieldCount * FIELD_STRIDE) fields.length = fieldCount * FIELD_STRIDE
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

  private removeDocument(key: string, ord: number): void {
    const doc = this.docs[ord]!
    const version = ++this.docVersions[ord]!
    this.retireEntries(doc.entries, entryCount(doc))
    this.tidyPostings(doc.entries, entryCount(doc))
    this.subtractFieldStats(doc.fields)
    this.docs[ord] = undefined
    this.docLengths[ord] = 0
    if (version < MAX_VERSION) this.freeOrds.push(ord)
    this.ordByKey.delete(key)
    this.remember(key, undefined)
    this.docCount--
    this.totalLength -= doc.length
  }

  /** Drops empty postings in one pass when they are many (bounded memory for terms that left the index). */
  private sweepEmptyPostings(force: boolean): void {
    const empty = this.emptyPostings
    if (empty === 0) return
    if (!force && (empty <= EMPTY_POSTINGS_SWEEP_MIN || empty * 2 <= this.postings.size)) return
    for (const [term, posting] of this.postings) if (posting.df === 0) this.postings.delete(term)
    this.wordPostings.clear()
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
    const ord = this.ordOf(key)
    if (ord === undefined || queryTokens.length === 0) return undefined
    const doc = this.docs[ord]!
    // The quick "no query term here" check costs tokens × entries; long queries go straight to the general path.
    if (queryTokens.length <= 16 && !this.containsAnyTerm(doc, queryTokens)) return undefined
    const tfByTerm = new Map<string, number>()
    for (const token of queryTokens) tfByTerm.set(token, 0)
    const { entries } = doc
    const end = entryCount(doc)
    for (let i = 0; i < end; i += STRIDE) {
      const posting = entries[i] as Posting
      const tf = tfByTerm.get(posting.term)
      if (tf !== undefined) {
        tfByTerm.set(posting.term, tf + (entries[i + 1] as number))
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

  /** Whether `doc` contains one of `tokens` (a live search's usual answer is no: this allocates nothing). */
  private containsAnyTerm(doc: IndexedDoc, tokens: ReadonlyArray<string>): boolean {
    const entries = doc.entries
    const end = entryCount(doc)
    for (const token of tokens) {
      const posting = this.postings.get(token)
      if (posting === undefined || posting.df === 0) continue
      for (let i = 0; i < end; i += STRIDE) if (entries[i] === posting) return true
    }
    return false
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
    const postings = this.postingScratch
    const distinctPostings = this.distinctPostings
    const distinctTfs = this.distinctTfs
    const fieldScratch = this.fieldScratch
    let fieldCount = 0
    let distinct = 0
    for (const name of names) {
      const text = value[name]
      if (typeof text !== "string") continue
      let tokenCount = this.wordPostings.scan(text, postings)
      if (tokenCount < 0) {
        tokenCount = tokenizeInto(text, tokens)
        for (let t = 0; t < tokenCount; t++) postings[t] = this.postingOf(tokens[t]!)
      }
      if (tokenCount === 0) continue
      const fieldStamp = ++this.tokenizedFields
      const fieldStart = distinct
      for (let t = 0; t < tokenCount; t++) {
        const posting = postings[t]!
        if (posting.fieldStamp === fieldStamp) {
          posting.fieldTf++
        } else {
          posting.fieldStamp = fieldStamp
          posting.fieldTf = 1
          distinctPostings[distinct++] = posting
        }
      }
      for (let d = fieldStart; d < distinct; d++) distinctTfs[d] = distinctPostings[d]!.fieldTf
      fieldScratch[fieldCount * FIELD_STRIDE] = this.fieldId(name)
      fieldScratch[fieldCount * FIELD_STRIDE + 1] = tokenCount
      fieldScratch[fieldCount * FIELD_STRIDE + 2] = distinct
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

  /**
   * Per-document combined tf of a term over its live entries: sums the document's per-field entries (no
   * merging when each live document has one entry).
   */
  private combinedTermFrequencies(posting: Posting): { ords: Int32Array; tfs: Int32Array } {
    const { data, count, dead, df } = posting
    const versions = this.docVersions
    const ords = new Int32Array(df)
    const tfs = new Int32Array(df)
    const end = count * POSTING_STRIDE
    if (df === count - dead) {
      let i = 0
      for (let base = 0; base < end; base += POSTING_STRIDE) {
        const ord = data[base + ORD]!
        if (dead !== 0 && versions[ord] !== data[base + VERSION]) continue
        ords[i] = ord
        tfs[i++] = data[base + TF]!
      }
      return { ords, tfs }
    }
    const scratch = this.tfScratch
    let distinct = 0
    for (let base = 0; base < end; base += POSTING_STRIDE) {
      const ord = data[base + ORD]!
      if (versions[ord] !== data[base + VERSION]) continue
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
      const versions = this.docVersions
      for (let base = 0; base < count * POSTING_STRIDE; base += POSTING_STRIDE) {
        const ord = data[base + ORD]!
        if (versions[ord] !== data[base + VERSION]) continue
        const doc = this.docs[ord]!
        const fieldId = data[base + FIELD]!
        let bucket = buckets.get(fieldId)
        if (bucket === undefined) {
          bucket = { ords: [], tfs: [], lengths: [] }
          buckets.set(fieldId, bucket)
          fieldsTouched.add(fieldId)
        }
        bucket.ords.push(ord)
        bucket.tfs.push(data[base + TF]!)
        bucket.lengths.push(fieldLengthOf(doc, fieldId))
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
    const doc = this.docs[ord]!
    const end = entryCount(doc)
    for (let i = 0; i < end; i += STRIDE) present.add((doc.entries[i] as Posting).term)
    return terms.filter((term) => present.has(term))
  }
}

/**
 * A copy of a token that does not keep its source text alive: tokens from `split`/`slice` can be V8 sliced
 * strings pointing into the whole field text, and a posting's term lives as long as the term is indexed.
 */
const detach = (token: string): string => (" " + token).slice(1)

/** Token count of field `fieldId` in `doc` (a document has few fields: a linear scan). */
function fieldLengthOf(doc: IndexedDoc, fieldId: number): number {
  const fields = doc.fields
  for (let i = 0; i < fields.length; i += FIELD_STRIDE) if (fields[i] === fieldId) return fields[i + 1]!
  return 0
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
