import { Context, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import { Packr, Unpackr } from "msgpackr"
import { HttpSync } from "../../src/layers/HttpSync.js"
import { Metrics, MetricsRegistry } from "../../src/layers/Metrics.js"
import { defaultSettings, ServerConfig, type ServerSettings } from "../../src/layers/ServerConfig.js"
import type { Storage } from "../../src/layers/Storage.js"
import { Transport } from "../../src/layers/Transport.js"
import { serverLayer, serverLayerWith } from "../../src/programs/server.js"
import { TEST_SECRET } from "../support/server.js"

export { signToken, TEST_SECRET } from "../support/server.js"

export interface RunningOpsServer {
  readonly port: number
  readonly url: string
  readonly httpUrl: string
  readonly settings: ServerSettings
  readonly close: () => Promise<void>
  readonly run: <A, E>(effect: Effect.Effect<A, E, any>) => Promise<A>
}

/**
 * The full server layer (which includes Metrics and HttpSync). `storage` replaces the storage the
 * settings ask for (e.g. a failing test store). `registryInBase` also merges `MetricsRegistry.Default`
 * on top, to check that the instance is shared.
 */
export const startOpsServer = async (
  overrides: Partial<ServerSettings> = {},
  storage?: Layer.Layer<Storage>,
  options: { readonly registryInBase?: boolean } = {}
): Promise<RunningOpsServer> => {
  const settings: ServerSettings = {
    ...defaultSettings,
    port: 0,
    host: "127.0.0.1",
    nodeId: "test-node",
    storage: "memory",
    jwtSecret: TEST_SECRET,
    jwtSecretIsDefault: false,
    ...overrides
  }
  const plain = storage === undefined
    ? serverLayer(settings)
    : serverLayerWith(storage).pipe(Layer.provideMerge(ServerConfig.layer(settings)))
  const server = options.registryInBase === true ? Layer.merge(plain, MetricsRegistry.Default) : plain
  // The server layer already carries the leaf ops layers (Metrics, HttpSync with search).
  const layer = server.pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))
  const scope = Effect.runSync(Scope.make())
  const context = (await Effect.runPromise(Layer.buildWithScope(layer, scope))) as Context.Context<never>
  const port = Context.get(context as Context.Context<Transport>, Transport).port
  return {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    httpUrl: `http://127.0.0.1:${port}`,
    settings,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void)),
    run: (effect) => Effect.runPromise(Effect.provide(effect, context) as Effect.Effect<any, any, never>)
  }
}

const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

export interface SyncReply {
  readonly status: number
  readonly contentType: string | null
  readonly body: any
}

/**
 * `POST /sync` as the TopGun client sends it: msgpack with `application/x-msgpack` (or JSON), bearer token.
 * The reply is decoded by its content type.
 */
export const postSync = async (
  baseUrl: string,
  body: unknown,
  opts: { readonly json?: boolean; readonly token?: string; readonly rawBody?: Uint8Array | string; readonly contentType?: string } = {}
): Promise<SyncReply> => {
  const json = opts.json ?? false
  const headers: Record<string, string> = {
    "content-type": opts.contentType ?? (json ? "application/json" : "application/x-msgpack")
  }
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
  const payload = opts.rawBody ?? (json ? JSON.stringify(body) : packr.pack(body))
  const res = await fetch(`${baseUrl}/sync`, { method: "POST", headers, body: payload })
  const contentType = res.headers.get("content-type")
  const bytes = new Uint8Array(await res.arrayBuffer())
  const decoded = contentType?.includes("application/json")
    ? JSON.parse(Buffer.from(bytes).toString("utf8"))
    : contentType === "application/msgpack"
    ? unpackr.unpack(bytes)
    : Buffer.from(bytes).toString("utf8")
  return { status: res.status, contentType, body: decoded }
}

export const packBody = (value: unknown): Uint8Array => packr.pack(value)
