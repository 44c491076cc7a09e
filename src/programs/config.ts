import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { Options } from "@effect/cli"
import { Config, Effect, Option } from "effect"
import { ConfigInvalid, DEV_JWT_SECRET } from "../layers/Auth.js"
import {
  defaultSettings,
  type LogLevelName,
  type SecurityPolicy,
  type ServerSettings,
  type StorageKind,
  type TimestampMode
} from "../layers/ServerConfig.js"

/** First defined of several environment variables (Tessera names first, then TopGun aliases). */
const envAny = <A>(make: (name: string) => Config.Config<A>, ...names: ReadonlyArray<string>): Config.Config<A> =>
  names.slice(1).reduce((acc, name) => Config.orElse(acc, () => make(name)), make(names[0]!))

const int = (flag: string, envs: ReadonlyArray<string>, description: string) =>
  Options.integer(flag).pipe(
    Options.withFallbackConfig(envAny(Config.integer, ...envs)),
    Options.optional,
    Options.withDescription(`${description} (env ${envs.join(", ")})`)
  )

const text = (flag: string, envs: ReadonlyArray<string>, description: string) =>
  Options.text(flag).pipe(
    Options.withFallbackConfig(envAny(Config.string, ...envs)),
    Options.optional,
    Options.withDescription(`${description} (env ${envs.join(", ")})`)
  )

const bool = (flag: string, envs: ReadonlyArray<string>, description: string) =>
  Options.boolean(flag).pipe(
    Options.withFallbackConfig(envAny(Config.boolean, ...envs)),
    Options.optional,
    Options.withDescription(`${description} (env ${envs.join(", ")})`)
  )

const choice = <A extends string>(flag: string, choices: ReadonlyArray<A>, envs: ReadonlyArray<string>, description: string) =>
  Options.choice(flag, choices as [A, ...A[]]).pipe(
    Options.withFallbackConfig(envAny((n) => Config.literal(...(choices as [A, ...A[]]))(n), ...envs)),
    Options.optional,
    Options.withDescription(`${description} (env ${envs.join(", ")})`)
  )

