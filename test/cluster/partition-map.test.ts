import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { PARTITION_COUNT } from "../../src/crdt/hash.js"
import { assignPartitions, partitionMapPayload } from "../../src/layers/cluster/partition-map.js"

const nodeId = fc.stringMatching(/^[a-z0-9-]{1,12}$/)
const nodeSet = fc.uniqueArray(nodeId, { minLength: 1, maxLength: 8 })

describe("rendezvous partition assignment", () => {
  it("assigns every partition to a member, independent of the member order", () => {
    fc.assert(fc.property(nodeSet, (nodes) => {
      const owners = assignPartitions(nodes)
      expect(owners).toHaveLength(PARTITION_COUNT)
      for (const o of owners) expect(nodes).toContain(o)
      expect(assignPartitions([...nodes].reverse())).toEqual(owners)
    }))
  })

  it("a member joining takes partitions only for itself; one leaving moves only its own", () => {
    fc.assert(fc.property(nodeSet, nodeId, (nodes, extra) => {
      fc.pre(!nodes.includes(extra))
      const before = assignPartitions(nodes)
      const after = assignPartitions([...nodes, extra])
      for (let p = 0; p < PARTITION_COUNT; p++) {
        if (after[p] !== before[p]) expect(after[p]).toBe(extra)
      }
    }))
  })

  it("spreads the partitions roughly evenly", () => {
    const nodes = ["node-a", "node-b", "node-c"]
    const counts = new Map<string, number>()
    for (const o of assignPartitions(nodes)) counts.set(o, (counts.get(o) ?? 0) + 1)
    for (const n of nodes) {
      expect(counts.get(n)).toBeGreaterThan(PARTITION_COUNT / 3 * 0.6)
      expect(counts.get(n)).toBeLessThan(PARTITION_COUNT / 3 * 1.4)
    }
  })

  it("builds a PARTITION_MAP payload with every member's endpoints", () => {
    const map = partitionMapPayload({
      version: 3,
      members: [{ nodeId: "node-a", url: "ws://a:1/ws" }, { nodeId: "node-b", url: "wss://b/ws" }]
    }, 42)
    expect(map.version).toBe(3)
    expect(map.partitionCount).toBe(PARTITION_COUNT)
    expect(map.nodes).toEqual([
      { nodeId: "node-a", endpoints: { websocket: "ws://a:1/ws", http: "http://a:1" }, status: "ACTIVE" },
      { nodeId: "node-b", endpoints: { websocket: "wss://b/ws", http: "https://b" }, status: "ACTIVE" }
    ])
    expect(map.partitions).toHaveLength(PARTITION_COUNT)
    expect(new Set(map.partitions.map((p) => p.ownerNodeId))).toEqual(new Set(["node-a", "node-b"]))
  })
})
