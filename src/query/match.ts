/**
 * Filter compilation (protocol.md §4.9.2, extended ops §3.16). A query's `where` / `predicate` is compiled once
 * into a closure tree; patterns are precompiled. Evaluation allocates nothing per row.
 */
import { compileLikePattern, compileRegexPattern } from "./safe-regex.js"
import { fieldOf, isRecord, jsGt, jsGte, jsLt, jsLte } from "./values.js"

/** Bounds on user input, checked at compile time. */
export const MAX_PREDICATE_NODES = 1_000
export const MAX_PREDICATE_DEPTH = 32
/** Largest array operand of `in`, `$in`, `between`, `containsAll`, `containsAny`. */
export const MAX_ARRAY_OPERAND = 10_000
/** Longest `like` or `regex` pattern (UTF-16 code units). */
export const MAX_PATTERN_LENGTH = 1_000

export type RecordTest = (data: Record<string, unknown>) => boolean

/** Raised for input that breaks a bound or is malformed; turned into `{ ok: false }` by `compileQuery`. */
export class QueryCompileError extends Error {}

const ALWAYS: RecordTest = () => true
const NEVER: RecordTest = () => false

/** Counts compiled nodes (predicate nodes and where conditions) against `MAX_PREDICATE_NODES`. */
class Budget {
  private used = 0
  take(): void {
    if (++this.used > MAX_PREDICATE_NODES) {
      throw new QueryCompileError(`query has more than ${MAX_PREDICATE_NODES} predicate nodes`)
    }
  }
}

function checkArrayOperand(v: unknown): void {
  if (Array.isArray(v) && v.length > MAX_ARRAY_OPERAND) {
    throw new QueryCompileError(`array operand longer than ${MAX_ARRAY_OPERAND}`)
  }
}

function checkPattern(p: unknown): void {
  if (typeof p === "string" && p.length > MAX_PATTERN_LENGTH) {
    throw new QueryCompileError(`pattern longer than ${MAX_PATTERN_LENGTH}`)
  }
}

function containsStrict(list: readonly unknown[], v: unknown): boolean {
  for (let i = 0; i < list.length; i++) if (list[i] === v) return true
  return false
}

// ---------------------------------------------------------------------------------------------------------
// where

function compileWhereOperator(field: string, op: string, expected: unknown): RecordTest | undefined {
  switch (op) {
    case "$eq":
      return (d) => fieldOf(d, field) === expected
    case "$ne":
    case "$neq":
      return (d) => fieldOf(d, field) !== expected
    case "$gt":
      return (d) => jsGt(fieldOf(d, field), expected)
    case "$gte":
      return (d) => jsGte(fieldOf(d, field), expected)
    case "$lt":
      return (d) => jsLt(fieldOf(d, field), expected)
    case "$lte":
      return (d) => jsLte(fieldOf(d, field), expected)
    case "$in":
      checkArrayOperand(expected)
      return Array.isArray(expected) ? (d) => containsStrict(expected, fieldOf(d, field)) : NEVER
    default:
      return undefined // unknown operator: the record does not match
  }
}

/** `where` object → test. Every condition must hold; an unknown `$op` makes the whole filter false. */
export function compileWhere(where: Record<string, unknown>, budget: Budget): RecordTest {
  const tests: RecordTest[] = []
  for (const field of Object.keys(where)) {
    const expected = where[field]
    if (isRecord(expected)) {
      for (const op of Object.keys(expected)) {
        budget.take()
        const test = compileWhereOperator(field, op, expected[op])
        if (test === undefined) return NEVER
        tests.push(test)
      }
    } else {
      budget.take()
      tests.push((d) => fieldOf(d, field) === expected)
    }
  }
  return allOf(tests)
}

function allOf(tests: RecordTest[]): RecordTest {
  if (tests.length === 0) return ALWAYS
  if (tests.length === 1) return tests[0]!
  return (d) => {
    for (let i = 0; i < tests.length; i++) if (!tests[i]!(d)) return false
    return true
  }
}