/** Every `tessera serve` option; each is also settable by environment variable (flags win). */
export const serveOptions = {
  config: text("config", ["TESSERA_CONFIG"], "JSON configuration file; flags and env override it"),
  port: int("port", ["TESSERA_PORT", "PORT", "TOPGUN_PORT"], "client port for HTTP + WebSocket; 0 = ephemeral [8080]"),
  host: text("host", ["TESSERA_HOST", "TOPGUN_BIND_ADDR"], "listen address [:: (all interfaces, dual-stack)]"),
  nodeId: text("node-id", ["TESSERA_NODE_ID", "NODE_ID"], "node id: lowercase letters, digits, '-' [node-<random>]"),
  publicUrl: text("public-url", ["TESSERA_PUBLIC_URL", "TOPGUN_PUBLIC_URL"], "client-facing WebSocket URL advertised in PARTITION_MAP [derived]"),
  storage: choice("storage", ["sqlite", "postgres", "memory"] as const, ["TESSERA_STORAGE"], "storage engine [sqlite; postgres when DATABASE_URL is set]"),
  dataDir: text("data-dir", ["TESSERA_DATA_DIR"], "directory of the embedded SQL file [./data]"),
  databaseUrl: text("database-url", ["DATABASE_URL", "TESSERA_DATABASE_URL"], "PostgreSQL connection string"),
  timestampMode: choice("timestamp-mode", ["client", "server"] as const, ["TESSERA_TIMESTAMP_MODE"], "keep client HLC timestamps or re-stamp every write [client]"),
  maxDriftMs: int("max-drift-ms", ["TESSERA_MAX_DRIFT_MS"], "reject writes further ahead of server time [60000]"),
  writeAckTimeoutMs: int("write-ack-timeout-ms", ["TESSERA_WRITE_ACK_TIMEOUT_MS"], "default write-concern timeout [5000]"),
  maxMessageBytes: int("max-message-bytes", ["TESSERA_MAX_MESSAGE_BYTES"], "largest inbound frame / HTTP body, >= 2 MiB [16777216]"),
  authDeadlineMs: int("auth-deadline-ms", ["TESSERA_AUTH_DEADLINE_MS"], "close unauthenticated sockets after [10000]"),
  idleTimeoutMs: int("idle-timeout-ms", ["TESSERA_IDLE_TIMEOUT_MS"], "close silent authenticated sockets after [20000]"),
  connectionRateLimit: int("connection-rate-limit", ["TESSERA_CONNECTION_RATE_LIMIT"], "new connections admitted per connection-rate-window-ms, else close 1013 [100]"),
  connectionRateWindowMs: int("connection-rate-window-ms", ["TESSERA_CONNECTION_RATE_WINDOW_MS"], "window of the new-connection rate limit [1000]"),
  maxPendingConnections: int("max-pending-connections", ["TESSERA_MAX_PENDING_CONNECTIONS"], "upgraded but unauthenticated connections, else close 1013 [1000]"),
  batchAdmissionWaitMs: int("batch-admission-wait-ms", ["TESSERA_BATCH_ADMISSION_WAIT_MS"], "wait for in-flight write capacity before ERROR 429 [5000]"),
  decodeBudgetMs: int("decode-budget-ms", ["TESSERA_DECODE_BUDGET_MS"], "per-frame decode budget; repeated overruns close 1008 [50]"),
  cluster: choice("cluster", ["single", "postgres"] as const, ["TESSERA_CLUSTER"], "cluster mode: one node, or several nodes sharing the PostgreSQL of --database-url [single]"),
  clusterHeartbeatMs: int("cluster-heartbeat-ms", ["TESSERA_CLUSTER_HEARTBEAT_MS"], "cluster membership heartbeat period [1000]"),
  clusterHeartbeatTimeoutMs: int("cluster-heartbeat-timeout-ms", ["TESSERA_CLUSTER_HEARTBEAT_TIMEOUT_MS"], "a node silent this long leaves the cluster; a silent leader is fenced [10000]"),
  gcIntervalMs: int("gc-interval-ms", ["TESSERA_GC_INTERVAL_MS"], "GC consensus interval [3600000]"),
  gcAgeMs: int("gc-age-ms", ["TESSERA_GC_AGE_MS"], "tombstone age before pruning [2592000000]"),
  ttlSweepIntervalMs: int("ttl-sweep-interval-ms", ["TESSERA_TTL_SWEEP_INTERVAL_MS"], "TTL expiry sweep interval [1000]"),
  noJournal: Options.boolean("no-journal").pipe(
    Options.withDescription("disable the event journal (env TESSERA_JOURNAL_ENABLED=false, TOPGUN_JOURNAL_ENABLED=false) [enabled]")
  ),
  journalCapacity: int("journal-capacity", ["TESSERA_JOURNAL_CAPACITY", "TOPGUN_JOURNAL_CAPACITY"], "events kept in the journal ring [10000]"),
  noAuth: bool("no-auth", ["TESSERA_NO_AUTH", "TOPGUN_NO_AUTH"], "development only: every connection is anonymous, no JWT [false]"),
  jwtIssuer: text("jwt-issuer", ["TESSERA_JWT_ISSUER", "TOPGUN_JWT_ISSUER"], "required `iss` claim"),
  jwtAudience: text("jwt-audience", ["TESSERA_JWT_AUDIENCE", "TOPGUN_JWT_AUDIENCE"], "required `aud` claim"),
  logLevel: choice("log-level", ["all", "trace", "debug", "info", "warning", "error", "fatal", "none"] as const, ["TESSERA_LOG_LEVEL", "LOG_LEVEL"], "log level [info]")
} as const

type ValueOf<T> = T extends Options.Options<infer A> ? A : never
type Parsed = { readonly [K in keyof typeof serveOptions]: ValueOf<(typeof serveOptions)[K]> }

/** Settings a JSON config file may carry (same names as `ServerSettings`). */
const readConfigFile = (path: string): Effect.Effect<Partial<ServerSettings>, ConfigInvalid> =>
  Effect.try({
    try: () => {
      const parsed: unknown = JSON.parse(fs.readFileSync(path, "utf8"))
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("the file must hold a JSON object")
      const unknownKeys = Object.keys(parsed).filter((k) => !(k in defaultSettings))
      if (unknownKeys.length > 0) throw new Error(`unknown setting(s): ${unknownKeys.join(", ")}`)
      return parsed as Partial<ServerSettings>
    },
    catch: (e) => new ConfigInvalid({ setting: "config", message: `cannot use config file ${path}: ${e instanceof Error ? e.message : String(e)}` })
  })

/** A boolean environment variable (first of the names that is set); undefined when none is. */
const envFlag = (...names: ReadonlyArray<string>): boolean | undefined => {
  for (const name of names) {
    const v = process.env[name]
    if (v !== undefined && v !== "") return /^(true|1|yes|on)$/i.test(v)
  }
  return undefined
}

const randomNodeId = () => `node-${[...randomBytes(6)].map((b) => (b % 36).toString(36)).join("")}`

const check = (ok: boolean, setting: string, message: string): Effect.Effect<void, ConfigInvalid> =>
  ok ? Effect.void : Effect.fail(new ConfigInvalid({ setting, message }))

