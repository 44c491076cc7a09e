/**
 * sync: LWW Merkle sync (protocol.md §3.3, §4.7). The server holds K keys (100 000, loaded with OP_BATCH at
 * APPLIED before timing); a client holds the same keys, except D of them (1 000, spread over the key space)
 * whose local versions are older, with other values. The client walks the server's tree the way the TopGun
 * client does — SYNC_INIT → root → MERKLE_REQ_BUCKET for every mismatching bucket, level by level, all
 * requests of a level pipelined → SYNC_RESP_LEAF merged into its LWWMap — until nothing is outstanding.
 *
 * Reported: wall time to converge, sequential round trips, requests, and the bytes of all frames in both
 * directions compared with the msgpack size of the D divergent records alone. Checked: afterwards the
 * client's root equals the server's. Targets: < 2 s, bytes ≤ 5 × the divergent records.
 */
import { LWWMap } from "../src/crdt/lww-map.js"
import type { LWWRecord } from "../src/crdt/types.js"
import { BenchClient, closeAll, connectMany, packr } from "./lib/client.js"
import { loadRecords } from "./lib/load.js"
import { describeError, errorReason } from "./lib/scenario.js"
import type { ServerHandle } from "./lib/server-process.js"
import { formatMs, formatRate, renderTable } from "./lib/stats.js"
import { startTessera, tesseraMissing } from "./lib/tessera.js"

export interface SyncOptions {
  readonly keys: number
  readonly divergent: number
  readonly extraArgs: ReadonlyArray<string>
  readonly token: string
}

const MAP = "syncmap"
const TIME_TARGET_MS = 2000
const BYTES_TARGET = 5
const LEAVES = 16 ** 3

interface WalkResult {
  readonly ms: number
  readonly serverRoot: number
  readonly requests: number
  readonly roundTrips: number
  readonly leafRecords: number
  readonly merged: number
}

/** The client side of the walk; resolves when no request is outstanding. */
const walk = (client: BenchClient, local: LWWMap, timeoutMs: number): Promise<WalkResult> =>
  new Promise<WalkResult>((resolve, reject) => {
    const started = performance.now()
    let serverRoot = 0
    let outstanding = 0
    let requests = 0
    let deepestPath = -1
    let leafRecords = 0
    let merged = 0
    const timer = setTimeout(() => reject(new Error(`not converged within ${timeoutMs} ms (${outstanding} requests outstanding)`)), timeoutMs)
    const finishIfDone = () => {
      if (outstanding > 0) return
      clearTimeout(timer)
      // SYNC_INIT is one round trip, then one per tree level requested ("" is level 0).
      resolve({ ms: performance.now() - started, serverRoot, requests, roundTrips: 1 + deepestPath + 1, leafRecords, merged })
    }
    const request = (path: string) => {
      outstanding++
      requests++
      if (path.length > deepestPath) deepestPath = path.length
      client.send({ type: "MERKLE_REQ_BUCKET", payload: { mapName: MAP, path } })
    }
    client.onError((e) => {
      clearTimeout(timer)
      reject(new Error(`server answered ERROR ${e.code} ${e.message}`))
    })
    client.on("SYNC_RESP_BUCKETS", (m) => {
      outstanding--
      const path: string = m.payload.path
      const remote: Record<string, number> = m.payload.buckets ?? {}
      const mine = local.merkle.getBuckets(path)
      for (const char of Object.keys(remote)) if (remote[char] !== (mine[char] ?? 0)) request(path + char)
      finishIfDone()
    })
    client.on("SYNC_RESP_LEAF", (m) => {
      outstanding--
      const records: Array<{ key: string; record: LWWRecord }> = m.payload.records ?? []
      leafRecords += records.length
      for (const { key, record } of records) if (local.merge(key, record, record.timestamp)) merged++
      finishIfDone()
    })
    // SYNC_INIT counts as an outstanding request; SYNC_RESP_ROOT answers it.
    client.on("SYNC_RESP_ROOT", (m) => {
      outstanding--
      serverRoot = m.payload.rootHash
      if (serverRoot !== local.merkle.rootHash) request("")
      finishIfDone()
    })
    requests++
    outstanding++
    client.send({ type: "SYNC_INIT", mapName: MAP, lastSyncTimestamp: 0 })
  })

