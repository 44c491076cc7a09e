import type { Layer } from "effect"
import { Packr, Unpackr } from "msgpackr"
import { MetricsRegistry } from "../../src/layers/Metrics.js"
import type { ServerSettings } from "../../src/layers/ServerConfig.js"
import type { Storage } from "../../src/layers/Storage.js"
import { type RunningServer, startServer } from "../support/server.js"

export { signToken, TEST_SECRET } from "../support/server.js"

export type RunningOpsServer = RunningServer

/**
 * The full server (which includes Metrics and HttpSync). `storage` replaces the storage the settings ask
 * for (e.g. a failing test store); `registryInBase` also merges `MetricsRegistry.Default` on top, to check
 * that the instance is shared.
 */
export const startOpsServer = (
  overrides: Partial<ServerSettings> = {},
  storage?: Layer.Layer<Storage>,
  options: { readonly registryInBase?: boolean } = {}
): Promise<RunningOpsServer> =>
  startServer(overrides, {
    ...(storage !== undefined ? { storage } : {}),
    ...(options.registryInBase === true ? { alongside: MetricsRegistry.Default } : {})
  })

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
