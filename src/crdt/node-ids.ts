/**
 * Node ids repeat across millions of records: sharing one string per id keeps loaded maps compact and
 * keeps a write from retaining its own copy of the writer's id. Bounded so a stream of distinct ids
 * cannot grow it without limit (past the bound, ids are simply not shared).
 */
export class NodeIdInterner {
  private readonly ids = new Map<string, string>()
  constructor(private readonly maxIds = 4096) {}
  intern(id: string): string {
    const known = this.ids.get(id)
    if (known !== undefined) return known
    if (this.ids.size < this.maxIds) this.ids.set(id, id)
    return id
  }
}