const validatePolicies = (policies: unknown): Effect.Effect<ReadonlyArray<SecurityPolicy>, ConfigInvalid> => {
  if (policies === undefined) return Effect.succeed([])
  const valid = Array.isArray(policies) && policies.every((p) =>
    p !== null && typeof p === "object" &&
    typeof (p as SecurityPolicy).role === "string" &&
    typeof (p as SecurityPolicy).mapNamePattern === "string" &&
    Array.isArray((p as SecurityPolicy).actions) &&
    (p as SecurityPolicy).actions.every((a) => ["READ", "PUT", "REMOVE", "ALL"].includes(a)) &&
    ((p as SecurityPolicy).allowedFields === undefined || (Array.isArray((p as SecurityPolicy).allowedFields) && (p as SecurityPolicy).allowedFields!.every((f) => typeof f === "string")))
  )
  return valid
    ? Effect.succeed(policies as ReadonlyArray<SecurityPolicy>)
    : Effect.fail(new ConfigInvalid({ setting: "securityPolicies", message: "each policy needs role (string), mapNamePattern (string), actions (READ|PUT|REMOVE|ALL)[] and optional allowedFields (string[])" }))
}

/**
 * Resolves flags > env > config file > defaults into validated settings. Invalid configuration is a
 * startup error naming the setting.
 */
