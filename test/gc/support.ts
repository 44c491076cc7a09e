/**
 * Per-node layer stacks and fakes for the GC tests. Layers are built inside the test, so their fibers
 * run on the test's clock (TestClock, or the simulation clock).
 */
import { Context, Deferred, Effect, Exit, FiberId, Layer, Option, type Scope } from "effect"
import type { LWWRecord, Timestamp } from "../../src/crdt/types.js"
import { anonymousPrincipal } from "../../src/layers/Auth.js"
import { Changes } from "../../src/layers/Changes.js"
import { Cluster } from "../../src/layers/Cluster.js"
import { type Connection, Connections } from "../../src/layers/Connections.js"
import { Gc } from "../../src/layers/Gc.js"
import { Hlc } from "../../src/layers/Hlc.js"
import { Maps } from "../../src/layers/Maps.js"
import { ServerConfig, type ServerSettings } from "../../src/layers/ServerConfig.js"
import { Storage, type StorageService } from "../../src/layers/Storage.js"
import { makeMemoryStorage } from "../../src/layers/storage/memory.js"
import { type PersistFailed, WriteBehind, WriteBehindConfig } from "../../src/layers/storage/write-behind.js"

export const ts = (millis: number, counter = 0, nodeId = "client"): Timestamp => ({ millis, counter, nodeId })

/** Memory storage that claims to be durable, so GC's storage deletes and the horizon are exercised. */
export const durableMemory = (): StorageService => ({ ...makeMemoryStorage(), kind: "sqlite", durable: true })

export interface NodeOptions {
  readonly nodeId: string
  readonly settings?: Partial<ServerSettings>
  /** Defaults to `Cluster.layerSingleNode`. */
  readonly cluster?: Layer.Layer<Cluster, never, ServerConfig>
  readonly storage?: StorageService
  /**
   * Replace the write-behind queue by a no-op (simulations use non-durable storage, where nothing is
   * ever submitted): one fiber and one finalizer less per node keeps 100-seed runs fast.
   */
  readonly noWriteBehind?: boolean
}

const noWriteBehind = Layer.sync(WriteBehind, () => {
  const done = Deferred.unsafeMake<void, PersistFailed>(FiberId.none)
  Deferred.unsafeDone(done, Exit.void)
  return WriteBehind.make({
    durable: false,
    submit: () => Effect.succeed(done),
    submitUnsafe: () => done,
    submitThen: () => false,
    enqueueUnsafe: () => {},
    status: Effect.succeed({ healthy: true, queueDepth: 0, failures: 0, consecutiveFailures: 0, committedBatches: 0 }),
    flush: Effect.void
  })
})

/** Everything Gc needs, plus Gc itself; every service stays visible to the test. */
export const nodeLayer = (opts: NodeOptions) =>
  Gc.Default.pipe(
    Layer.provideMerge(Maps.Default),
    Layer.provideMerge(opts.noWriteBehind === true ? noWriteBehind : WriteBehind.Default),
    Layer.provideMerge(Layer.mergeAll(Layer.succeed(Storage, opts.storage ?? makeMemoryStorage()), WriteBehindConfig.layer({ flushIntervalMs: 1 }))),
    Layer.provideMerge(Layer.mergeAll(Hlc.Default, Changes.Default, Connections.Default, opts.cluster ?? Cluster.layerSingleNode)),
    Layer.provideMerge(
      ServerConfig.layer({ nodeId: opts.nodeId, gcIntervalMs: 1000, gcAgeMs: 0, ttlSweepIntervalMs: 1000, ...opts.settings })
    )
  )

export interface Node {
  readonly id: string
  readonly gc: Gc
  readonly maps: Maps
  readonly connections: Connections
  readonly changes: Changes
  readonly storage: StorageService
  readonly context: Context.Context<Gc | Maps | Connections | Changes | Storage | Hlc>
}

export const nodeFromContext = (id: string, context: Context.Context<Gc | Maps | Connections | Changes | Storage | Hlc>): Node => ({
  id,
  gc: Context.get(context, Gc),
  maps: Context.get(context, Maps),
  connections: Context.get(context, Connections),
  changes: Context.get(context, Changes),
  storage: Context.get(context, Storage),
  context
})

/** Builds one node in the test's scope, or in `scope` (closing it stops the node). */
export const buildNode = (opts: NodeOptions, scope?: Scope.Scope): Effect.Effect<Node, never, Scope.Scope> =>
  Effect.map(
    scope === undefined ? Layer.build(nodeLayer(opts)) : Layer.buildWithScope(nodeLayer(opts), scope),
    (context) => nodeFromContext(opts.nodeId, context)
  )

export interface FakeConnection extends Connection {
  readonly sent: Array<{ readonly type: string; readonly payload?: unknown }>
}

/** A connection that records what it is sent; `principal: undefined` = not authenticated. */
export const fakeConnection = (id: string, lastActiveHlc: Timestamp, authenticated = true): FakeConnection => {
  const sent: Array<{ type: string; payload?: unknown }> = []
  return {
    id,
    remoteAddress: "test",
    principal: authenticated ? anonymousPrincipal : undefined,
    lastActiveHlc,
    lastInboundAt: 0,
    openedAt: 0,
    send: (message: object) => {
      sent.push(message as { type: string })
    },
    sendEncoded: () => {},
    close: () => {},
    isOpen: () => true,
    sent
  }
}

/** Writes an LWW record through the apply path (origin client) and submits its persistence. */
export const writeLww = (node: Node, mapName: string, key: string, record: LWWRecord) =>
  Effect.gen(function* () {
    const state = yield* Effect.orDie(node.maps.get(mapName))
    const change = node.maps.applyLww(state, key, record, { origin: "client" })
    node.maps.flushPersistence()
    return change
  })

/** The stored LWW version of a key, if any. */
export const storedLww = (node: Node, mapName: string, key: string) =>
  Option.fromNullable(node.maps.peek(mapName)?.lww.get(key))
