import { Effect, Layer } from "effect"
import { Auth } from "../layers/Auth.js"
import { Changes } from "../layers/Changes.js"
import { Connections } from "../layers/Connections.js"
import { Hlc } from "../layers/Hlc.js"
import { Journal } from "../layers/Journal.js"
import { Cluster } from "../layers/Cluster.js"
import { Counters } from "../layers/Counters.js"
import { Locks } from "../layers/Locks.js"
import { Gc } from "../layers/Gc.js"
import { HttpSync, HttpSyncSearch } from "../layers/HttpSync.js"
import { Maps } from "../layers/Maps.js"
import { Metrics, MetricsRegistry } from "../layers/Metrics.js"
import { Topics } from "../layers/Topics.js"
import { Processors } from "../layers/Processors.js"
import { Resolvers } from "../layers/Resolvers.js"
import { Sandbox } from "../layers/Sandbox.js"
import { Operations } from "../layers/Operations.js"
import { Partitions, ServerInfo } from "../layers/Partitions.js"
import { Queries } from "../layers/Queries.js"
import { Search } from "../layers/Search.js"
import { Sync } from "../layers/Sync.js"
import { Router } from "../layers/Router.js"
import { Security } from "../layers/Security.js"
import { ServerConfig, type ServerSettings } from "../layers/ServerConfig.js"
import { Sessions } from "../layers/Sessions.js"
import { Storage, type StorageError } from "../layers/Storage.js"
import { makePostgresLayer } from "../layers/storage/postgres.js"
import { WriteBehind, WriteBehindConfig } from "../layers/storage/write-behind.js"
import { Transport } from "../layers/Transport.js"

/** The storage layer the settings ask for. */
export const storageLayer = (settings: ServerSettings): Layer.Layer<Storage, StorageError> => {
  switch (settings.storage) {
    case "memory":
      return Storage.layerMemory
    case "sqlite":
      return Storage.layerSqlite({ dataDir: settings.dataDir })
    case "postgres":
      // In a PostgreSQL cluster every batch also writes its change rows (behavior.md §3.26).
      return settings.cluster === "postgres"
        ? makePostgresLayer(Storage, { url: settings.databaseUrl ?? "", changeFeed: { nodeId: settings.nodeId } })
        : Storage.layerPostgres({ url: settings.databaseUrl ?? "" })
  }
}

/** The cluster layer the settings ask for: one node, or several sharing PostgreSQL. */
export const clusterLayer = (
  settings: ServerSettings
): Layer.Layer<Cluster, StorageError, ServerConfig | Maps | Storage | Hlc | ServerInfo> =>
  settings.cluster === "postgres" ? Cluster.layerPostgres(settings) : Cluster.layerSingleNode

/**
 * The whole server as one Layer, parameterised by its storage (architecture.md "Embedding"): an
 * Effect app provides `ServerConfig` and may swap `Storage`. Building the layer starts listening;
 * closing its scope shuts everything down.
 */
export const serverLayerWith = <E, EC = never, RC = never>(
  storage: Layer.Layer<Storage, E>,
  // Sits above Maps (a cluster applies remote changes through it), below everything that uses Cluster.
  cluster: Layer.Layer<Cluster, EC, RC> = Cluster.layerSingleNode as unknown as Layer.Layer<Cluster, EC, RC>
) => {
  const core = Transport.Default.pipe(
    Layer.provideMerge(Sessions.Default),
    Layer.provideMerge(Router.Default),
    Layer.provideMerge(Layer.mergeAll(Operations.Default, Sync.Default, Partitions.Default, Queries.Default, Journal.Default, Processors.Default, Topics.Default, Locks.Default, Counters.Default, Search.Default)),
    Layer.provideMerge(Resolvers.Default),
    Layer.provideMerge(cluster),
    Layer.provideMerge(Layer.mergeAll(Maps.Default, Sandbox.Default)),
    Layer.provideMerge(WriteBehind.Default),
    Layer.provideMerge(Layer.mergeAll(storage, WriteBehindConfig.layer())),
    Layer.provideMerge(Layer.mergeAll(Auth.Default, Security.Default, Hlc.Default, Changes.Default, Connections.Default, ServerInfo.Default, MetricsRegistry.Default))
  )
  // Leaf layers: they use the core and nothing depends on them.
  const httpSyncSearch = Layer.effect(HttpSyncSearch, Effect.map(Search, (search) => ({ search: search.searchFor })))
  return Layer.mergeAll(Metrics.Default, Gc.Default, HttpSync.Default.pipe(Layer.provide(httpSyncSearch))).pipe(Layer.provideMerge(core))
}

/** The server for the given settings (storage chosen by `settings.storage`). */
export const serverLayer = (settings: ServerSettings) =>
  serverLayerWith(storageLayer(settings), clusterLayer(settings)).pipe(Layer.provideMerge(ServerConfig.layer(settings)))

/**
 * Graceful shutdown (behavior.md §3.29): stop accepting, drain persistence, tell every client
 * `SHUTDOWN_PENDING`, close with 1001. Bounded by `shutdownTimeoutMs`; the caller then closes the scope.
 */
export const gracefulShutdown = Effect.gen(function* () {
  const config = yield* ServerConfig
  const transport = yield* Transport
  const connections = yield* Connections
  const writeBehind = yield* WriteBehind
  yield* transport.stopAccepting
  yield* writeBehind.flush.pipe(Effect.timeout(Math.max(1000, config.shutdownTimeoutMs - 2000)), Effect.ignore)
  for (const c of connections.all()) {
    c.send({ type: "SHUTDOWN_PENDING", retryAfter: 5000 })
    c.close({ code: 1001, reason: "Server Shutdown" })
  }
  // Give the writers a moment to flush the close frames.
  yield* Effect.sleep(50)
})
