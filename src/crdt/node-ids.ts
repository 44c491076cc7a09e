/**
 * Node ids repeat across millions of records: sharing one string per id keeps loaded maps compact and
 * keeps a write from retaining its own copy of the writer's id. Bounded so a stream of distinct ids
 * cannot grow it without limit (past the bound, ids are simply not shared).
 */
export class NodeIdInterner {
  private readonly ids = new Map<string, string>()
  /** The last id interned: a batch repeats its writer's id, and `===` is cheaper than hashing a fresh string. */
  private last = ""
  constructor(private readonly maxIds = 4096) {}
  intern(id: string): string {
    if (id === this.last) return this.last
    const known = this.ids.get(id)
    if (known !== undefined) return (this.last = known)
    if (this.ids.size < this.maxIds) this.ids.set(id, id)
    return id
  }
}

/**
 * Node ids by small integer, with reference counts: the LWW store keeps one `Uint32Array` column per id
 * instead of a string pointer per record, and an id nobody references any more is dropped (clients
 * come and go; their ids must not accumulate).
 */
export class NodeIdTable {
  private readonly ids: Array<string | undefined> = []
  private readonly refs: number[] = []
  private readonly byId = new Map<string, number>()
  private readonly freed: number[] = []

  /** The last id acquired and its index (a batch repeats its writer's id); reset when that index is freed. */
  private lastId: string | undefined
  private lastIndex = 0

  /** The index of `id`, with one more reference. */
  acquire(id: string): number {
    if (id === this.lastId) {
      this.refs[this.lastIndex]!++
      return this.lastIndex
    }
    let i = this.byId.get(id)
    if (i === undefined) {
      i = this.freed.pop() ?? this.ids.length
      this.ids[i] = id
      this.refs[i] = 0
      this.byId.set(id, i)
    }
    this.refs[i]!++
    this.lastId = this.ids[i]
    this.lastIndex = i
    return i
  }

  /** Drops one reference to index `i`. */
  release(i: number): void {
    if (--this.refs[i]! === 0) {
      if (i === this.lastIndex) this.lastId = undefined
      this.byId.delete(this.ids[i]!)
      this.ids[i] = undefined
      this.freed.push(i)
    }
  }

  /** The id at index `i` (which must be referenced). */
  at(i: number): string {
    return this.ids[i]!
  }

  /** Ids currently referenced. */
  get size(): number {
    return this.byId.size
  }
}
