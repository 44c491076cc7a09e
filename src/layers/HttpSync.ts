/**
 * HTTP sync, `POST /sync` (protocol.md §3.12, behavior.md §3.25): a stateless request that pushes ops
 * through the normal write pipeline, pulls LWW deltas by storage timestamp, and runs one-shot queries
 * and searches. A leaf layer: it registers its route on `Transport` and nothing depends on it.
 */
import type * as http from "node:http"
import { Context, Data, Effect, Option, Runtime } from "effect"
import type { LWWRecord, Timestamp } from "../crdt/types.js"
import { encodeMessage, jsonDepthExceeds, scanMsgpack, ScanStatus, stripUndefined } from "../protocol/codec.js"
import { decodeHttpSyncRequest } from "../protocol/decode.js"
import type { HttpSyncRequest } from "../protocol/schema.js"
import { lastScanHadUndefined } from "../protocol/scan.js"
import { makeUnpackr, unpackDetached } from "../crdt/msgpack.js"
import { compileQuery, runQuery, unreadableFields } from "../query/index.js"
import { anonymousPrincipal, Auth, type Principal } from "./Auth.js"
import { Cluster } from "./Cluster.js"
import { Hlc } from "./Hlc.js"
import { Maps } from "./Maps.js"
import { Operations, type OpResult } from "./Operations.js"
import { isIdentityFilter, Security } from "./Security.js"
import { Sessions } from "./Sessions.js"
import { ServerConfig } from "./ServerConfig.js"
import { Transport } from "./Transport.js"

export type HttpSyncSearchRequest = NonNullable<HttpSyncRequest["searches"]>[number]
export type HttpSyncQueryRequest = NonNullable<HttpSyncRequest["queries"]>[number]

/** An entry of the response's `errors[]`. */
export interface HttpSyncError {
  readonly code: number
  readonly message: string
  readonly context?: string
}

export interface HttpSyncDeltaRecord {
  readonly key: string
  readonly record: LWWRecord
  readonly eventType: "PUT" | "REMOVE"
}

export interface HttpSyncQueryResult {
  readonly queryId: string
  readonly results: ReadonlyArray<{ readonly key: string; readonly value: unknown }>
  readonly hasMore?: boolean
  readonly nextCursor?: string
}

export interface HttpSyncSearchResult {
  readonly searchId: string
  readonly results: ReadonlyArray<unknown>
  readonly totalCount?: number
}

/** The response body (protocol.md §3.12 `HttpSyncResponse`); absent sections are omitted. */
export interface HttpSyncResponseBody {
  readonly serverHlc: Timestamp
  readonly ack?: { readonly lastId: string; readonly results: ReadonlyArray<OpResult> }
  readonly deltas?: ReadonlyArray<{ readonly mapName: string; readonly records: ReadonlyArray<HttpSyncDeltaRecord>; readonly serverSyncTimestamp: Timestamp }>
  readonly queryResults?: ReadonlyArray<HttpSyncQueryResult>
  readonly searchResults?: ReadonlyArray<HttpSyncSearchResult>
  readonly errors?: ReadonlyArray<HttpSyncError>
}

/**
 * One-shot search for HTTP sync. Optional: without it every search answers `{code: 501}`. The Search
 * layer provides it (same semantics as `SEARCH`, READ permission and FLS included).
 */
export class HttpSyncSearch extends Context.Tag("tessera/HttpSyncSearch")<HttpSyncSearch, {
  readonly search: (principal: Principal, request: HttpSyncSearchRequest) => Effect.Effect<HttpSyncSearchResult, HttpSyncError>
}>() {}

export const searchUnavailable = (request: HttpSyncSearchRequest): Effect.Effect<never, HttpSyncError> =>
  Effect.fail({ code: 501, message: "search not available", context: request.searchId })

/** A request that ends before processing, answered with a JSON body. */
class HttpFailure extends Data.TaggedError("HttpFailure")<{
  readonly status: number
  readonly body: object
  /** Ask Node to close the connection instead of reading the rest of an oversized body. */
  readonly close?: boolean
}> {}

const invalidBody = (details: ReadonlyArray<string>) =>
  new HttpFailure({ status: 400, body: { error: "Invalid request body", details } })

/** Deltas in a cluster select by another node's `storedAt`: re-send this much to absorb clock skew. */
export const CLUSTER_SKEW_MARGIN_MS = 5_000

/** `Bearer <token>` → token; a header without the scheme is taken as the token itself (TopGun does the same). */
export const bearerToken = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined
  const trimmed = header.trim()
  return /^bearer\s+/i.test(trimmed) ? trimmed.replace(/^bearer\s+/i, "") : trimmed
}

/** JSON iff the content type mentions `application/json`; everything else is msgpack (§3.12). */
export const isJsonContentType = (contentType: string | undefined): boolean =>
  (contentType ?? "").toLowerCase().includes("application/json")

