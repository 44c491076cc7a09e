import { Effect, Option, Stream } from "effect"
import { PARTITION_COUNT } from "../crdt/hash.js"
import { ClusterDirectory, type Directory, partitionMapPayload } from "./cluster/partition-map.js"
import { type Connection, Connections } from "./Connections.js"
import { ServerConfig } from "./ServerConfig.js"

/**
 * Where this node can be reached. Filled in by `Transport` once it listens (the real port after
 * `--port 0`); read lazily by whoever advertises the node.
 */
export class ServerInfo extends Effect.Service<ServerInfo>()("tessera/ServerInfo", {
  sync: () => {
    const info = { port: 0 }
    return {
      setPort: (port: number) => {
        info.port = port
      },
      port: () => info.port
    } as const
  }
}) {}

/**
 * The partition map (protocol.md §3.13, §4.8). A single node owns all 271 partitions (version 1). In a
 * cluster the directory of live members assigns them by rendezvous hashing; every new version is pushed to
 * all authenticated clients. The map only spreads load: any node serves any key.
 */
export class Partitions extends Effect.Service<Partitions>()("tessera/Partitions", {
  scoped: Effect.gen(function* () {
    const config = yield* ServerConfig
    const info = yield* ServerInfo
    const connections = yield* Connections
    const directory = Option.getOrUndefined(yield* Effect.serviceOption(ClusterDirectory))

    const websocketUrl = (): string => {
      if (config.publicUrl !== undefined) return config.publicUrl
      const host = config.host === "::" || config.host === "0.0.0.0" ? "localhost" : config.host.includes(":") ? `[${config.host}]` : config.host
      return `ws://${host}:${info.port()}/ws`
    }

    const singleNodeMap = () => {
      const url = websocketUrl()
      const partitions = new Array(PARTITION_COUNT)
      for (let i = 0; i < PARTITION_COUNT; i++) partitions[i] = { partitionId: i, ownerNodeId: config.nodeId, backupNodeIds: [] }
      return {
        version: 1,
        partitionCount: PARTITION_COUNT,
        nodes: [{ nodeId: config.nodeId, endpoints: { websocket: url, http: url.replace(/^ws/, "http").replace(/\/ws$/, "") }, status: "ACTIVE" }],
        partitions,
        generatedAt: Date.now()
      }
    }

    let current: Directory | undefined = directory === undefined ? undefined : yield* directory.current
    if (directory !== undefined) {
      yield* directory.changes.pipe(
        Stream.runForEach((next) =>
          Effect.sync(() => {
            if (current !== undefined && next.version === current.version) return
            current = next
            const message = { type: "PARTITION_MAP", payload: partitionMapPayload(next, Date.now()) }
            for (const c of connections.all()) if (c.principal !== undefined) c.send(message)
          })
        ),
        Effect.catchAllCause((cause) => Effect.logWarning("partition map updates stopped", cause)),
        Effect.forkScoped
      )
    }

    const version = (): number => current?.version ?? 1
    const partitionMap = () => (current === undefined ? singleNodeMap() : partitionMapPayload(current, Date.now()))

    /** PARTITION_MAP_REQUEST: answered only when the client's version is older than ours. */
    const request = (c: Connection, currentVersion: number | undefined) =>
      Effect.sync(() => {
        if ((currentVersion ?? 0) < version()) c.send({ type: "PARTITION_MAP", payload: partitionMap() })
      })

    return { request, partitionMap, websocketUrl } as const
  })
}) {}
