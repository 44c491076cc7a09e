/**
 * The json_each statements (sqlite-batch.ts) must leave a store exactly as the bound-parameter statements of
 * schema.ts do, for any sequence of batches: both are run on two stores and every table is compared.
 */
import * as Libsql from "@libsql/client"
import * as fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Timestamp } from "../../src/crdt/types.js"
import type { StorageMutation } from "../../src/layers/Storage.js"
import { migrations } from "../../src/layers/storage/migrations.js"
import { batchStatements, sqliteDialect, T } from "../../src/layers/storage/schema.js"
import { hasUnicodeEscape, sqliteBatchStatements } from "../../src/layers/storage/sqlite-batch.js"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-sqlite-batch-"))
const open = async (name: string): Promise<Libsql.Client> => {
  const client = Libsql.createClient({ url: pathToFileURL(path.join(root, name)).href, intMode: "number" })
  await client.execute("PRAGMA journal_mode=WAL")
  for (const m of migrations) await client.batch([...m.sqlite], "write")
  return client
}

const TABLES: ReadonlyArray<readonly [string, string]> = [
  [T.lww, "map_name, key"],
  [T.orRecords, "map_name, key, tag"],
  [T.orTombstones, "map_name, tag"],
  [T.maps, "map_name"],
  [T.meta, "key"]
]
const dump = async (client: Libsql.Client) => {
  const out: Record<string, unknown> = {}
  for (const [table, order] of TABLES) {
    out[table] = (await client.execute(`SELECT * FROM ${table} ORDER BY ${order}`)).rows.map((r) => Array.from(r))
  }
  return out
}
const clear = (client: Libsql.Client) => client.batch(TABLES.map(([table]) => `DELETE FROM ${table}`), "write")

// Small domains, so batches hit the same rows again (merge conditions, tombstoned tags, in-batch repeats).
// The odd names exercise the fallback: a control character, a lone surrogate, a literal backslash-u.
const name = fc.constantFrom("m", "n", "ü-map")
const key = fc.constantFrom("a", "b", "c", "東京", "\u0001", "\ud800", "x\\u0041")
const tag = fc.constantFrom("t1", "t2", "t3", "标签")
const stamp: fc.Arbitrary<Timestamp> = fc.record({
  millis: fc.integer({ min: 0, max: 3 }),
  counter: fc.integer({ min: 0, max: 2 }),
  nodeId: fc.constantFrom("node-a", "node-b")
})
const value = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom("a\u0000b", "\\u0041", 'quote " and \\'))
const ttl = fc.option(fc.integer({ min: 1, max: 10_000 }), { nil: undefined })

const mutation: fc.Arbitrary<StorageMutation> = fc.oneof(
  fc.record({ mapName: name, key, value: fc.option(value, { nil: null }), ts: stamp, ttl, storedAt: stamp }).map((r): StorageMutation => ({
    _tag: "LwwPut",
    mapName: r.mapName,
    key: r.key,
    record: r.ttl === undefined ? { value: r.value, timestamp: r.ts } : { value: r.value, timestamp: r.ts, ttlMs: r.ttl },
    storedAt: r.storedAt
  })),
  fc.record({ mapName: name, key }).map((r): StorageMutation => ({ _tag: "LwwDelete", ...r })),
  fc.record({ mapName: name, key, tag, value, ts: stamp, ttl, storedAt: stamp }).map((r): StorageMutation => ({
    _tag: "OrPut",
    mapName: r.mapName,
    key: r.key,
    record: r.ttl === undefined
      ? { value: r.value, timestamp: r.ts, tag: r.tag }
      : { value: r.value, timestamp: r.ts, tag: r.tag, ttlMs: r.ttl },
    storedAt: r.storedAt
  })),
  fc.record({ mapName: name, key, tag }).map((r): StorageMutation => ({ _tag: "OrRemove", ...r })),
  fc.record({ mapName: name, tag, storedAt: stamp }).map((r): StorageMutation => ({ _tag: "OrTombstone", ...r })),
  fc.record({ mapName: name, tag }).map((r): StorageMutation => ({ _tag: "OrPruneTombstone", ...r })),
  fc.record({ mapName: name, mapType: fc.constantFrom("LWW" as const, "OR" as const) }).map((r): StorageMutation => ({ _tag: "MapType", ...r })),
  fc.record({ key: fc.constantFrom("seq", "counter:x", "ключ"), value: fc.string() }).map((r): StorageMutation => ({ _tag: "Meta", ...r }))
)

describe("sqlite json_each batch statements", () => {
  let reference: Libsql.Client
  let candidate: Libsql.Client
  beforeAll(async () => {
    reference = await open("reference.db")
    candidate = await open("candidate.db")
  })
  afterAll(() => {
    reference.close()
    candidate.close()
    fs.rmSync(root, { recursive: true, force: true })
  })

  it("leave the store exactly as the bound-parameter statements do (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(mutation, { minLength: 1, maxLength: 25 }), { minLength: 1, maxLength: 3 }), async (batches) => {
        await clear(reference)
        await clear(candidate)
        for (const batch of batches) {
          await reference.batch(batchStatements(sqliteDialect, batch), "write")
          await candidate.batch(sqliteBatchStatements(batch), "write")
        }
        expect(await dump(candidate)).toEqual(await dump(reference))
      }),
      { numRuns: 150 }
    )
  })

  it("uses one JSON parameter per run of plain rows, and bound parameters for odd strings", () => {
    const at = { millis: 1, counter: 0, nodeId: "n" }
    const plain = sqliteBatchStatements([
      { _tag: "LwwPut", mapName: "m", key: "a", record: { value: "x\u0001", timestamp: at }, storedAt: at },
      { _tag: "LwwPut", mapName: "m", key: "b", record: { value: null, timestamp: at }, storedAt: at },
      { _tag: "OrTombstone", mapName: "m", tag: "t", storedAt: at }
    ])
    expect(plain.map((s) => s.args.length)).toEqual([1, 1, 1]) // upsert; tombstone insert + record delete
    expect(plain[0]!.sql).toContain("json_each")
    const odd = sqliteBatchStatements([{ _tag: "LwwDelete", mapName: "m", key: "\u0001" }])
    expect(odd[0]!.sql).not.toContain("json_each")
    expect(odd[0]!.args).toEqual(["m", "\u0001"])
  })

  it("tells real \\u escapes from escaped backslashes", () => {
    expect(hasUnicodeEscape(JSON.stringify(["\u0001"]))).toBe(true)
    expect(hasUnicodeEscape(JSON.stringify(["\ud800"]))).toBe(true)
    expect(hasUnicodeEscape(JSON.stringify(["\\u0041"]))).toBe(false)
    expect(hasUnicodeEscape(JSON.stringify(["\\\u0001"]))).toBe(true)
    expect(hasUnicodeEscape(JSON.stringify([JSON.stringify("\u0001")]))).toBe(false)
    expect(hasUnicodeEscape(JSON.stringify(["plain", 1, null]))).toBe(false)
  })
})