export const runSync = async (options: SyncOptions): Promise<void> => {
  const title = `\nsync: LWW Merkle sync, server ${options.keys.toLocaleString("en")} keys, client has ${options.divergent.toLocaleString("en")} of them older/different`
  const missing = tesseraMissing()
  if (missing !== undefined) {
    console.log(`${title}\n  n/a (${missing})`)
    return
  }
  let server: ServerHandle | undefined
  let loaders: Array<BenchClient> = []
  let client: BenchClient | undefined
  try {
    server = await startTessera({ storage: "memory", extraArgs: options.extraArgs })
    const millis = Date.now() - 1000
    const key = (i: number) => `item:${i}`
    const serverRecord = (i: number): LWWRecord => ({
      value: { title: `Item ${i}`, done: i % 3 === 0, n: i },
      timestamp: { millis, counter: i, nodeId: "writer-node" }
    })
    loaders = await connectMany(4, { url: server.url, token: options.token }, { ratePerSecond: 90 })
    const load = await loadRecords(loaders, { mapName: MAP, count: options.keys, key, record: serverRecord })
    closeAll(loaders)

    // The client's replica: identical except every (keys / divergent)-th key, which is older.
    const every = Math.max(1, Math.floor(options.keys / options.divergent))
    const isDivergent = (i: number) => i % every === 0 && i / every < options.divergent
    const local = new LWWMap()
    const divergentRecords: Array<{ key: string; record: LWWRecord }> = []
    for (let i = 0; i < options.keys; i++) {
      const record = isDivergent(i)
        ? { value: { title: "stale", done: false, n: -i }, timestamp: { millis: millis - 5000, counter: i, nodeId: "client-node" } }
        : serverRecord(i)
      local.merge(key(i), record, record.timestamp)
      if (isDivergent(i)) divergentRecords.push({ key: key(i), record: serverRecord(i) })
    }
    const divergentBytes = packr.pack(divergentRecords).length

    client = await BenchClient.connect({ url: server.url, token: options.token, heartbeatMs: 0 })
    client.bytesIn = 0
    client.bytesOut = 0
    const result = await walk(client, local, 30_000)
    const bytesOut = client.bytesOut
    const bytesIn = client.bytesIn
    const converged = local.merkle.rootHash === result.serverRoot
    const total = bytesIn + bytesOut
    const ratio = total / divergentBytes
    const leavesHit = Math.round(LEAVES * (1 - Math.exp(-divergentRecords.length / LEAVES)))
    const notes = [
      `time target <${TIME_TARGET_MS} ms ${result.ms < TIME_TARGET_MS ? "PASS" : "FAIL"}`,
      `bytes target <=${BYTES_TARGET}x ${ratio <= BYTES_TARGET ? "PASS" : "FAIL"}`,
      converged ? "converged (roots equal)" : `NOT converged (client root ${local.merkle.rootHash}, server ${result.serverRoot})`,
      `${result.merged}/${divergentRecords.length} divergent keys repaired`
    ]
    console.log(`${title}; load ${formatRate(load.opsPerSecond)} ops/s (APPLIED, not measured)`)
    console.log(renderTable([
      ["case", "converge ms", "round trips", "requests", "leaf records", "bytes c->s", "bytes s->c", "divergent records bytes", "bytes ratio", "note"],
      [
        `${options.keys / 1000}k keys, ${options.divergent} divergent`,
        formatMs(result.ms),
        String(result.roundTrips),
        String(result.requests),
        String(result.leafRecords),
        String(bytesOut),
        String(bytesIn),
        String(divergentBytes),
        `${ratio.toFixed(1)}x`,
        notes.join("; ")
      ]
    ]))
    console.log(
      `  (a depth-3 tree has ${LEAVES} leaves: ${options.divergent} random divergent keys touch ~${leavesHit} of them and every ` +
      `touched leaf returns all its ~${(options.keys / LEAVES).toFixed(0)} records, so the protocol itself sends ` +
      `~${((leavesHit * options.keys) / LEAVES / options.divergent).toFixed(0)}x the divergent records)`
    )
  } catch (error) {
    const detail = errorReason([...loaders, ...(client !== undefined ? [client] : [])])
    console.log(`${title}\n  n/a (${describeError(error)}${detail !== undefined ? `; ${detail}` : ""})`)
  } finally {
    closeAll(loaders)
    client?.close()
    await server?.stop()
  }
}