const bodyUnpackr = makeUnpackr()

const renameProtoKey = function (this: Record<string, unknown>, key: string, value: unknown): unknown {
  if (key !== "__proto__") return value
  Object.defineProperty(this, "__proto_", { value, enumerable: true, writable: true, configurable: true })
  return undefined
}

/**
 * Decodes a `/sync` body with the frame codec's guards: depth pre-scan, msgpack extensions other than
 * ext-0 refused before msgpackr sees the bytes, `__proto__` keys defused. Not a frame (no `type`), so
 * `decodeFrame` itself does not apply.
 */
export const decodeSyncBody = (
  body: Uint8Array,
  json: boolean,
  maxDepth: number
): { readonly _tag: "Ok"; readonly value: unknown } | { readonly _tag: "Invalid"; readonly details: ReadonlyArray<string> } => {
  const tooDeep = { _tag: "Invalid", details: [`body nesting exceeds the maximum depth of ${maxDepth}`] } as const
  if (json) {
    const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8")
    if (jsonDepthExceeds(text, maxDepth)) return tooDeep
    try {
      return { _tag: "Ok", value: text.includes("\"__proto__\"") ? JSON.parse(text, renameProtoKey) : JSON.parse(text) }
    } catch (e) {
      return { _tag: "Invalid", details: [`invalid JSON: ${e instanceof Error ? e.message : String(e)}`] }
    }
  }
  const status = scanMsgpack(body, maxDepth)
  if (status === ScanStatus.TooDeep) return tooDeep
  if (status !== ScanStatus.Ok) {
    return { _tag: "Invalid", details: [status === ScanStatus.DisallowedExt ? "msgpack extension type not allowed" : "malformed msgpack"] }
  }
  const hadUndefined = lastScanHadUndefined()
  try {
    const value = unpackDetached(bodyUnpackr, body)
    return { _tag: "Ok", value: hadUndefined ? stripUndefined(value) : value }
  } catch (e) {
    return { _tag: "Invalid", details: [`malformed msgpack: ${e instanceof Error ? e.message : String(e)}`] }
  }
}

/** Reads the request body, refusing more than `limit` bytes with 413 (declared or streamed). */
const readBody = (req: http.IncomingMessage, limit: number): Effect.Effect<Buffer, HttpFailure> =>
  Effect.async<Buffer, HttpFailure>((resume) => {
    const tooLarge = new HttpFailure({ status: 413, body: { error: "Request body too large", limit }, close: true })
    const declared = Number(req.headers["content-length"])
    if (Number.isFinite(declared) && declared > limit) {
      resume(Effect.fail(tooLarge))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    const cleanup = () => {
      req.off("data", onData)
      req.off("end", onEnd)
      req.off("error", onError)
      req.off("aborted", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        resume(Effect.fail(tooLarge))
      } else {
        chunks.push(chunk)
      }
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks, size)))
    }
    const onError = () => {
      cleanup()
      resume(Effect.fail(new HttpFailure({ status: 400, body: { error: "Request aborted" }, close: true })))
    }
    req.on("data", onData)
    req.on("end", onEnd)
    req.on("error", onError)
    req.on("aborted", onError)
    return Effect.sync(cleanup)
  })

const writeBody = (res: http.ServerResponse, status: number, contentType: string, body: Uint8Array | string, close = false) => {
  if (res.headersSent || res.writableEnded) return
  const headers: http.OutgoingHttpHeaders = {
    "content-type": contentType,
    "content-length": typeof body === "string" ? Buffer.byteLength(body) : body.byteLength
  }
  if (close) headers.connection = "close"
  res.writeHead(status, headers)
  res.end(body)
}

const writeJson = (res: http.ServerResponse, status: number, body: object, close = false) =>
  writeBody(res, status, "application/json", JSON.stringify(body), close)

const opIdOf = (op: unknown): string | undefined => {
  const id = (op as { id?: unknown } | null)?.id
  return typeof id === "string" ? id : typeof id === "number" ? String(id) : undefined
}

/** Ops without an id get `"http-op-<index>"` (protocol.md §3.12), so every op has a result. */
const withDefaultIds = (ops: ReadonlyArray<unknown>): ReadonlyArray<unknown> =>
  ops.map((op, index) => {
    if (op === null || typeof op !== "object" || Array.isArray(op)) return op
    const id = (op as { id?: unknown }).id
    return id === undefined || id === null ? { ...op, id: `http-op-${index}` } : op
  })

