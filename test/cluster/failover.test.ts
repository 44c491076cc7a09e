/**
 * Leader failover (behavior.md §3.26, §3.16): SIGKILL of the leader process frees its advisory lock with
 * its connection; another node takes over with a larger epoch, the dead node drops out of the membership
 * after the heartbeat timeout, and the next GC round completes under the new leader.
 */
import { Unpackr } from "msgpackr"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TestClient } from "../support/client.js"
import { findPostgresBin } from "../support/postgres.js"
import { eventually, startCluster, type TestCluster } from "./support.js"

const hasPostgres = findPostgresBin() !== undefined
const NODES = ["node-a", "node-b", "node-c"] as const
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

type LeaderRow = {
  readonly node_id: string | null
  readonly epoch: string
}

describe.skipIf(!hasPostgres)("cluster on PostgreSQL: leader failover", () => {
  let cluster: TestCluster
  const clients: Array<TestClient> = []

  beforeAll(async () => {
    cluster = await startCluster("failover", NODES, ["--gc-interval-ms", "200", "--gc-age-ms", "0"])
  }, 90_000)

  afterAll(async () => {
    for (const c of clients) c.close()
    await cluster?.stop()
  }, 30_000)

  /** GC commits published by `nodeId` (decoded from the control partition's change rows). */
  const gcCommitsBy = async (nodeId: string) => {
    const rows = await cluster.query<{ payload: Buffer }>("SELECT payload FROM tessera_changes WHERE partition_id = 271 AND node_id = $1 ORDER BY seq", [nodeId])
    return rows.map((r) => unpackr.unpack(r.payload)).filter((p: any) => p.c?._tag === "GcCommit").map((p: any) => p.c as { epoch: number })
  }

  it("SIGKILL of the leader moves GC leadership to another node and the next round completes", async () => {
    let before: LeaderRow | undefined
    await eventually("a leader", async () => {
      before = (await cluster.query<LeaderRow>("SELECT node_id, epoch FROM tessera_cluster_leader"))[0]
      return before?.node_id != null
    })
    const oldLeader = before!.node_id!
    // GC works before the failure: the leader publishes commits.
    await eventually("a GC commit by the first leader", async () => (await gcCommitsBy(oldLeader)).length > 0)

    const survivor = NODES.find((n) => n !== oldLeader)!
    const watcher = await TestClient.authed(cluster.nodes.get(survivor)!.url)
    clients.push(watcher)

    cluster.nodes.get(oldLeader)!.child.kill("SIGKILL")
    await cluster.nodes.get(oldLeader)!.exited

    let after: LeaderRow | undefined
    await eventually("a new leader with a larger epoch", async () => {
      after = (await cluster.query<LeaderRow>("SELECT node_id, epoch FROM tessera_cluster_leader"))[0]
      return after?.node_id != null && after.node_id !== oldLeader
    }, 15_000)
    expect(Number(after!.epoch)).toBeGreaterThan(Number(before!.epoch))
    const newLeader = after!.node_id!

    // The next round completes: a commit of the new epoch, and clients on the survivors are told to prune.
    await eventually("a GC commit by the new leader", async () =>
      (await gcCommitsBy(newLeader)).some((c) => c.epoch === Number(after!.epoch)), 15_000)
    const prune = await watcher.next("GC_PRUNE", () => true, 15_000)
    expect(prune.payload.olderThan.millis).toBeGreaterThan(0)
  }, 60_000)

  it("a hung leader (SIGSTOP) is fenced after the heartbeat timeout, and when it resumes it cannot act", async () => {
    const row = (await cluster.query<LeaderRow>("SELECT node_id, epoch FROM tessera_cluster_leader"))[0]!
    const hung = row.node_id!
    const hungProcess = cluster.nodes.get(hung)!
    const other = [...cluster.nodes.keys()].find((n) => n !== hung && cluster.nodes.get(n)!.child.exitCode === null && cluster.nodes.get(n)!.child.signalCode === null)!
    hungProcess.child.kill("SIGSTOP")
    try {
      await eventually("the other node takes over", async () => {
        const now = (await cluster.query<LeaderRow>("SELECT node_id, epoch FROM tessera_cluster_leader"))[0]!
        return now.node_id === other && Number(now.epoch) > Number(row.epoch)
      }, 15_000)
      // The hung leader's session was ended by the others.
      const sessions = await cluster.query("SELECT pid FROM pg_stat_activity WHERE application_name = $1", [`tessera-leader:${hung}`])
      expect(sessions).toEqual([])
    } finally {
      hungProcess.child.kill("SIGCONT")
    }
    const commitsOfOldEpoch = (await gcCommitsBy(hung)).filter((c) => c.epoch === Number(row.epoch)).length
    // Resumed, it rejoins (fresh heartbeat) as a follower; its old-epoch commits are refused by the database.
    await eventually("the resumed node heartbeats again", async () =>
      (await cluster.query("SELECT 1 FROM tessera_cluster_nodes WHERE node_id = $1 AND heartbeat_at > (extract(epoch from clock_timestamp()) * 1000)::bigint - 500", [hung])).length === 1)
    const newEpoch = Number((await cluster.query<LeaderRow>("SELECT epoch FROM tessera_cluster_leader"))[0]!.epoch)
    await eventually("a GC commit by the new leader after the resume", async () =>
      (await gcCommitsBy(other)).filter((c) => c.epoch === newEpoch).length >= 2, 15_000)
    const leaderNow = (await cluster.query<LeaderRow>("SELECT node_id, epoch FROM tessera_cluster_leader"))[0]!
    expect(leaderNow.node_id).toBe(other)
    expect((await gcCommitsBy(hung)).filter((c) => c.epoch === Number(row.epoch)).length).toBe(commitsOfOldEpoch)
  }, 60_000)
})
