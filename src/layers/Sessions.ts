import { randomUUID } from "node:crypto"
import { Deferred, Effect, Exit, Fiber, FiberSet, Queue, Schedule } from "effect"
import type { RawData, WebSocket } from "ws"
import { unpackInboundBatch } from "../protocol/batch.js"
import { decodeFrame, encodeMessage } from "../protocol/codec.js"
import { decodeClientMessage } from "../protocol/decode.js"
import { Auth } from "./Auth.js"
import { type CloseRequest, type Connection, Connections } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { MetricsRegistry } from "./Metrics.js"
import { Router } from "./Router.js"
import { ServerConfig } from "./ServerConfig.js"

type InboundFrame = { readonly type: string; readonly [key: string]: unknown }

const toBytes = (data: RawData): Buffer =>
  Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data

/** Token bucket (behavior.md §3.4): refilled continuously from the Effect clock. */
class TokenBucket {
  private tokens: number
  private last: number
  constructor(private readonly ratePerSecond: number, private readonly burst: number, now: number) {
    this.tokens = burst
    this.last = now
  }
  take(cost: number, now: number): boolean {
    const elapsed = now - this.last
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000)
      this.last = now
    }
    const c = Math.min(cost, this.burst)
    if (this.tokens < c) return false
    this.tokens -= c
    return true
  }
}

/**
 * One actor per WebSocket (behavior.md §2, §3.2): socket callbacks only decode and enqueue; one fiber
 * processes the inbound queue in order; outbound frames go to the socket in call order (its buffer is
 * the connection's outbound FIFO). PING is
 * answered on receipt (it has no ordering relationship with other messages). The connection's fibers
 * live in its own scope, closed when the socket closes.
 */