export class HttpSync extends Effect.Service<HttpSync>()("tessera/HttpSync", {
  scoped: Effect.gen(function* () {
    const config = yield* ServerConfig
    const auth = yield* Auth
    const security = yield* Security
    const operations = yield* Operations
    const sessions = yield* Sessions
    const maps = yield* Maps
    const hlcService = yield* Hlc
    const hlc = hlcService.clock
    const wall = hlcService.wallMillis
    const transport = yield* Transport
    const cluster = yield* Effect.serviceOption(Cluster)
    const searchService = yield* Effect.serviceOption(HttpSyncSearch)
    const runSearch = Option.isSome(searchService) ? searchService.value.search : (_: Principal, s: HttpSyncSearchRequest) => searchUnavailable(s)
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())

    const inCluster: Effect.Effect<boolean> = Option.isSome(cluster)
      ? Effect.map(cluster.value.membership, (view) => view.members.length > 1)
      : Effect.succeed(false)

    const accessDenied = (mapName: string, context: string): HttpSyncError => ({ code: 403, message: `Access Denied for map ${mapName}`, context })

    const deltaFor = (principal: Principal, entry: { readonly mapName: string; readonly lastSyncTimestamp: Timestamp }, skewMargin: number, errors: HttpSyncError[]) =>
      Effect.gen(function* () {
        const { mapName } = entry
        if (!security.checkPermission(principal, mapName, "READ")) {
          errors.push(accessDenied(mapName, mapName))
          return undefined
        }
        const loaded = yield* Effect.either(maps.get(mapName))
        if (loaded._tag === "Left") {
          errors.push({ code: 500, message: `Failed to load map ${mapName}`, context: mapName })
          return undefined
        }
        const state = loaded.right
        if (state.type === "OR") {
          errors.push({ code: 400, message: `Map ${mapName} is not an LWW map`, context: mapName })
          return undefined
        }
        const since = skewMargin > 0 && entry.lastSyncTimestamp.millis > 0
          ? { ...entry.lastSyncTimestamp, millis: entry.lastSyncTimestamp.millis - skewMargin }
          : entry.lastSyncTimestamp
        const filter = security.valueFilter(principal, mapName)
        const identity = isIdentityFilter(filter)
        // Selection and the sync timestamp in one synchronous run: no write can fall between them.
        const records: HttpSyncDeltaRecord[] = []
        for (const [key, stored] of state.lww.entriesStoredAfter(since)) {
          const r = stored.record
          const tombstone = r.value === null
          records.push({ key, record: tombstone || identity ? r : { ...r, value: filter(r.value) }, eventType: tombstone ? "REMOVE" : "PUT" })
        }
        return { mapName, records, serverSyncTimestamp: hlc.now() }
      })

    const queryFor = (principal: Principal, q: HttpSyncQueryRequest, errors: HttpSyncError[]) =>
      Effect.gen(function* () {
        if (!security.checkPermission(principal, q.mapName, "READ")) {
          errors.push(accessDenied(q.mapName, q.queryId))
          return undefined
        }
        const readable = security.readable(principal, q.mapName)
        if (readable._tag === "Fields") {
          const hidden = unreadableFields(q.filter !== undefined && q.filter !== null ? { where: q.filter } : {}, readable.fields)
          if (hidden.length > 0) {
            errors.push({ code: 403, message: `Query references fields you may not read: ${hidden.join(", ")}`, context: q.queryId })
            return undefined
          }
        }
        // `offset` is applied after sort and cursor: the window is widened by it, then sliced.
        const offset = q.offset !== undefined && q.offset > 0 ? q.offset : 0
        const compiled = compileQuery({
          ...(q.filter !== undefined && q.filter !== null ? { where: q.filter } : {}),
          ...(q.limit !== undefined ? { limit: q.limit > 0 ? q.limit + offset : q.limit } : {}),
          ...(q.cursor !== undefined ? { cursor: q.cursor } : {})
        })
        if (!compiled.ok) {
          errors.push({ code: 400, message: `Invalid query: ${compiled.error}`, context: q.queryId })
          return undefined
        }
        const loaded = yield* Effect.either(maps.get(q.mapName))
        if (loaded._tag === "Left") {
          errors.push({ code: 500, message: `Failed to load map ${q.mapName}`, context: q.queryId })
          return undefined
        }
        const run = runQuery(maps.scanRows(loaded.right), compiled.compiled, { nowMs: wall(), settle: maps.settleRow })
        const filter = security.valueFilter(principal, q.mapName)
        const rows = offset > 0 ? run.results.slice(offset) : run.results
        const result: HttpSyncQueryResult = {
          queryId: q.queryId,
          results: rows.map((row) => ({ key: row.key, value: filter(row.value) })),
          ...(compiled.compiled.limit !== undefined ? { hasMore: run.hasMore } : {}),
          ...(run.nextCursor !== undefined ? { nextCursor: run.nextCursor } : {})
        }
        return result
      })

    /** Processes a decoded, validated request for an authenticated principal (protocol.md §3.12 order). */
    const process = Effect.fn("HttpSync.process")(function* (principal: Principal, request: HttpSyncRequest) {
      const errors: HttpSyncError[] = []
      if (request.clientHlc.millis - wall() <= config.maxDriftMs) hlc.update(request.clientHlc)

      let ack: HttpSyncResponseBody["ack"]
      const ops = request.operations ?? []
      if (ops.length > 0) {
        const withIds = withDefaultIds(ops)
        // The same server-wide in-flight write limit as WebSocket batches (behavior.md §3.9).
        if (!(yield* sessions.inFlight.acquire(config.batchAdmissionWaitMs))) {
          return yield* new HttpFailure({ status: 429, body: { error: "server overloaded, try again later" } })
        }
        const outcome = yield* operations.processOps({ principal, origin: "http" }, withIds, undefined, undefined).pipe(
          Effect.ensuring(Effect.sync(() => sessions.inFlight.release()))
        )
        for (const refusal of outcome.refusals) {
          errors.push(refusal.opId !== undefined
            ? { code: refusal.code, message: refusal.reason, context: refusal.opId }
            : { code: refusal.code, message: refusal.reason })
        }
        // Waits until every op reached its requested level (or failed), as for OP_BATCH.
        const results = yield* outcome.results
        ack = { lastId: opIdOf(withIds[withIds.length - 1]) ?? `http-op-${ops.length - 1}`, results }
      }

      const deltas: Array<NonNullable<HttpSyncResponseBody["deltas"]>[number]> = []
      if (request.syncMaps !== undefined && request.syncMaps.length > 0) {
        const skewMargin = (yield* inCluster) ? CLUSTER_SKEW_MARGIN_MS : 0
        for (const entry of request.syncMaps) {
          const delta = yield* deltaFor(principal, entry, skewMargin, errors)
          if (delta !== undefined) deltas.push(delta)
        }
      }

      const queryResults: HttpSyncQueryResult[] = []
      for (const q of request.queries ?? []) {
        const result = yield* queryFor(principal, q, errors)
        if (result !== undefined) queryResults.push(result)
      }

      const searchResults: HttpSyncSearchResult[] = []
      for (const s of request.searches ?? []) {
        const result = yield* Effect.either(runSearch(principal, s))
        if (result._tag === "Right") searchResults.push(result.right)
        else errors.push(result.left)
      }

      const response: HttpSyncResponseBody = {
        serverHlc: hlc.now(),
        ...(ack !== undefined ? { ack } : {}),
        ...(request.syncMaps !== undefined ? { deltas } : {}),
        ...(request.queries !== undefined ? { queryResults } : {}),
        ...(request.searches !== undefined ? { searchResults } : {}),
        ...(errors.length > 0 ? { errors } : {})
      }
      return response
    })

    const authenticate = (req: http.IncomingMessage): Effect.Effect<Principal, HttpFailure> => {
      if (auth.noAuth) return Effect.succeed(anonymousPrincipal)
      const header = req.headers.authorization
      if (header === undefined) return Effect.fail(new HttpFailure({ status: 401, body: { error: "Missing Authorization header" } }))
      return auth.verify(bearerToken(header)).pipe(
        Effect.mapError((e) => new HttpFailure({ status: 401, body: { error: `Authentication failed: ${e.message}` } }))
      )
    }

    const serve = (req: http.IncomingMessage, res: http.ServerResponse) =>
      Effect.gen(function* () {
        const principal = yield* authenticate(req)
        const body = yield* readBody(req, config.maxMessageBytes)
        const json = isJsonContentType(req.headers["content-type"])
        const decoded = decodeSyncBody(body, json, config.maxDepth)
        if (decoded._tag === "Invalid") return yield* invalidBody(decoded.details)
        const validated = decodeHttpSyncRequest(decoded.value)
        if (validated._tag === "Invalid") return yield* invalidBody(validated.details)
        const response = yield* process(principal, validated.request)
        if (json) writeJson(res, 200, response)
        else writeBody(res, 200, "application/msgpack", encodeMessage(response))
      }).pipe(
        Effect.catchTag("HttpFailure", (f) =>
          Effect.sync(() => writeJson(res, f.status, f.body, f.close ?? false)).pipe(
            Effect.zipRight(Effect.logDebug(`POST /sync answered ${f.status}`))
          )),
        Effect.catchAllCause((cause) =>
          Effect.sync(() => writeJson(res, 500, { error: "Internal server error" })).pipe(
            Effect.zipRight(Effect.logError("POST /sync failed", cause))
          )),
        Effect.annotateLogs({ service: "HttpSync" })
      )

    transport.addRoute({
      method: "POST",
      path: "/sync",
      handle: (req, res) => {
        runFork(serve(req, res))
      }
    })

    return { process } as const
  })
}) {}
