import { Context, Effect, Layer, PubSub, Stream } from "effect"
import { Unpackr } from "msgpackr"
import type { Principal } from "../../src/layers/Auth.js"
import { Cluster, type ClusterMessage, type ClusterService, type Inbound } from "../../src/layers/Cluster.js"
import { type Connection, Connections } from "../../src/layers/Connections.js"
import { Counters } from "../../src/layers/Counters.js"
import { Hlc } from "../../src/layers/Hlc.js"
import { Locks, LocksConfig, type LockSettings } from "../../src/layers/Locks.js"
import { Security } from "../../src/layers/Security.js"
import { ServerConfig, type ServerSettings } from "../../src/layers/ServerConfig.js"
import { Storage, type StorageService } from "../../src/layers/Storage.js"
import { makeMemoryStorage } from "../../src/layers/storage/memory.js"
import { WriteBehind, WriteBehindConfig } from "../../src/layers/storage/write-behind.js"
import { Topics } from "../../src/layers/Topics.js"

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

export type Sent = { readonly type: string; readonly payload?: any; readonly [k: string]: any }

export interface FakeConnection {
  readonly connection: Connection
  /** Every message enqueued to the connection, in order (encoded frames decoded back). */
  readonly sent: Array<Sent>
  /** Raw frames passed to `sendEncoded` (to check fan-out encodes once). */
  readonly frames: Array<Uint8Array>
  ofType(type: string): Array<Sent>
}

/** A connection object as Sessions builds it, recording what the server enqueues to it. */
export const fakeConnection = (id: string, principal: Principal = { roles: ["USER"], claims: {} }): FakeConnection => {
  const sent: Array<Sent> = []
  const frames: Array<Uint8Array> = []
  let open = true
  const connection: Connection = {
    id,
    remoteAddress: "test",
    principal,
    lastActiveHlc: { millis: 0, counter: 0, nodeId: id },
    lastInboundAt: 0,
    openedAt: 0,
    send: (message) => {
      if (open) sent.push(structuredClone(message) as Sent)
    },
    sendEncoded: (frame) => {
      if (!open) return
      frames.push(frame)
      sent.push(unpackr.unpack(frame) as Sent)
    },
    close: () => {
      open = false
    },
    isOpen: () => open
  }
  return { connection, sent, frames, ofType: (type) => sent.filter((m) => m.type === type) }
}

export interface TestCluster {
  readonly layer: Layer.Layer<Cluster>
  /** What this node broadcast to the others, in order. */
  readonly broadcasts: Array<ClusterMessage>
  /** Delivers a message as if `from` had sent it. */
  readonly inject: (from: string, message: ClusterMessage) => Effect.Effect<void>
}

/** A cluster seam that records broadcasts and lets the test play other nodes. */
export const makeTestCluster = (nodeId = "test-node"): Effect.Effect<TestCluster> =>
  Effect.gen(function* () {
    const hub = yield* PubSub.unbounded<Inbound>()
    const broadcasts: Array<ClusterMessage> = []
    const view = { members: [nodeId, "node-b"], leader: nodeId, epoch: 1 }
    const service: ClusterService = {
      nodeId,
      membership: Effect.succeed(view),
      membershipChanges: Stream.make(view),
      send: () => Effect.void,
      broadcast: (message) => Effect.sync(() => void broadcasts.push(message)),
      inbound: Stream.fromPubSub(hub)
    }
    return {
      layer: Layer.succeed(Cluster, service),
      broadcasts,
      inject: (from, message) => PubSub.publish(hub, { from, message }).pipe(Effect.asVoid)
    }
  })

/** Memory storage that claims to be durable, so the persistence paths run (and survive a rebuild). */
export const durableMemoryStorage = (): StorageService => ({ ...makeMemoryStorage(), kind: "sqlite", durable: true })

export interface CoordinationOptions {
  readonly settings?: Partial<ServerSettings>
  readonly locks?: Partial<LockSettings>
  readonly storage?: StorageService
  readonly cluster?: Layer.Layer<Cluster>
}

export type Coordination = Context.Context<Topics | Locks | Counters | Connections | WriteBehind>

/** Builds the three coordination layers and their dependencies in the current scope (TestClock applies). */
export const buildCoordination = (opts: CoordinationOptions = {}): Effect.Effect<Coordination, unknown, import("effect").Scope.Scope> => {
  const base = Layer.mergeAll(
    Connections.Default,
    Security.Default,
    Hlc.Default,
    opts.cluster ?? Cluster.layerSingleNode,
    WriteBehind.Default.pipe(Layer.provide(WriteBehindConfig.layer({ flushIntervalMs: 1 }))),
    LocksConfig.layer(opts.locks ?? {})
  ).pipe(
    Layer.provideMerge(Layer.succeed(Storage, opts.storage ?? makeMemoryStorage())),
    Layer.provideMerge(ServerConfig.layer({ nodeId: "test-node", ...opts.settings }))
  )
  const layer = Layer.mergeAll(Topics.Default, Locks.Default, Counters.Default).pipe(Layer.provideMerge(base))
  return Layer.build(layer) as Effect.Effect<Coordination, unknown, import("effect").Scope.Scope>
}

/** Lets forked fibers run to their next wait without moving the clock. */
export const settle = Effect.gen(function* () {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
})

/** Registers fake connections with the Connections registry (as Sessions does on open). */
export const connect = (ctx: Coordination, ...ids: Array<string>): Array<FakeConnection> => {
  const connections = Context.get(ctx, Connections)
  return ids.map((id) => {
    const fake = fakeConnection(id)
    connections.register(fake.connection)
    return fake
  })
}

/** Runs the disconnect cleanup for a fake connection (as Sessions does on close). */
export const disconnect = (ctx: Coordination, fake: FakeConnection): Effect.Effect<void> =>
  Effect.suspend(() => {
    fake.connection.close({ code: 1000, reason: "" })
    return Context.get(ctx, Connections).unregister(fake.connection)
  })
