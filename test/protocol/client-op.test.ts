import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { classifyClientOp, ClientOpSchema, validateClientOp } from "../../src/protocol/index.js"

const ts = { millis: 1700000000000, counter: 0, nodeId: "c1" }
const base = { mapName: "todos", key: "k1" }

function rejected(u: unknown): { reason: string; id?: string } {
  const r = validateClientOp(u)
  if (r.ok) throw new Error(`expected rejection, got ${JSON.stringify(r)}`)
  return r
}

function accepted(u: unknown) {
  const r = validateClientOp(u)
  if (!r.ok) throw new Error(`expected acceptance, got ${r.reason}`)
  return r
}

describe("classification (§3.2.1)", () => {
  it("an explicit known opType decides", () => {
    expect(classifyClientOp({ opType: "PUT" })).toBe("PUT")
    expect(classifyClientOp({ opType: "REMOVE", record: { value: 1 } })).toBe("REMOVE")
    expect(classifyClientOp({ opType: "OR_ADD" })).toBe("OR_ADD")
    expect(classifyClientOp({ opType: "OR_REMOVE", orRecord: {} })).toBe("OR_REMOVE")
  })

  it("otherwise it is inferred: orRecord → OR_ADD, orTag → OR_REMOVE, nil record/value → REMOVE, else PUT", () => {
    expect(classifyClientOp({ opType: "set", orRecord: { tag: "t" }, orTag: "x" })).toBe("OR_ADD")
    expect(classifyClientOp({ orRecord: null, orTag: "x" })).toBe("OR_REMOVE")
    expect(classifyClientOp({ orTag: null, record: null })).toBe("REMOVE")
    expect(classifyClientOp({})).toBe("REMOVE")
    expect(classifyClientOp({ record: { value: null, timestamp: ts } })).toBe("REMOVE")
    expect(classifyClientOp({ record: { timestamp: ts } })).toBe("REMOVE") // absent value = stripped undefined
    expect(classifyClientOp({ record: { value: 0, timestamp: ts } })).toBe("PUT")
    expect(classifyClientOp({ record: { value: false, timestamp: ts } })).toBe("PUT")
  })
})

