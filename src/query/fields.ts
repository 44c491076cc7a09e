/**
 * The top-level fields a query reads: `where` keys, predicate attributes (recursively) and sort fields in
 * both encodings. Used to refuse queries that would probe fields hidden from the reader by field-level
 * security (a filter or sort on a hidden field leaks it even when results are projected).
 */
export const referencedFields = (query: unknown): Set<string> => {
  const fields = new Set<string>()
  if (query === null || typeof query !== "object") return fields
  const q = query as { where?: unknown; predicate?: unknown; sort?: unknown }
  if (q.where !== null && typeof q.where === "object" && !Array.isArray(q.where)) {
    for (const key of Object.keys(q.where)) fields.add(key)
  }
  const stack: unknown[] = [q.predicate]
  while (stack.length > 0) {
    const node = stack.pop()
    if (node === null || typeof node !== "object") continue
    const n = node as { attribute?: unknown; children?: unknown }
    if (typeof n.attribute === "string") fields.add(n.attribute)
    if (Array.isArray(n.children)) stack.push(...n.children)
  }
  if (Array.isArray(q.sort)) {
    for (const s of q.sort) if (s !== null && typeof s === "object" && typeof (s as { field?: unknown }).field === "string") fields.add((s as { field: string }).field)
  } else if (q.sort !== null && typeof q.sort === "object") {
    for (const key of Object.keys(q.sort)) fields.add(key)
  }
  return fields
}

/** The referenced fields of `query` that are not in `readable`, or [] when the query reads only readable fields. */
export const unreadableFields = (query: unknown, readable: ReadonlySet<string>): string[] =>
  [...referencedFields(query)].filter((f) => !readable.has(f))
