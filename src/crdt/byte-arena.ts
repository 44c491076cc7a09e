/**
 * Off-heap bytes in 1 MiB chunks, bump-allocated: the LWW store keeps its keys and encoded values here so
 * that a million records are a hundred chunks to the garbage collector instead of millions of objects.
 *
 * Freed space is counted per chunk, not reused in place. A chunk whose live bytes fall under a quarter of
 * its size asks its owner to move the survivors (`evacuate`), after which it is released. A blob larger
 * than a quarter chunk gets a chunk of its own, released when the blob is.
 */
export const ARENA_CHUNK_BYTES = 1 << 20

/**
 * `src[srcStart, srcStart + n)` → `dst[dstStart…]`. Values are mostly tens of bytes, where a loop beats
 * `Buffer.copy` (which builds a view per call, i.e. an allocation on every write).
 */
export const copyBytes = (src: Uint8Array, srcStart: number, dst: Uint8Array, dstStart: number, n: number): void => {
  if (n <= 96) for (let i = 0; i < n; i++) dst[dstStart + i] = src[srcStart + i]!
  else dst.set(src.subarray(srcStart, srcStart + n), dstStart)
}

/**
 * Strings kept as bytes: Latin-1 when every code unit fits in a byte, else UTF-16LE, which keeps any JS
 * string exact (lone surrogates included). A string word is its byte length | `WIDE` for UTF-16.
 */
const WIDE = 0x80000000

/** The string word of `s` (its byte length, with `WIDE` when it needs two bytes per code unit). */
export const stringWord = (s: string): number => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return (s.length * 2 | WIDE) >>> 0
  return s.length
}

/** The byte length of a string word. */
export const stringWordBytes = (word: number): number => word & ~WIDE

/** Writes `s` (whose word is `word`) at `buf[at]`. */
export const writeString = (buf: Buffer, at: number, s: string, word: number): void => {
  if (word & WIDE) buf.write(s, at, "utf16le")
  else if (word > 32) buf.write(s, at, "latin1")
  else for (let i = 0; i < word; i++) buf[at + i] = s.charCodeAt(i)
}

export const readString = (buf: Buffer, at: number, word: number): string =>
  word & WIDE ? buf.toString("utf16le", at, at + (word & ~WIDE)) : buf.toString("latin1", at, at + word)

/** `s === <the string of word at buf[at]>`, without building it. */
export const stringEquals = (buf: Buffer, at: number, word: number, s: string): boolean => {
  const n = s.length
  if (word & WIDE) {
    if ((word & ~WIDE) !== n * 2) return false
    for (let i = 0; i < n; i++) if ((buf[at + 2 * i]! | (buf[at + 2 * i + 1]! << 8)) !== s.charCodeAt(i)) return false
    return true
  }
  if (word !== n) return false
  for (let i = 0; i < n; i++) if (buf[at + i] !== s.charCodeAt(i)) return false
  return true
}

const SPARE_CHUNKS = 2

/** `n` rounded up to a multiple of 8 (every blob's footprint). */
export const blobFootprint = (n: number): number => (n + 7) & ~7

export class ByteArena {
  /** The chunks by id; `undefined` once released. */
  readonly chunks: Array<Buffer | undefined> = []
  /** Offset of the last `alloc`. */
  offset = 0
  private readonly live: number[] = []
  private readonly freeIds: number[] = []
  /**
   * Released standard chunks kept for reuse (a few): a ring or a rewrite-heavy map frees and takes chunks
   * all the time, and allocating fresh external memory each time makes V8 collect more often (it counts
   * external allocation as memory pressure).
   */
  private readonly spare: Buffer[] = []
  private current = -1
  private position = 0
  private evacuating = -1

  /**
   * `evacuate(chunk)` must re-`alloc` and copy every live blob of `chunk`, then `free` the old place.
   * Without it, chunks are only released once empty (right for FIFO lifetimes, like a ring's).
   */
  constructor(private readonly evacuate?: (chunk: number) => void) {}

  /** Bytes held in chunks (live or not yet reclaimed, spares included). */
  get reservedBytes(): number {
    let n = this.spare.length * ARENA_CHUNK_BYTES
    for (const c of this.chunks) if (c !== undefined) n += c.length
    return n
  }

  /** Reserves `size` bytes (a `blobFootprint`); returns the chunk id, the offset is left in `offset`. */
  alloc(size: number): number {
    if (size > ARENA_CHUNK_BYTES >>> 2) {
      const own = this.newChunk(size)
      this.live[own] = size
      this.offset = 0
      return own
    }
    if (this.current < 0 || this.position + size > ARENA_CHUNK_BYTES) {
      this.current = this.newChunk(ARENA_CHUNK_BYTES)
      this.position = 0
    }
    this.offset = this.position
    this.position += size
    this.live[this.current]! += size
    return this.current
  }

  /** Gives back `size` bytes of `chunk` (a whole blob, or the tail of one that shrank in place). */
  free(chunk: number, size: number): void {
    if (size === 0) return
    const left = (this.live[chunk]! -= size)
    if (chunk === this.current) {
      if (left === 0) this.position = 0
      return
    }
    if (left === 0) this.release(chunk)
    else if (this.evacuate !== undefined && this.evacuating < 0 && left < this.chunks[chunk]!.length >>> 2) {
      this.evacuating = chunk
      try {
        this.evacuate(chunk)
      } finally {
        this.evacuating = -1
      }
    }
  }

  private newChunk(size: number): number {
    const id = this.freeIds.pop() ?? this.chunks.length
    // allocUnsafeSlow: outside Node's shared pool, so releasing the chunk really returns its memory.
    this.chunks[id] = (size === ARENA_CHUNK_BYTES ? this.spare.pop() : undefined) ?? Buffer.allocUnsafeSlow(size)
    this.live[id] = 0
    return id
  }

  private release(chunk: number): void {
    const buf = this.chunks[chunk]!
    if (buf.length === ARENA_CHUNK_BYTES && this.spare.length < SPARE_CHUNKS) this.spare.push(buf)
    this.chunks[chunk] = undefined
    this.live[chunk] = 0
    this.freeIds.push(chunk)
  }
}