describe("validateClientOp", () => {
  it("accepts a client op-log entry, dropping extra keys", () => {
    const r = accepted({
      ...base, id: "7", opType: "PUT", record: { value: { a: 1 }, timestamp: ts, ttlMs: 1000 },
      timestamp: ts, synced: false, writeConcern: "PERSISTED", timeout: 2000
    })
    expect(r.kind).toBe("PUT")
    expect(r.op).toEqual({
      ...base, id: "7", opType: "PUT", record: { value: { a: 1 }, timestamp: ts, ttlMs: 1000 },
      writeConcern: "PERSISTED", timeout: 2000
    })
    expect("synced" in r.op).toBe(false)
    expect(Either.isRight(Schema.decodeUnknownEither(ClientOpSchema)(r.op))).toBe(true)
  })

  it("accepts removals with record null, absent record, and with a tombstone record", () => {
    expect(accepted({ ...base, id: "1", opType: "REMOVE", record: null })).toMatchObject({ kind: "REMOVE", op: { record: null } })
    const noRecord = accepted({ ...base, opType: "REMOVE" })
    expect(noRecord.kind).toBe("REMOVE")
    expect("record" in noRecord.op).toBe(false)
    expect(accepted({ ...base, record: { value: null, timestamp: ts } }).kind).toBe("REMOVE")
    const stripped = accepted({ ...base, opType: "PUT", record: { timestamp: ts } })
    expect(stripped.op.record).toEqual({ value: null, timestamp: ts })
  })

  it("accepts float64-integral timestamps and OR ops", () => {
    expect(accepted({ ...base, orRecord: { value: "x", timestamp: { millis: 1.7e12, counter: 3, nodeId: "" }, tag: "t1" } }).kind).toBe("OR_ADD")
    expect(accepted({ ...base, opType: "OR_REMOVE", orTag: "t1" }).op.orTag).toBe("t1")
    expect(accepted({ ...base, orRecord: { timestamp: ts, tag: "t" } }).op.orRecord).toEqual({ value: null, timestamp: ts, tag: "t" })
  })

  const shapeErrors: Array<[string, unknown, string]> = [
    ["not an object", "op", "op must be an object"],
    ["array", [], "op must be an object"],
    ["id not a string", { ...base, id: 5, record: { value: 1, timestamp: ts } }, "id must be a string"],
    ["mapName missing", { key: "k", id: "1", record: { value: 1, timestamp: ts } }, "mapName must be a string"],
    ["key not a string", { mapName: "m", key: 3, id: "1", record: { value: 1, timestamp: ts } }, "key must be a string"],
    ["opType not a string", { ...base, opType: 1, id: "1" }, "opType must be a string"],
    ["bad writeConcern", { ...base, id: "1", writeConcern: "ALL", record: { value: 1, timestamp: ts } }, "writeConcern must be one of"],
    ["bad timeout", { ...base, id: "1", timeout: -5, record: { value: 1, timestamp: ts } }, "timeout must be a non-negative integer"],
    ["PUT without record", { ...base, id: "1", opType: "PUT" }, "record is required for PUT"],
    ["PUT with null record", { ...base, id: "1", opType: "PUT", record: null }, "record is required for PUT"],
    ["record not an object", { ...base, id: "1", record: 5 }, "record must be an object or null"],
    ["record without timestamp", { ...base, id: "1", record: { value: 1 } }, "record.timestamp must be an object"],
    ["fractional millis", { ...base, id: "1", record: { value: 1, timestamp: { ...ts, millis: 1.5 } } }, "record.timestamp.millis must be a non-negative integer"],
    ["negative millis", { ...base, id: "1", record: { value: 1, timestamp: { ...ts, millis: -1 } } }, "record.timestamp.millis must be a non-negative integer"],
    ["NaN counter", { ...base, id: "1", record: { value: 1, timestamp: { ...ts, counter: NaN } } }, "record.timestamp.counter must be a non-negative integer"],
    ["string counter", { ...base, id: "1", record: { value: 1, timestamp: { ...ts, counter: "1" } } }, "record.timestamp.counter must be a non-negative integer"],
    ["nodeId missing", { ...base, id: "1", record: { value: 1, timestamp: { millis: 1, counter: 0 } } }, "record.timestamp.nodeId must be a string"],
    ["ttlMs zero", { ...base, id: "1", record: { value: 1, timestamp: ts, ttlMs: 0 } }, "record.ttlMs must be a positive finite number"],
    ["ttlMs infinite", { ...base, id: "1", record: { value: 1, timestamp: ts, ttlMs: Infinity } }, "record.ttlMs must be a positive finite number"],
    ["REMOVE with malformed record", { ...base, id: "1", opType: "REMOVE", record: { value: null, timestamp: { millis: "x" } } }, "record.timestamp.millis"],
    ["OR_ADD without orRecord", { ...base, id: "1", opType: "OR_ADD" }, "orRecord is required for OR_ADD"],
    ["OR_ADD orRecord not an object", { ...base, id: "1", orRecord: "x" }, "orRecord must be an object"],
    ["OR_ADD without tag", { ...base, id: "1", orRecord: { value: 1, timestamp: ts } }, "orRecord.tag must be a string"],
    ["OR_ADD bad timestamp", { ...base, id: "1", orRecord: { value: 1, tag: "t", timestamp: { ...ts, nodeId: 1 } } }, "orRecord.timestamp.nodeId must be a string"],
    ["OR_ADD bad ttl", { ...base, id: "1", orRecord: { value: 1, tag: "t", timestamp: ts, ttlMs: -1 } }, "orRecord.ttlMs must be a positive finite number"],
    ["OR_REMOVE without orTag", { ...base, id: "1", opType: "OR_REMOVE", orTag: null }, "orTag is required for OR_REMOVE"],
    ["OR_REMOVE orTag not a string", { ...base, id: "1", opType: "OR_REMOVE", orTag: 5 }, "orTag must be a string"],
    // Not storable in PostgreSQL text columns: refused instead of jamming the write-behind queue.
    ["U+0000 in mapName", { ...base, mapName: "a\u0000b", id: "1", record: { value: 1, timestamp: ts } }, "mapName must not contain U+0000"],
    ["U+0000 in key", { ...base, key: "k\u0000", id: "1", record: { value: 1, timestamp: ts } }, "key must not contain U+0000"],
    ["U+0000 in nodeId", { ...base, id: "1", record: { value: 1, timestamp: { ...ts, nodeId: "\u0000" } } }, "record.timestamp.nodeId must not contain U+0000"],
    ["U+0000 in OR tag", { ...base, id: "1", orRecord: { value: 1, tag: "t\u0000", timestamp: ts } }, "orRecord.tag must not contain U+0000"],
    ["U+0000 in orTag", { ...base, id: "1", opType: "OR_REMOVE", orTag: "\u0000" }, "orTag must not contain U+0000"]
  ]
  for (const [name, op, detail] of shapeErrors) {
    it(`rejects: ${name}`, () => {
      const r = rejected(op)
      expect(r.reason.startsWith("Invalid operation: ")).toBe(true)
      expect(r.reason).toContain(detail)
    })
  }

  it("carries the op id on rejection only when it is a string", () => {
    expect(rejected({ ...base, id: "42", opType: "PUT" }).id).toBe("42")
    expect("id" in rejected({ ...base, opType: "PUT" })).toBe(false)
    expect("id" in rejected({ ...base, id: 42, opType: "PUT" })).toBe(false)
  })
})
