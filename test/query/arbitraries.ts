/** fast-check generators shared by the query property tests: small maps, small values, random queries. */
import fc from "fast-check"
import type { Row } from "../../src/query/index.js"

export const KEYS = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"] as const
export const FIELDS = ["a", "b", "c"] as const

const scalar = fc.oneof(
  fc.integer({ min: 0, max: 3 }),
  fc.constantFrom("x", "y", "xy", "Y"),
  fc.boolean(),
  fc.constant(null)
)

/** A record with a few of the fields, or occasionally a primitive / OR-style array. */
export const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ a: scalar, b: scalar, c: scalar }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }) },
  { weight: 1, arbitrary: fc.array(fc.record({ a: scalar }), { maxLength: 2 }) }
)

const field = fc.constantFrom(...FIELDS)

const whereCondition: fc.Arbitrary<unknown> = fc.oneof(
  scalar,
  fc.record(
    {
      $eq: scalar,
      $ne: scalar,
      $gt: scalar,
      $gte: scalar,
      $lt: scalar,
      $lte: scalar,
      $in: fc.array(scalar, { maxLength: 3 })
    },
    { requiredKeys: [] }
  )
)

export const where = fc.dictionary(field, whereCondition, { maxKeys: 2 })

const leaf = fc.oneof(
  fc.record({
    op: fc.constantFrom("eq", "neq", "gt", "gte", "lt", "lte", "isNull", "isNotNull", "startsWith", "like"),
    attribute: field,
    value: scalar
  }),
  fc.record({ op: fc.constant("in"), attribute: field, value: fc.array(scalar, { maxLength: 3 }) }),
  fc.record({
    op: fc.constant("between"),
    attribute: field,
    value: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }))
  }),
  fc.record({ op: fc.constant("like"), attribute: field, value: fc.constantFrom("x%", "%Y", "_", "%") })
)

export const predicate: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: "small", withCrossShrink: true }, leaf, tie("branch")),
  branch: fc.record({
    op: fc.constantFrom("and", "or", "not"),
    children: fc.array(tie("node"), { maxLength: 3 })
  })
})).node

const direction = fc.constantFrom("asc", "desc")
export const sort: fc.Arbitrary<unknown> = fc.oneof(
  fc.uniqueArray(fc.record({ field, direction }), { minLength: 1, maxLength: 2, selector: (s) => s.field }),
  fc
    .uniqueArray(fc.tuple(field, direction), { minLength: 1, maxLength: 2, selector: (t) => t[0] })
    .map((entries) => Object.fromEntries(entries))
)

export const query: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    where,
    predicate,
    sort,
    limit: fc.integer({ min: 1, max: 4 })
  },
  { requiredKeys: [] }
)

/** A write (`value`) or a delete/expiry (`undefined`). */
export const change = fc.record({ key: fc.constantFrom(...KEYS), value: fc.option(value, { nil: undefined }) })

export const initialMap = fc.dictionary(fc.constantFrom(...KEYS), value)

export function rowsOf(map: Map<string, unknown>): Row[] {
  return Array.from(map, ([key, v]) => ({ key, value: v }))
}