export class Sessions extends Effect.Service<Sessions>()("tessera/Sessions", {
  scoped: Effect.gen(function* () {
    const config = yield* ServerConfig
    const auth = yield* Auth
    const connections = yield* Connections
    const router = yield* Router
    const hlcService = yield* Hlc
    const hlc = hlcService.clock
    const wall = hlcService.wallMillis
    const metrics = yield* MetricsRegistry
    const sessionFibers = yield* FiberSet.make()

    const authRequired = encodeMessage({ type: "AUTH_REQUIRED" })

    const runConnection = (ws: WebSocket, remoteAddress: string) =>
      Effect.gen(function* () {
        const inbound = yield* Queue.unbounded<InboundFrame>()
        const closed = yield* Deferred.make<void>()
        const opened = wall()
        const bucket = new TokenBucket(config.rateLimitPerSecond, config.rateLimitBurst, opened)
        let open = true
        let closing = false

        const hardClose = (request: CloseRequest) => {
          if (!open) return
          open = false
          closing = true
          try {
            ws.close(request.code, request.reason)
          } catch {
            ws.terminate()
          }
        }

        /*
         * Outbound FIFO. Frames are written to the socket synchronously, in call order, so per-connection
         * order holds by construction (the socket's own buffer is the queue) and no fiber hop is paid per
         * message. The socket is corked for the rest of the tick, so a burst of frames (fan-out, many acks)
         * leaves in one write. The backlog is what the socket has not flushed yet (`bufferedAmount`) plus
         * the frames written this tick; above the limits the connection is closed as a slow consumer.
         */
        const rawSocket = (ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket
        let corked = false
        let framesSinceDrain = 0
        const uncork = () => {
          corked = false
          rawSocket?.uncork()
          if (ws.bufferedAmount === 0) framesSinceDrain = 0
        }
        const sendEncoded = (frame: Uint8Array): void => {
          if (!open || closing) return
          framesSinceDrain++
          if (framesSinceDrain > config.outboundMaxMessages || ws.bufferedAmount + frame.byteLength > config.outboundMaxBytes) {
            hardClose({ code: 4003, reason: "Slow consumer" })
            return
          }
          if (!corked && rawSocket !== undefined) {
            corked = true
            rawSocket.cork()
            process.nextTick(uncork)
          }
          ws.send(frame)
        }

        const connection: Connection = {
          id: randomUUID(),
          remoteAddress,
          principal: undefined,
          lastActiveHlc: hlc.now(),
          lastInboundAt: opened,
          openedAt: opened,
          send: (message) => sendEncoded(encodeMessage(message)),
          sendEncoded,
          close: (request) => {
            if (!open || closing) return
            // Queued frames are already in the socket buffer, ahead of the close frame.
            hardClose(request)
          },
          isOpen: () => open && !closing
        }

        const sendError = (code: number, message: string, details?: unknown) =>
          connection.send({ type: "ERROR", payload: details === undefined ? { code, message } : { code, message, details } })

        /** Rate-limit cost of a message (behavior.md §3.4); inbound BATCH is charged per record. */
        const costOf = (frame: InboundFrame): number => {
          if (frame.type !== "OP_BATCH") return 1
          const ops = (frame.payload as { ops?: unknown } | undefined)?.ops
          return Array.isArray(ops) ? Math.max(1, ops.length) : 1
        }

        const authenticated = () => connection.principal !== undefined

        /**
         * Decodes one frame (or one inner record of an inbound BATCH), charges the rate limiter, answers
         * PING at once and queues everything else for the inbound fiber. Plain code on the socket callback.
         */
        const processFrame = (payload: Uint8Array | string, now: number, nested: boolean): void => {
          const decoded = decodeFrame(payload, { maxDepth: config.maxDepth })
          if (decoded._tag !== "Ok") {
            // Undecodable or too deep: dropped; after auth the sender is told (never closed).
            if (authenticated() && !nested) {
              if (decoded._tag === "TooDeep") sendError(400, "Message nesting exceeds the maximum depth")
              else sendError(400, "Invalid message format", decoded.error)
            }
            return
          }
          const frame = decoded.value
          if (frame.type === "BATCH" && !nested) {
            if (!authenticated()) return
            const data = (frame as { data?: unknown }).data
            if (!(data instanceof Uint8Array)) {
              sendError(400, "Invalid message format", "BATCH data must be binary")
              return
            }
            const unpacked = unpackInboundBatch(data, config.maxBatchItems)
            if (unpacked._tag === "TooMany") {
              sendError(413, "batch exceeds maximum inner item count")
              return
            }
            if (!bucket.take(unpacked.records.length, now)) {
              metrics.rateLimited(unpacked.records.length)
              sendError(429, "rate limit exceeded, slow down")
              return
            }
            for (const record of unpacked.records) processFrame(record, now, true)
            return
          }
          if (!nested && !bucket.take(costOf(frame), now)) {
            metrics.rateLimited()
            if (authenticated()) sendError(429, "rate limit exceeded, slow down")
            return
          }
          metrics.messageIn(frame.type)
          if (frame.type === "PING") {
            const timestamp = (frame as { timestamp?: unknown }).timestamp
            connection.send({ type: "PONG", timestamp: typeof timestamp === "number" ? timestamp : 0, serverTime: wall() })
            return
          }
          Queue.unsafeOffer(inbound, frame)
        }

        const onMessage = (data: RawData, isBinary: boolean) => {
          if (!open) return
          const now = wall()
          connection.lastInboundAt = now
          const bytes = toBytes(data)
          processFrame(isBinary ? bytes : bytes.toString("utf8"), now, false)
        }

        /** Handles one decoded frame on the inbound fiber. */
        const handle = (frame: InboundFrame): Effect.Effect<void> => {
          if (connection.principal === undefined) {
            if (frame.type !== "AUTH") return Effect.void // before auth: dropped silently (protocol.md §1.8)
            return auth.verify((frame as { token?: unknown }).token).pipe(
              Effect.matchEffect({
                onSuccess: (principal) =>
                  Effect.sync(() => {
                    connection.principal = principal
                    connection.send(principal.userId !== undefined
                      ? { type: "AUTH_ACK", protocolVersion: 1, userId: principal.userId }
                      : { type: "AUTH_ACK", protocolVersion: 1 })
                  }).pipe(Effect.zipRight(Effect.logDebug("authenticated"))),
                onFailure: (e) =>
                  Effect.sync(() => {
                    connection.send({ type: "AUTH_FAIL", error: e.message })
                    connection.close({ code: 4001, reason: "Unauthorized" })
                  }).pipe(Effect.zipRight(Effect.logInfo(`authentication failed: ${e.message}`)))
              })
            )
          }
          if (frame.type === "AUTH") return Effect.void // a repeated AUTH is ignored
          connection.lastActiveHlc = hlc.now()
          const decoded = decodeClientMessage(frame)
          switch (decoded._tag) {
            case "Ok":
              return router.route(connection, decoded.message)
            case "Invalid":
              sendError(400, "Invalid message format", decoded.details)
              return Effect.logDebug(`invalid ${frame.type} message`, decoded.details)
            case "UnknownType":
              sendError(400, `Unknown message type: ${decoded.type}`)
              return Effect.logDebug(`unknown message type ${decoded.type}`)
          }
        }

        const reader = Effect.gen(function* () {
          while (true) {
            const frames = yield* Queue.takeBetween(inbound, 1, 1024)
            for (const frame of frames) {
              yield* handle(frame).pipe(
                Effect.catchAllCause((cause) =>
                  Effect.sync(() => sendError(500, "Internal Error")).pipe(
                    Effect.zipRight(Effect.logError(`handling ${frame.type} failed`, cause))
                  )
                )
              )
            }
          }
        })

        ws.on("message", (data, isBinary) => {
          try {
            onMessage(data, isBinary)
          } catch (error) {
            // Decoding is plain code; a bug there must not kill the process.
            Effect.runFork(Effect.logError("frame handling crashed", error))
          }
        })
        ws.on("close", () => {
          open = false
          Deferred.unsafeDone(closed, Exit.void)
        })
        ws.on("error", () => {
          open = false
          Deferred.unsafeDone(closed, Exit.void)
        })

        connections.register(connection)
        yield* Effect.forkScoped(reader)
        if (auth.noAuth) {
          connection.principal = { roles: ["USER"], claims: {} }
        } else {
          connection.sendEncoded(authRequired)
          yield* Effect.sleep(config.authDeadlineMs).pipe(
            Effect.andThen(() => {
              if (connection.principal === undefined) connection.close({ code: 4001, reason: "Auth timeout" })
            }),
            Effect.forkScoped
          )
        }
        yield* Effect.logDebug("connection opened")
        yield* Deferred.await(closed)
        yield* connections.unregister(connection)
        yield* Effect.logDebug("connection closed")
      }).pipe(
        Effect.scoped,
        Effect.annotateLogs({ remote: remoteAddress })
      )

    // Idle eviction (behavior.md §3.7): one sweep for all connections.
    yield* Effect.sync(() => {
      const now = wall()
      for (const c of connections.all()) {
        if (c.principal !== undefined && now - c.lastInboundAt > config.idleTimeoutMs) {
          c.close({ code: 4002, reason: "Heartbeat timeout" })
        }
      }
    }).pipe(Effect.schedule(Schedule.spaced(config.idleCheckIntervalMs)), Effect.forkScoped)

    return {
      /** Starts the actor of a freshly upgraded socket; it lives until the socket closes. */
      accept: (ws: WebSocket, remoteAddress: string): Effect.Effect<Fiber.RuntimeFiber<void>> =>
        FiberSet.run(sessionFibers, runConnection(ws, remoteAddress))
    } as const
  })
}) {}
