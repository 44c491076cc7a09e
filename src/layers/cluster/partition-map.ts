/**
 * Partition map of a cluster (protocol.md §3.13, behavior.md §3.26): the 271 partitions are assigned to
 * the live members by rendezvous (highest-random-weight) hashing, so a membership change moves only the
 * partitions of the node that came or went. Any node serves any key; the map only spreads clients.
 * Plain code: pure functions plus the `ClusterDirectory` seam that tells where members are reachable.
 */
import { Context, type Effect, type Stream } from "effect"
import { fnv1a, PARTITION_COUNT } from "../../crdt/hash.js"

export interface MemberEndpoint {
  readonly nodeId: string
  /** Client-facing WebSocket URL (`--public-url`, or derived from the listening port). */
  readonly url: string
}

/** The members and their URLs, versioned: the version grows on every change of the member set. */
export interface Directory {
  readonly version: number
  readonly members: ReadonlyArray<MemberEndpoint>
}

/**
 * Where the members of a cluster can be reached. Provided by `cluster/postgres.ts`; absent on a single
 * node (the partition map then names this node alone).
 */
export class ClusterDirectory extends Context.Tag("tessera/ClusterDirectory")<
  ClusterDirectory,
  { readonly current: Effect.Effect<Directory>; readonly changes: Stream.Stream<Directory> }
>() {}

/** The rendezvous weight of `(partition, node)`: a 32-bit mix of the node id hash and the partition. */
const weight = (partition: number, nodeHash: number): number => {
  let h = (nodeHash ^ Math.imul(partition + 1, 0x9e3779b1)) >>> 0
  // murmur3 finalizer: spreads close inputs (consecutive partitions) over the whole range
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}

/** Owner node id per partition (index = partition id); ties broken by the smaller node id. */
export const assignPartitions = (nodeIds: ReadonlyArray<string>, partitions = PARTITION_COUNT): Array<string> => {
  const nodes = [...new Set(nodeIds)].sort().map((id) => ({ id, hash: fnv1a(id) }))
  const owners = new Array<string>(partitions)
  if (nodes.length === 0) return owners.fill("")
  for (let p = 0; p < partitions; p++) {
    let best = nodes[0]!
    let bestW = weight(p, best.hash)
    for (let i = 1; i < nodes.length; i++) {
      const w = weight(p, nodes[i]!.hash)
      if (w > bestW) {
        best = nodes[i]!
        bestW = w
      }
    }
    owners[p] = best.id
  }
  return owners
}

/** The PARTITION_MAP payload for a directory (protocol.md §3.13). */
export const partitionMapPayload = (directory: Directory, now: number) => {
  const owners = assignPartitions(directory.members.map((m) => m.nodeId))
  return {
    version: directory.version,
    partitionCount: PARTITION_COUNT,
    nodes: directory.members.map((m) => ({
      nodeId: m.nodeId,
      endpoints: { websocket: m.url, http: m.url.replace(/^ws/, "http").replace(/\/ws$/, "") },
      status: "ACTIVE"
    })),
    partitions: owners.map((ownerNodeId, partitionId) => ({ partitionId, ownerNodeId, backupNodeIds: [] as Array<string> })),
    generatedAt: now
  }
}
