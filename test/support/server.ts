import { Context, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import * as jose from "jose"
import { defaultSettings, ServerConfig, type ServerSettings } from "../../src/layers/ServerConfig.js"
import type { Storage } from "../../src/layers/Storage.js"
import { Transport } from "../../src/layers/Transport.js"
import { serverLayer, serverLayerWith } from "../../src/programs/server.js"

export const TEST_SECRET = "test-secret-for-tessera-e2e-suite-0123456789"

export interface RunningServer {
  readonly port: number
  readonly url: string
  readonly httpUrl: string
  readonly context: Context.Context<never>
  readonly settings: ServerSettings
  readonly close: () => Promise<void>
  readonly run: <A, E>(effect: Effect.Effect<A, E, any>) => Promise<A>
}

export interface StartOptions {
  /** Extra services the server layer may use (e.g. `Hooks.layer(...)`). */
  readonly extra?: Layer.Layer<any, never, never>
  /** Replaces the storage the settings ask for (e.g. a failing test store). */
  readonly storage?: Layer.Layer<Storage>
  /** Also merges these layers on top of the server (e.g. to check that an instance is shared). */
  readonly alongside?: Layer.Layer<any, never, never>
}

/** Starts the full server layer in-process on an ephemeral port (memory storage unless overridden). */
export const startServer = async (
  overrides: Partial<ServerSettings> = {},
  options: StartOptions | Layer.Layer<any, never, never> = {}
): Promise<RunningServer> => {
  const { extra, storage, alongside } = Layer.isLayer(options) ? { extra: options } as StartOptions : options
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
  const scope = Effect.runSync(Scope.make())
  const logs = Logger.minimumLogLevel(LogLevel.Error)
  const server = storage === undefined
    ? serverLayer(settings)
    : serverLayerWith(storage).pipe(Layer.provideMerge(ServerConfig.layer(settings)))
  const layer = (alongside === undefined ? server : Layer.merge(server, alongside)).pipe(
    Layer.provide(extra === undefined ? logs : Layer.merge(extra, logs))
  )
  const context = (await Effect.runPromise(Layer.buildWithScope(layer, scope))) as Context.Context<never>
  const port = Context.get(context as Context.Context<Transport>, Transport).port
  return {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    httpUrl: `http://127.0.0.1:${port}`,
    context,
    settings,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void)),
    run: (effect) => Effect.runPromise(Effect.provide(effect, context) as Effect.Effect<any, any, never>)
  }
}

/** Signs an HS256 token with the test secret. */
export const signToken = (claims: Record<string, unknown> = { sub: "user-1" }, secret: string = TEST_SECRET, expiresIn?: string): Promise<string> => {
  let jwt = new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt()
  if (expiresIn !== undefined) jwt = jwt.setExpirationTime(expiresIn)
  return jwt.sign(new TextEncoder().encode(secret))
}
