import { Effect, Layer, Option, PubSub, Stream, SubscriptionRef } from "effect"
import type { ClusterMessage } from "./cluster/messages.js"
import { layerPostgresCluster } from "./cluster/postgres.js"
import { ServerConfig } from "./ServerConfig.js"

export { ClusterMessage, CounterState, GcCommit, GcReport, TopicPublish } from "./cluster/messages.js"

export interface Inbound {
  readonly from: string
  readonly message: ClusterMessage
}

/** The current view of the cluster: sorted member ids, the leader and its epoch (grows on every change of leader). */
export interface Membership {
  readonly members: ReadonlyArray<string>
  readonly leader: string | undefined
  readonly epoch: number
}

export interface ClusterService {
  readonly nodeId: string
  /** The current membership (members include this node while it is joined). */
  readonly membership: Effect.Effect<Membership>
  /** Every membership change, starting with the current one. */
  readonly membershipChanges: Stream.Stream<Membership>
  /** Send to one member (delivery is best effort; the loss model depends on the layer). */
  readonly send: (to: string, message: ClusterMessage) => Effect.Effect<void>
  /** Send to every other member. */
  readonly broadcast: (message: ClusterMessage) => Effect.Effect<void>
  /** Messages from other members (and from this node to itself via `send(nodeId, …)`). */
  readonly inbound: Stream.Stream<Inbound>
  /**
   * True when changes reach other nodes through the shared durable store (PostgreSQL change rows): write
   * concern REPLICATED then waits for the commit that publishes the change. Absent/false: REPLICATED is
   * reached with APPLIED (a single node has no backups).
   */
  readonly replicatedRequiresCommit?: boolean
}

/**
 * The cluster seam. GC consensus, topics, counters and locks see only this interface; the layers are
 * `Cluster.layerSingleNode` (default: one member, itself, the leader), `Cluster.layerPostgres` (several
 * nodes sharing one PostgreSQL, `--cluster postgres`) and, for tests, an in-memory simulation of N nodes
 * (`cluster/simulated.ts`).
 */
export class Cluster extends Effect.Tag("tessera/Cluster")<Cluster, ClusterService>() {
  /** One member: this node, always the leader (epoch 1). Messages sent to itself are delivered. */
  static readonly layerSingleNode: Layer.Layer<Cluster, never, ServerConfig> = Layer.scoped(
    Cluster,
    Effect.gen(function* () {
      const { nodeId } = yield* ServerConfig
      const view: Membership = { members: [nodeId], leader: nodeId, epoch: 1 }
      const membership = yield* SubscriptionRef.make(view)
      const hub = yield* PubSub.unbounded<Inbound>()
      return {
        nodeId,
        membership: SubscriptionRef.get(membership),
        membershipChanges: membership.changes,
        send: (to, message) => (to === nodeId ? PubSub.publish(hub, { from: nodeId, message }).pipe(Effect.asVoid) : Effect.void),
        broadcast: () => Effect.void,
        inbound: Stream.fromPubSub(hub)
      } satisfies ClusterService
    })
  )

  /** Several nodes on one PostgreSQL (cluster/postgres.ts). A getter: the two modules import each other. */
  static get layerPostgres(): typeof layerPostgresCluster {
    return layerPostgresCluster
  }
}

/** True when `nodeId` is the leader of `view`. */
export const isLeader = (view: Membership, nodeId: string): boolean => view.leader === nodeId

export const leaderOf = (view: Membership): Option.Option<string> => Option.fromNullable(view.leader)
