/**
 * coldstart: time for a server on an existing embedded SQL store of N records (1 000 000, ~100-byte values)
 * to become useful, and its memory afterwards.
 *
 * Preparation (not measured): a first server run on a fresh data dir creates the schema; then the rows are
 * written straight into `<dir>/tessera.db` with @libsql/client, using the server's own statement builder
 * (src/layers/storage/schema.ts), so the file is exactly what the server writes and reads.
 * Measured: spawn → `PORT=` printed, and spawn → the answer to a `QUERY_SUB {limit: 1}` on the map (maps
 * load lazily on first touch, so this includes loading all N records). Then VmRSS / VmHWM of the server.
 * Check: the server's Merkle root (SYNC_INIT) must equal the root computed over the generated records.
 * Targets: ready < 10 s, RSS < 400 MB.
 */
import * as Libsql from "@libsql/client"
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { lwwItemHash, MerkleTree } from "../src/crdt/merkle.js"
import { batchStatements, encodeValue, sqliteDialect, T } from "../src/layers/storage/schema.js"
import { BenchClient } from "./lib/client.js"
import { ask, describeError, errorReason } from "./lib/scenario.js"
import type { ServerHandle } from "./lib/server-process.js"
import { renderTable } from "./lib/stats.js"
import { readRss, startTessera, tesseraMissing } from "./lib/tessera.js"

export interface ColdstartOptions {
  readonly records: number
  readonly extraArgs: ReadonlyArray<string>
  readonly token: string
}

const MAP = "cold"
const READY_TARGET_S = 10
const RSS_TARGET_MB = 400
/** Rows per INSERT (one transaction each) while preparing the file. */
const ROWS_PER_TRANSACTION = 50_000

const NODE_ID = "bench-loader"
/** One timestamp (a minute ago, within any drift or GC horizon) for the whole fixture; counters differ. */
let fixtureMillis: number | undefined
const FIXTURE_MILLIS = () => (fixtureMillis ??= Date.now() - 60_000)
const keyOf = (i: number, width: number) => `rec:${String(i).padStart(width, "0")}`

/** ~100 bytes of JSON per value. */
const valueOf = (i: number) => ({
  title: `Record ${i} of the cold start data set`,
  body: "Lorem ipsum dolor sit amet, consectetur",
  n: i
})

/**
 * Writes the records into the store; returns the expected Merkle root. The map-type row goes through the
 * server's statement builder; the LWW rows are inserted by SQLite from one JSON parameter per chunk
 * (`json_each`), ~10× faster than binding 10 parameters per row, with the same column encoding as
 * `batchStatements` (value = `encodeValue` JSON text, storedAt = the record's timestamp, no TTL). The run
 * checks the result: the server's Merkle root and the first record's value must match.
 */
const writeStore = async (file: string, records: number): Promise<number> => {
  const client = Libsql.createClient({ url: pathToFileURL(file).href, intMode: "number" })
  try {
    // Preparation only: durability of the fixture does not matter, speed does.
    await client.execute("PRAGMA journal_mode=WAL")
    await client.execute("PRAGMA synchronous=OFF")
    await client.batch(batchStatements(sqliteDialect, [{ _tag: "MapType", mapName: MAP, mapType: "LWW" }]), "write")
    const insert =
      `INSERT INTO ${T.lww} (map_name,key,value,ts_millis,ts_counter,ts_node_id,ttl_ms,stored_millis,stored_counter,stored_node_id) ` +
      `SELECT ?1, json_extract(j.value,'$[0]'), json_extract(j.value,'$[1]'), ?2, json_extract(j.value,'$[2]'), ?3, NULL, ?2, json_extract(j.value,'$[2]'), ?3 ` +
      `FROM json_each(?4) AS j`
    const tree = new MerkleTree()
    const millis = FIXTURE_MILLIS()
    // Zero-padded keys arrive in primary-key order: appending to the B-tree keeps the preparation fast.
    const width = String(records - 1).length
    let rows: Array<[string, string, number]> = []
    for (let i = 0; i < records; i++) {
      const key = keyOf(i, width)
      tree.update(key, lwwItemHash(key, { millis, counter: i, nodeId: NODE_ID }))
      rows.push([key, encodeValue(valueOf(i)), i])
      if (rows.length >= ROWS_PER_TRANSACTION || i === records - 1) {
        await client.execute({ sql: insert, args: [MAP, millis, NODE_ID, JSON.stringify(rows)] })
        rows = []
      }
    }
    await client.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return tree.rootHash
  } finally {
    client.close()
  }
}

