/**
 * Classification and shape validation of one ClientOp (protocol.md §3.2.1, step 1). Plain code: it
 * runs for every op of every OP_BATCH (the client resends its whole op log), so no Schema here.
 */
import type { ClientOp, ClientOpKind } from "./schema.js"

export type ValidateClientOpResult =
  | { readonly ok: true; readonly op: ClientOp; readonly kind: ClientOpKind }
  /** `id` is the op's id when it has a string one, so that the refusal can be an OP_REJECTED. */
  | { readonly ok: false; readonly reason: string; readonly id?: string }

const WRITE_CONCERNS: ReadonlySet<unknown> = new Set(["FIRE_AND_FORGET", "MEMORY", "APPLIED", "REPLICATED", "PERSISTED"])

type Obj = Record<string, unknown>

const isObject = (u: unknown): u is Obj => typeof u === "object" && u !== null && !Array.isArray(u)
const isNil = (u: unknown): boolean => u === null || u === undefined

/**
 * Kind from `opType` when it is one of the four known values, else inferred from the fields present:
 * `orRecord` non-nil → OR_ADD; else `orTag` non-nil → OR_REMOVE; else `record` nil or `record.value`
 * nil → REMOVE; else PUT. (An absent key counts as nil: the client strips `undefined` values.)
 */
export function classifyClientOp(op: Obj): ClientOpKind {
  const opType = op.opType
  if (opType === "PUT" || opType === "REMOVE" || opType === "OR_ADD" || opType === "OR_REMOVE") return opType
  if (!isNil(op.orRecord)) return "OR_ADD"
  if (!isNil(op.orTag)) return "OR_REMOVE"
  const record = op.record
  if (isNil(record) || (isObject(record) && isNil(record.value))) return "REMOVE"
  return "PUT"
}

const fail = (detail: string, id: unknown): ValidateClientOpResult =>
  typeof id === "string"
    ? { ok: false, reason: `Invalid operation: ${detail}`, id }
    : { ok: false, reason: `Invalid operation: ${detail}` }

/** Names, keys, tags and node ids go to storage columns, where PostgreSQL text cannot hold U+0000. */
const hasNul = (s: string): boolean => s.includes("\u0000")
const NUL_REASON = "must not contain U+0000"

const isNonNegativeInt = (u: unknown): boolean => typeof u === "number" && Number.isInteger(u) && u >= 0

/** Returns a problem description for a malformed HLC timestamp, or undefined when it is well formed. */
function timestampProblem(ts: unknown, field: string): string | undefined {
  if (!isObject(ts)) return `${field}.timestamp must be an object`
  if (!isNonNegativeInt(ts.millis)) return `${field}.timestamp.millis must be a non-negative integer`
  if (!isNonNegativeInt(ts.counter)) return `${field}.timestamp.counter must be a non-negative integer`
  if (typeof ts.nodeId !== "string") return `${field}.timestamp.nodeId must be a string`
  if (hasNul(ts.nodeId)) return `${field}.timestamp.nodeId ${NUL_REASON}`
  return undefined
}

function ttlProblem(record: Obj, field: string): string | undefined {
  const ttl = record.ttlMs
  if (ttl === undefined) return undefined
  return typeof ttl === "number" && Number.isFinite(ttl) && ttl > 0
    ? undefined
    : `${field}.ttlMs must be a positive finite number`
}

/**
 * Validates one op as received inside CLIENT_OP / OP_BATCH. On success `op` is a normalized
 * ClientOp holding only the known fields (extra keys such as the client's `timestamp`/`synced` are
 * dropped) and a record without `value` gets `value: null`. Reasons are
 * `"Invalid operation: <detail>"` (code 400).
 */
export function validateClientOp(u: unknown): ValidateClientOpResult {
  if (!isObject(u)) return fail("op must be an object", undefined)
  const id = u.id
  if (id !== undefined && typeof id !== "string") return fail("id must be a string", undefined)
  if (typeof u.mapName !== "string") return fail("mapName must be a string", id)
  if (typeof u.key !== "string") return fail("key must be a string", id)
  if (hasNul(u.mapName)) return fail(`mapName ${NUL_REASON}`, id)
  if (hasNul(u.key)) return fail(`key ${NUL_REASON}`, id)
  if (u.opType !== undefined && typeof u.opType !== "string") return fail("opType must be a string", id)
  const writeConcern = u.writeConcern
  if (writeConcern !== undefined && !WRITE_CONCERNS.has(writeConcern)) {
    return fail("writeConcern must be one of FIRE_AND_FORGET, MEMORY, APPLIED, REPLICATED, PERSISTED", id)
  }
  const timeout = u.timeout
  if (timeout !== undefined && !isNonNegativeInt(timeout)) return fail("timeout must be a non-negative integer", id)

  const kind = classifyClientOp(u)
  const out: { -readonly [K in keyof ClientOp]: ClientOp[K] } = { mapName: u.mapName, key: u.key }
  if (id !== undefined) out.id = id
  if (u.opType !== undefined) out.opType = u.opType as string
  if (writeConcern !== undefined) out.writeConcern = writeConcern as NonNullable<ClientOp["writeConcern"]>
  if (timeout !== undefined) out.timeout = timeout as number

  switch (kind) {
    case "PUT":
    case "REMOVE": {
      const record = u.record
      if (isNil(record)) {
        if (kind === "PUT") return fail("record is required for PUT", id)
        if (record === null) out.record = null
        break
      }
      if (!isObject(record)) return fail("record must be an object or null", id)
      const problem = timestampProblem(record.timestamp, "record") ?? ttlProblem(record, "record")
      if (problem !== undefined) return fail(problem, id)
      out.record = "value" in record ? (record as unknown as NonNullable<ClientOp["record"]>) : { ...record, value: null } as unknown as NonNullable<ClientOp["record"]>
      break
    }
    case "OR_ADD": {
      const orRecord = u.orRecord
      if (isNil(orRecord)) return fail("orRecord is required for OR_ADD", id)
      if (!isObject(orRecord)) return fail("orRecord must be an object", id)
      const problem = timestampProblem(orRecord.timestamp, "orRecord") ??
        (typeof orRecord.tag !== "string" ? "orRecord.tag must be a string" : hasNul(orRecord.tag) ? `orRecord.tag ${NUL_REASON}` : undefined) ??
        ttlProblem(orRecord, "orRecord")
      if (problem !== undefined) return fail(problem, id)
      out.orRecord = "value" in orRecord ? (orRecord as unknown as NonNullable<ClientOp["orRecord"]>) : { ...orRecord, value: null } as unknown as NonNullable<ClientOp["orRecord"]>
      break
    }
    case "OR_REMOVE": {
      const orTag = u.orTag
      if (isNil(orTag)) return fail("orTag is required for OR_REMOVE", id)
      if (typeof orTag !== "string") return fail("orTag must be a string", id)
      if (hasNul(orTag)) return fail(`orTag ${NUL_REASON}`, id)
      out.orTag = orTag
      break
    }
  }
  return { ok: true, op: out, kind }
}