export const resolveSettings = (parsed: Parsed): Effect.Effect<ServerSettings, ConfigInvalid> =>
  Effect.gen(function* () {
    const file = Option.isSome(parsed.config) ? yield* readConfigFile(parsed.config.value) : {}
    const pick = <A>(o: Option.Option<A>, fromFile: A | undefined, fallback: A): A =>
      Option.isSome(o) ? o.value : fromFile !== undefined ? fromFile : fallback
    const env = process.env
    const jwtSecretEnv = env.JWT_SECRET ?? env.TESSERA_JWT_SECRET
    const jwtSecret = jwtSecretEnv ?? file.jwtSecret ?? DEV_JWT_SECRET
    const databaseUrl = pick(parsed.databaseUrl, file.databaseUrl, undefined)
    const storage: StorageKind = pick(parsed.storage, file.storage, databaseUrl !== undefined ? "postgres" : "sqlite")
    const settings: ServerSettings = {
      ...defaultSettings,
      ...file,
      production: env.NODE_ENV === "production",
      port: pick(parsed.port, file.port, defaultSettings.port),
      host: pick(parsed.host, file.host, defaultSettings.host),
      nodeId: pick(parsed.nodeId, file.nodeId, randomNodeId()),
      publicUrl: pick(parsed.publicUrl, file.publicUrl, undefined),
      storage,
      dataDir: pick(parsed.dataDir, file.dataDir, defaultSettings.dataDir),
      databaseUrl,
      timestampMode: pick<TimestampMode>(parsed.timestampMode, file.timestampMode, defaultSettings.timestampMode),
      maxDriftMs: pick(parsed.maxDriftMs, file.maxDriftMs, defaultSettings.maxDriftMs),
      writeAckTimeoutMs: pick(parsed.writeAckTimeoutMs, file.writeAckTimeoutMs, defaultSettings.writeAckTimeoutMs),
      maxMessageBytes: pick(parsed.maxMessageBytes, file.maxMessageBytes, defaultSettings.maxMessageBytes),
      authDeadlineMs: pick(parsed.authDeadlineMs, file.authDeadlineMs, defaultSettings.authDeadlineMs),
      idleTimeoutMs: pick(parsed.idleTimeoutMs, file.idleTimeoutMs, defaultSettings.idleTimeoutMs),
      connectionRateLimit: pick(parsed.connectionRateLimit, file.connectionRateLimit, defaultSettings.connectionRateLimit),
      connectionRateWindowMs: pick(parsed.connectionRateWindowMs, file.connectionRateWindowMs, defaultSettings.connectionRateWindowMs),
      maxPendingConnections: pick(parsed.maxPendingConnections, file.maxPendingConnections, defaultSettings.maxPendingConnections),
      batchAdmissionWaitMs: pick(parsed.batchAdmissionWaitMs, file.batchAdmissionWaitMs, defaultSettings.batchAdmissionWaitMs),
      decodeBudgetMs: pick(parsed.decodeBudgetMs, file.decodeBudgetMs, defaultSettings.decodeBudgetMs),
      cluster: pick(parsed.cluster, file.cluster, defaultSettings.cluster),
      clusterHeartbeatMs: pick(parsed.clusterHeartbeatMs, file.clusterHeartbeatMs, defaultSettings.clusterHeartbeatMs),
      clusterHeartbeatTimeoutMs: pick(parsed.clusterHeartbeatTimeoutMs, file.clusterHeartbeatTimeoutMs, defaultSettings.clusterHeartbeatTimeoutMs),
      gcIntervalMs: pick(parsed.gcIntervalMs, file.gcIntervalMs, defaultSettings.gcIntervalMs),
      gcAgeMs: pick(parsed.gcAgeMs, file.gcAgeMs, defaultSettings.gcAgeMs),
      ttlSweepIntervalMs: pick(parsed.ttlSweepIntervalMs, file.ttlSweepIntervalMs, defaultSettings.ttlSweepIntervalMs),
      noAuth: pick(parsed.noAuth, file.noAuth, false),
      journalEnabled: parsed.noJournal ? false : envFlag("TESSERA_JOURNAL_ENABLED", "TOPGUN_JOURNAL_ENABLED") ?? file.journalEnabled ?? defaultSettings.journalEnabled,
      journalCapacity: pick(parsed.journalCapacity, file.journalCapacity, defaultSettings.journalCapacity),
      jwtSecret,
      jwtSecretIsDefault: jwtSecretEnv === undefined && file.jwtSecret === undefined,
      jwtIssuer: pick(parsed.jwtIssuer, file.jwtIssuer, undefined),
      jwtAudience: pick(parsed.jwtAudience, file.jwtAudience, undefined),
      logLevel: pick<LogLevelName>(parsed.logLevel, file.logLevel, defaultSettings.logLevel),
      securityPolicies: yield* validatePolicies(file.securityPolicies)
    }
    yield* check(Number.isInteger(settings.port) && settings.port >= 0 && settings.port <= 65535, "port", `port must be an integer in 0..65535, got ${settings.port}`)
    yield* check(/^[a-z0-9-]+$/.test(settings.nodeId), "node-id", `node id must contain only lowercase letters, digits and '-', got "${settings.nodeId}"`)
    yield* check(settings.maxDriftMs >= 0, "max-drift-ms", "max-drift-ms must be >= 0")
    yield* check(settings.writeAckTimeoutMs > 0, "write-ack-timeout-ms", "write-ack-timeout-ms must be > 0")
    yield* check(settings.maxMessageBytes >= 2 * 1024 * 1024, "max-message-bytes", "max-message-bytes must be at least 2 MiB (2097152)")
    yield* check(settings.authDeadlineMs > 0, "auth-deadline-ms", "auth-deadline-ms must be > 0")
    yield* check(settings.idleTimeoutMs > 0, "idle-timeout-ms", "idle-timeout-ms must be > 0")
    yield* check(settings.connectionRateLimit >= 1 && settings.connectionRateWindowMs > 0, "connection-rate-limit", "connection-rate-limit must be >= 1 and connection-rate-window-ms > 0")
    yield* check(settings.maxPendingConnections >= 1, "max-pending-connections", "max-pending-connections must be >= 1")
    yield* check(settings.batchAdmissionWaitMs >= 0, "batch-admission-wait-ms", "batch-admission-wait-ms must be >= 0")
    yield* check(settings.decodeBudgetMs > 0, "decode-budget-ms", "decode-budget-ms must be > 0")
    yield* check(settings.gcIntervalMs > 0, "gc-interval-ms", "gc-interval-ms must be > 0")
    yield* check(settings.gcAgeMs >= 0, "gc-age-ms", "gc-age-ms must be >= 0")
    yield* check(settings.journalCapacity >= 1, "journal-capacity", "journal-capacity must be >= 1")
    yield* check(settings.ttlSweepIntervalMs > 0, "ttl-sweep-interval-ms", "ttl-sweep-interval-ms must be > 0")
    yield* check(settings.storage !== "postgres" || (settings.databaseUrl ?? "") !== "", "database-url", "--storage postgres needs --database-url or DATABASE_URL")
    yield* check(settings.cluster !== "postgres" || settings.storage === "postgres", "cluster", "--cluster postgres needs PostgreSQL storage (--storage postgres with --database-url or DATABASE_URL)")
    yield* check(settings.clusterHeartbeatMs > 0, "cluster-heartbeat-ms", "cluster-heartbeat-ms must be > 0")
    yield* check(settings.clusterHeartbeatTimeoutMs > 2 * settings.clusterHeartbeatMs, "cluster-heartbeat-timeout-ms", "cluster-heartbeat-timeout-ms must be more than twice cluster-heartbeat-ms")
    yield* check(!(settings.production && settings.noAuth), "no-auth", "no-auth mode is not allowed when NODE_ENV=production")
    return settings
  })

/** Settings with secrets masked, for `tessera config` and startup logs. */
export const redactSettings = (s: ServerSettings): Record<string, unknown> => ({
  ...s,
  jwtSecret: s.jwtSecretIsDefault ? `${DEV_JWT_SECRET} (development default)` : "********",
  databaseUrl: s.databaseUrl === undefined ? undefined : s.databaseUrl.replace(/\/\/([^:@/]*):([^@/]*)@/, "//$1:********@")
})