function anyOf(tests: RecordTest[]): RecordTest {
  if (tests.length === 0) return NEVER
  if (tests.length === 1) return tests[0]!
  return (d) => {
    for (let i = 0; i < tests.length; i++) if (tests[i]!(d)) return true
    return false
  }
}

// ---------------------------------------------------------------------------------------------------------
// predicate

function compileLeaf(op: string, attribute: string, t: unknown): RecordTest {
  const get = (d: Record<string, unknown>): unknown => fieldOf(d, attribute)
  switch (op) {
    case "eq":
      return (d) => get(d) === t
    case "neq":
      return (d) => get(d) !== t
    case "gt":
      return (d) => jsGt(get(d), t)
    case "gte":
      return (d) => jsGte(get(d), t)
    case "lt":
      return (d) => jsLt(get(d), t)
    case "lte":
      return (d) => jsLte(get(d), t)
    case "like":
    case "regex": {
      if (typeof t !== "string") return NEVER
      checkPattern(t)
      const pattern = op === "like" ? compileLikePattern(t) : compileRegexPattern(t)
      if (pattern === undefined) return NEVER // invalid (or not linear-time runnable) → leaf false
      return (d) => {
        const v = get(d)
        return typeof v === "string" && pattern.test(v)
      }
    }
    case "in":
      checkArrayOperand(t)
      return (d) => {
        const v = get(d)
        return (Array.isArray(t) && containsStrict(t, v)) || (Array.isArray(v) && containsStrict(v, t))
      }
    case "between": {
      if (!Array.isArray(t) || t.length !== 2) return NEVER
      const [low, high] = t as [unknown, unknown]
      return (d) => {
        const v = get(d)
        return jsGte(v, low) && jsLte(v, high)
      }
    }
    case "isNull":
      return (d) => get(d) == null
    case "isNotNull":
      return (d) => get(d) != null
    case "containsAll":
    case "containsAny": {
      checkArrayOperand(t)
      const wanted: readonly unknown[] = Array.isArray(t) ? t : [t]
      const all = op === "containsAll"
      return (d) => {
        const v = get(d)
        if (!Array.isArray(v)) return false
        for (let i = 0; i < wanted.length; i++) {
          if (containsStrict(v, wanted[i]) !== all) return !all
        }
        return all
      }
    }
    case "startsWith":
      return typeof t === "string"
        ? (d) => {
            const v = get(d)
            return typeof v === "string" && v.startsWith(t)
          }
        : NEVER
    case "endsWith":
      return typeof t === "string"
        ? (d) => {
            const v = get(d)
            return typeof v === "string" && v.endsWith(t)
          }
        : NEVER
    default:
      return NEVER // unknown op (e.g. the client-only `contains`, `match`): leaf false
  }
}

export function compilePredicate(node: unknown, depth: number, budget: Budget): RecordTest {
  budget.take()
  if (depth > MAX_PREDICATE_DEPTH) {
    throw new QueryCompileError(`predicate deeper than ${MAX_PREDICATE_DEPTH}`)
  }
  if (!isRecord(node)) throw new QueryCompileError("predicate node must be an object")
  const op = node["op"]
  if (op === "and" || op === "or" || op === "not") {
    const rawChildren = node["children"]
    const children = Array.isArray(rawChildren) ? rawChildren : []
    if (op === "not") {
      if (children.length === 0) return ALWAYS
      const inner = compilePredicate(children[0], depth + 1, budget)
      return (d) => !inner(d)
    }
    const compiled = children.map((c) => compilePredicate(c, depth + 1, budget))
    return op === "and" ? allOf(compiled) : anyOf(compiled)
  }
  const attribute = node["attribute"]
  if (typeof op !== "string" || typeof attribute !== "string") return NEVER
  return compileLeaf(op, attribute, node["value"])
}

export function newBudget(): Budget {
  return new Budget()
}
export type { Budget }