export const runColdstart = async (options: ColdstartOptions): Promise<void> => {
  const title = `\ncoldstart: embedded SQL store with ${options.records.toLocaleString("en")} LWW records (~100-byte values) in one map`
  const missing = tesseraMissing()
  if (missing !== undefined) {
    console.log(`${title}\n  n/a (${missing})`)
    return
  }
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-cold-"))
  const file = join(dir, "tessera.db")
  let server: ServerHandle | undefined
  let client: BenchClient | undefined
  let phase = "schema"
  const phaseStart = performance.now()
  try {
    // 1. Schema: let the server create it, then stop it (SIGTERM, waits for the exit).
    const init = await startTessera({ storage: "sqlite", dataDir: dir, extraArgs: options.extraArgs })
    await init.stop()
    if (!existsSync(file)) throw new Error(`the server did not create ${file}`)

    // 2. Rows.
    phase = "writing the store"
    const prepStart = performance.now()
    const expectedRoot = await writeStore(file, options.records)
    const prepMs = performance.now() - prepStart
    const fileMiB = statSync(file).size / 2 ** 20

    // 3. Cold start.
    phase = "server start"
    const spawnedAt = performance.now()
    server = await startTessera({ storage: "sqlite", dataDir: dir, extraArgs: options.extraArgs, startupTimeoutMs: 120_000 })
    const portMs = performance.now() - spawnedAt
    phase = "AUTH"
    client = await BenchClient.connect({ url: server.url, token: options.token, authTimeoutMs: 60_000 })
    phase = "QUERY_SUB"
    const resp = await ask(client, { type: "QUERY_SUB", payload: { queryId: "cold-1", mapName: MAP, query: { limit: 1 } } }, "QUERY_RESP", 120_000)
    const readyMs = performance.now() - spawnedAt
    const rss = await readRss(server.pid)
    const results: Array<unknown> = Array.isArray(resp?.results) ? resp.results : []
    phase = "SYNC_INIT"
    const root = await ask(client, { type: "SYNC_INIT", mapName: MAP, lastSyncTimestamp: 0 }, "SYNC_RESP_ROOT", 60_000)
    const rootOk = root?.rootHash === expectedRoot

    const notes = [
      `ready target <${READY_TARGET_S} s ${readyMs / 1000 < READY_TARGET_S ? "PASS" : "FAIL"}`,
      `RSS target <${RSS_TARGET_MB} MB ${rss.rssMiB * 1.048576 < RSS_TARGET_MB ? "PASS" : "FAIL"}`,
      results.length === 1 && JSON.stringify((results[0] as { value?: unknown }).value) === JSON.stringify(valueOf(0))
        ? ""
        : `QUERY_RESP did not return the first record (got ${JSON.stringify(results).slice(0, 200)})`,
      rootOk ? "Merkle root matches" : `Merkle root MISMATCH (server ${root?.rootHash}, expected ${expectedRoot})`
    ].filter((s) => s !== "")
    console.log(`${title}; file ${fileMiB.toFixed(0)} MiB written in ${(prepMs / 1000).toFixed(1)} s (preparation, not measured)`)
    console.log(renderTable([
      ["records", "PORT= s", "ready s (QUERY_RESP limit 1)", "RSS MB", "peak RSS MB", "note"],
      [
        options.records.toLocaleString("en"),
        (portMs / 1000).toFixed(2),
        (readyMs / 1000).toFixed(2),
        (rss.rssMiB * 1.048576).toFixed(0),
        (rss.peakMiB * 1.048576).toFixed(0),
        notes.join("; ")
      ]
    ]))
  } catch (error) {
    const detail = client !== undefined ? errorReason([client]) : undefined
    const at = ((performance.now() - phaseStart) / 1000).toFixed(1)
    console.log(`${title}\n  n/a (during ${phase}, ${at} s into the scenario: ${describeError(error)}${detail !== undefined ? `; ${detail}` : ""})`)
    if (server !== undefined) console.log(`  server stderr (tail):\n${server.stderrTail()}`)
  } finally {
    client?.close()
    await server?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
