/**
 * Change rows: the cluster's fan-out over PostgreSQL (behavior.md §3.26). Every applied change is written,
 * in the transaction of its merge, as a row `(partition_id, seq, node_id, target, payload)` with a
 * gap-free sequence per partition taken under the row lock of the partition's counter. Partitions
 * 0..270 carry map changes (`partitionId(key)`); partition 271 carries node-to-node messages (topics,
 * counters, GC), so one stream keeps their order. NOTIFY carries only the touched partition ids.
 *
 * Plain code: the codec runs once per change on the write and read paths.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { Packr } from "msgpackr"
import { makeUnpackr, unpackDetached } from "../../crdt/msgpack.js"
import { partitionId } from "../../crdt/hash.js"
import type { LWWRecord, ORMapRecord } from "../../crdt/types.js"
import type { StorageMutation } from "../Storage.js"
import { T } from "../storage/schema.js"

/** Partition of node-to-node messages (after the 271 key partitions). */
export const CONTROL_PARTITION = 271
export const FEED_PARTITIONS = 272
/** LISTEN/NOTIFY channel; payload = comma-separated partition ids (far below the 8000-byte limit). */
export const CHANGES_CHANNEL = "tessera_changes"

/** What one change row carries. Short field names: one row per change. */
export type ChangePayload =
  | { readonly m: string; readonly k: string; readonly L: LWWRecord }
  | { readonly m: string; readonly k: string; readonly O: ORMapRecord }
  | { readonly m: string; readonly k: string; readonly X: string }
  /** A node-to-node message (`ClusterMessage`, encoded). */
  | { readonly c: unknown }
  /** A lock granted to a connection of the target node (cluster/locks.ts). */
  | { readonly g: { readonly connectionId: string; readonly requestId: string; readonly name: string; readonly fencingToken: number } }

export interface ChangeRowInput {
  readonly partition: number
  readonly target: string | null
  readonly payload: ChangePayload
}

const packr = new Packr({ useRecords: false, moreTypes: false })
const unpackr = makeUnpackr()

export const encodePayload = (p: ChangePayload): Buffer => packr.pack(p)
export const decodePayload = (b: Uint8Array): ChangePayload => unpackDetached(unpackr, b) as ChangePayload

const lwwId = (map: string, key: string) => `${map}\u0000${key}`
const orId = (map: string, key: string, tag: string) => `${map}\u0000${key}\u0000${tag}`
const tombId = (map: string, tag: string) => `${map}\u0000${tag}`

/** Identities RETURNING reported as really changed, by statement kind. */
export interface ChangedRows {
  readonly lww: Set<string>
  readonly or: Set<string>
  readonly tombstones: Set<string>
}

export const emptyChangedRows = (): ChangedRows => ({ lww: new Set(), or: new Set(), tombstones: new Set() })

export const recordReturned = (changed: ChangedRows, kind: "LwwPut" | "OrPut" | "OrTombstone", row: ReadonlyArray<unknown>): void => {
  if (kind === "LwwPut") changed.lww.add(lwwId(String(row[0]), String(row[1])))
  else if (kind === "OrPut") changed.or.add(orId(String(row[0]), String(row[1]), String(row[2])))
  else changed.tombstones.add(tombId(String(row[0]), String(row[1])))
}

/**
 * The change rows of a committed-in-this-transaction batch: only mutations whose row RETURNING reported as
 * changed (a merge that lost to a newer row another node wrote is not published), each row once. GC
 * prunes, map types and metadata are not changes.
 */
export const changeRowsFor = (batch: ReadonlyArray<StorageMutation>, changed: ChangedRows): Array<ChangeRowInput> => {
  /** Tombstone tag → the key whose record it removed (the OrRemove precedes its OrTombstone). */
  const keyOfTag = new Map<string, string>()
  for (const m of batch) if (m._tag === "OrRemove") keyOfTag.set(tombId(m.mapName, m.tag), m.key)
  const out: Array<ChangeRowInput> = []
  // Backwards, deleting each identity once used: a row written twice in one batch is published once,
  // with its last (resulting) state.
  for (let i = batch.length - 1; i >= 0; i--) {
    const m = batch[i]!
    switch (m._tag) {
      case "LwwPut":
        if (changed.lww.delete(lwwId(m.mapName, m.key))) {
          out.push({ partition: partitionId(m.key), target: null, payload: { m: m.mapName, k: m.key, L: m.record } })
        }
        break
      case "OrPut":
        if (changed.or.delete(orId(m.mapName, m.key, m.record.tag))) {
          out.push({ partition: partitionId(m.key), target: null, payload: { m: m.mapName, k: m.key, O: m.record } })
        }
        break
      case "OrTombstone": {
        const id = tombId(m.mapName, m.tag)
        if (changed.tombstones.delete(id)) {
          const key = keyOfTag.get(id) ?? ""
          out.push({ partition: partitionId(key), target: null, payload: { m: m.mapName, k: key, X: m.tag } })
        }
        break
      }
      default:
        break
    }
  }
  return out.reverse()
}

type Unsafe = (text: string, args: ReadonlyArray<unknown>) => ReturnType<SqlClient.SqlClient["unsafe"]>

/**
 * Appends change rows inside the caller's transaction: locks the touched partitions' counters in
 * partition order (no deadlock between nodes), numbers the rows gap-free, inserts them and NOTIFYs the
 * partition ids (delivered at commit; nothing when it rolls back).
 */
export const appendChangeRows = (
  unsafe: Unsafe,
  nodeId: string,
  rows: ReadonlyArray<ChangeRowInput>,
  nowMs: number
): Effect.Effect<void, SqlError> =>
  Effect.gen(function*() {
    if (rows.length === 0) return
    const counts = new Map<number, number>()
    for (const r of rows) counts.set(r.partition, (counts.get(r.partition) ?? 0) + 1)
    const parts = [...counts.keys()].sort((a, b) => a - b)
    const locked = yield* unsafe(
      `SELECT partition_id, seq FROM ${T.changeSeq} WHERE partition_id = ANY($1::int[]) ORDER BY partition_id FOR UPDATE`,
      [parts]
    ).values
    const next = new Map<number, number>()
    for (const r of locked) next.set(Number(r[0]), Number(r[1]))
    const pIds: Array<number> = []
    const seqs: Array<string> = []
    const targets: Array<string | null> = []
    const payloads: Array<Buffer> = []
    for (const r of rows) {
      const seq = (next.get(r.partition) ?? 0) + 1
      next.set(r.partition, seq)
      pIds.push(r.partition)
      seqs.push(String(seq))
      targets.push(r.target)
      payloads.push(encodePayload(r.payload))
    }
    yield* unsafe(
      `UPDATE ${T.changeSeq} s SET seq = v.seq FROM unnest($1::int[], $2::bigint[]) AS v(p, seq) WHERE s.partition_id = v.p`,
      [parts, parts.map((p) => String(next.get(p)))]
    )
    yield* unsafe(
      `INSERT INTO ${T.changes} (partition_id, seq, node_id, target, payload, created_at) ` +
        `SELECT p, s, $3, t, b, $6 FROM unnest($1::int[], $2::bigint[], $4::text[], $5::bytea[]) AS v(p, s, t, b)`,
      [pIds, seqs, nodeId, targets, payloads, nowMs]
    )
    yield* unsafe(`SELECT pg_notify($1, $2)`, [CHANGES_CHANNEL, parts.join(",")])
  })
