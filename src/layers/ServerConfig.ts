import { Context, Layer } from "effect"

/** A role-based access policy (protocol.md §2.5). */
export interface SecurityPolicy {
  readonly role: string
  readonly mapNamePattern: string
  readonly actions: ReadonlyArray<"READ" | "PUT" | "REMOVE" | "ALL">
  readonly allowedFields?: ReadonlyArray<string>
}

export type StorageKind = "sqlite" | "postgres" | "memory"
/** "single": one node (default); "postgres": several nodes sharing one PostgreSQL (behavior.md §3.26). */
export type ClusterKind = "single" | "postgres"
export type TimestampMode = "client" | "server"
export type LogLevelName = "all" | "trace" | "debug" | "info" | "warning" | "error" | "fatal" | "none"

/**
 * Every setting of the server, already validated (see `programs/config.ts` for env / flag parsing).
 * Layers read it once in their `make`.
 */
export interface ServerSettings {
  readonly production: boolean
  readonly port: number
  readonly host: string
  readonly nodeId: string
  readonly publicUrl: string | undefined
  readonly jwtSecret: string
  readonly jwtSecretIsDefault: boolean
  readonly jwtIssuer: string | undefined
  readonly jwtAudience: string | undefined
  readonly noAuth: boolean
  readonly storage: StorageKind
  readonly dataDir: string
  readonly databaseUrl: string | undefined
  readonly timestampMode: TimestampMode
  readonly maxDriftMs: number
  readonly writeAckTimeoutMs: number
  readonly maxMessageBytes: number
  readonly maxDepth: number
  readonly maxBatchItems: number
  readonly authDeadlineMs: number
  readonly idleTimeoutMs: number
  readonly idleCheckIntervalMs: number
  readonly outboundMaxMessages: number
  readonly outboundMaxBytes: number
  readonly rateLimitPerSecond: number
  readonly rateLimitBurst: number
  readonly maxConnections: number
  readonly maxInFlightBatches: number
  readonly duplicateWindowMs: number
  readonly gcIntervalMs: number
  readonly gcAgeMs: number
  readonly ttlSweepIntervalMs: number
  readonly securityPolicies: ReadonlyArray<SecurityPolicy>
  readonly journalEnabled: boolean
  /** Indexed fields per map for full-text search; maps not listed index every top-level string property. */
  readonly fullTextSearch: Readonly<Record<string, { readonly fields: ReadonlyArray<string> }>>
  /** Built-in conflict resolvers per map name, e.g. `{ "scores": ["builtin:non_negative"] }` (server-side only). */
  readonly builtinResolvers: Readonly<Record<string, ReadonlyArray<string>>>
  readonly journalCapacity: number
  readonly logLevel: LogLevelName
  /** Wrap each handled message in a span (on when an OpenTelemetry exporter is configured). */
  readonly tracing: boolean
  readonly shutdownTimeoutMs: number
  /** New connections admitted per `connectionRateWindowMs` window; above → close 1013 (behavior.md §3.4). */
  readonly connectionRateLimit: number
  readonly connectionRateWindowMs: number
  /** Upgraded but not yet authenticated connections; above → close 1013. */
  readonly maxPendingConnections: number
  /** How long a write batch above `maxInFlightBatches` waits for capacity before ERROR 429 (behavior.md §3.9). */
  readonly batchAdmissionWaitMs: number
  /** Per-frame processing budget on the socket callback (pre-scan + decode); over it is a strike. */
  readonly decodeBudgetMs: number
  /** Strikes within `decodeStrikeWindowMs` that close the connection with 1008. */
  readonly decodeStrikeLimit: number
  readonly decodeStrikeWindowMs: number
  /** A server-initiated close not completed by the peer within this time is terminated. */
  readonly closeGraceMs: number
  /** `postgres` needs `storage: "postgres"`: the database is the cluster's engine. */
  readonly cluster: ClusterKind
  /** Period of the membership heartbeat (and leader check) in PostgreSQL. */
  readonly clusterHeartbeatMs: number
  /** A node whose heartbeat is older than this is no longer a member (a hung leader is then fenced). */
  readonly clusterHeartbeatTimeoutMs: number
}

export const defaultSettings: ServerSettings = {
  production: false,
  port: 8080,
  host: "::",
  nodeId: "node-local",
  publicUrl: undefined,
  jwtSecret: "topgun-secret-dev",
  jwtSecretIsDefault: true,
  jwtIssuer: undefined,
  jwtAudience: undefined,
  noAuth: false,
  storage: "memory",
  dataDir: "./data",
  databaseUrl: undefined,
  timestampMode: "client",
  maxDriftMs: 60_000,
  writeAckTimeoutMs: 5_000,
  maxMessageBytes: 16 * 1024 * 1024,
  maxDepth: 256,
  maxBatchItems: 8192,
  authDeadlineMs: 10_000,
  idleTimeoutMs: 20_000,
  idleCheckIntervalMs: 5_000,
  outboundMaxMessages: 100_000,
  outboundMaxBytes: 64 * 1024 * 1024,
  rateLimitPerSecond: 20_000,
  rateLimitBurst: 40_000,
  maxConnections: 10_000,
  maxInFlightBatches: 1_000,
  duplicateWindowMs: 600_000,
  gcIntervalMs: 3_600_000,
  gcAgeMs: 2_592_000_000,
  ttlSweepIntervalMs: 1_000,
  securityPolicies: [],
  journalEnabled: true,
  fullTextSearch: {},
  builtinResolvers: {},
  journalCapacity: 10_000,
  logLevel: "info",
  tracing: false,
  shutdownTimeoutMs: 10_000,
  connectionRateLimit: 100,
  connectionRateWindowMs: 1_000,
  maxPendingConnections: 1_000,
  batchAdmissionWaitMs: 5_000,
  decodeBudgetMs: 50,
  decodeStrikeLimit: 3,
  decodeStrikeWindowMs: 10_000,
  closeGraceMs: 5_000,
  cluster: "single",
  clusterHeartbeatMs: 1_000,
  clusterHeartbeatTimeoutMs: 10_000
}

export class ServerConfig extends Context.Tag("tessera/ServerConfig")<ServerConfig, ServerSettings>() {
  /** A config layer from defaults overridden by `overrides` (used by tests and embedders). */
  static layer(overrides: Partial<ServerSettings> = {}): Layer.Layer<ServerConfig> {
    return Layer.succeed(ServerConfig, { ...defaultSettings, ...overrides })
  }
}
