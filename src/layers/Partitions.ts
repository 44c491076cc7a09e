import { Effect } from "effect"
import { PARTITION_COUNT } from "../crdt/hash.js"
import type { Connection } from "./Connections.js"
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
 * The partition map (protocol.md §3.13, §4.8). A single node owns all 271 partitions; the map only tells
 * clients where to connect. Version 1 until cluster membership changes it.
 */
export class Partitions extends Effect.Service<Partitions>()("tessera/Partitions", {
  effect: Effect.gen(function* () {
    const config = yield* ServerConfig
    const info = yield* ServerInfo
    const version = 1

    const websocketUrl = (): string => {
      if (config.publicUrl !== undefined) return config.publicUrl
      const host = config.host === "::" || config.host === "0.0.0.0" ? "localhost" : config.host.includes(":") ? `[${config.host}]` : config.host
      return `ws://${host}:${info.port()}/ws`
    }

    const partitionMap = () => {
      const url = websocketUrl()
      const partitions = new Array(PARTITION_COUNT)
      for (let i = 0; i < PARTITION_COUNT; i++) partitions[i] = { partitionId: i, ownerNodeId: config.nodeId, backupNodeIds: [] }
      return {
        version,
        partitionCount: PARTITION_COUNT,
        nodes: [{ nodeId: config.nodeId, endpoints: { websocket: url, http: url.replace(/^ws/, "http").replace(/\/ws$/, "") }, status: "ACTIVE" }],
        partitions,
        generatedAt: Date.now()
      }
    }

    /** PARTITION_MAP_REQUEST: answered only when the client's version is older than ours. */
    const request = (c: Connection, currentVersion: number | undefined) =>
      Effect.sync(() => {
        if ((currentVersion ?? 0) < version) c.send({ type: "PARTITION_MAP", payload: partitionMap() })
      })

    return { request, partitionMap, websocketUrl } as const
  })
}) {}
