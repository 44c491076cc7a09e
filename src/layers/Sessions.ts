import { randomUUID } from "node:crypto"
import { performance } from "node:perf_hooks"
import { Deferred, Effect, Exit, Fiber, FiberSet, Option, Queue, Runtime, Schedule } from "effect"
import type { RawData, WebSocket } from "ws"
import { unpackInboundBatch } from "../protocol/batch.js"
import { decodeFrame, encodeMessage } from "../protocol/codec.js"
import { decodeClientMessage } from "../protocol/decode.js"
import { type ConnectionRefusal, ConnectionAdmission, DecodeBudget, InFlightLimiter, LogThrottle } from "./Admission.js"
import { Auth } from "./Auth.js"
import { type CloseRequest, type Connection, Connections } from "./Connections.js"
import { Hlc } from "./Hlc.js"
import { Hooks, type ServerHooks } from "./Hooks.js"
import { MetricsRegistry } from "./Metrics.js"
import { Router, type WriteMessage } from "./Router.js"
import { ServerConfig } from "./ServerConfig.js"
import { TurnFlush } from "./turn-flush.js"

type InboundFrame = { readonly type: string; readonly [key: string]: unknown }

/** A close the server initiated (observability and tests). */
export type ServerCloseListener = (connection: Connection, request: CloseRequest) => void

/** Write messages that count against the server-wide in-flight limit (behavior.md §3.9). */
const isWriteBatch = (type: string): boolean => type === "OP_BATCH" || type === "CLIENT_OP"

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
    const badInputLog = new LogThrottle(5, 10_000)
    const hooks = Option.getOrElse(yield* Effect.serviceOption(Hooks), () => ({}) as ServerHooks)
    if (hooks.onDisconnect !== undefined) {
      const onDisconnect = hooks.onDisconnect
      // Runs first on close (behavior.md §3.2), before subscriptions and locks are dropped.
      connections.onDisconnect(0, (c) => Effect.catchAllCause(onDisconnect(c), (cause) => Effect.logWarning("onDisconnect hook failed", cause)))
    }
    const sessionFibers = yield* FiberSet.make()
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const connectionAdmission = new ConnectionAdmission(config.connectionRateLimit, config.connectionRateWindowMs, config.maxPendingConnections)
    const inFlight = new InFlightLimiter(Math.max(1, config.maxInFlightBatches))
    const closeListeners = new Set<ServerCloseListener>()
    const turnFlush = new TurnFlush((error) => runFork(Effect.logError("socket flush failed", error)))

    const authRequired = encodeMessage({ type: "AUTH_REQUIRED" })

    const runConnection = (ws: WebSocket, remoteAddress: string) =>
      Effect.gen(function* () {
        const inbound = yield* Queue.unbounded<InboundFrame>()
        const closed = yield* Deferred.make<void>()
        const opened = wall()
        const bucket = new TokenBucket(config.rateLimitPerSecond, config.rateLimitBurst, opened)
        const closeRequested = yield* Deferred.make<void>()
        const decodeBudget = new DecodeBudget(config.decodeBudgetMs, config.decodeStrikeLimit, config.decodeStrikeWindowMs)
        let open = true
        let closing = false
        /** Still counted as pending by the connection admission (upgraded, not authenticated). */
        let pending = true
        /** In-flight permits held by this connection's queued or running write batches. */
        let permitsHeld = 0
        /** Write frames that found no in-flight capacity on arrival; they wait when their turn comes. */
        let awaitingPermit: WeakSet<object> | undefined
        /** Frames queued for the inbound fiber and not yet handled; the write fast path needs 0. */
        let backlog = 0

        const settlePending = () => {
          if (!pending) return
          pending = false
          connectionAdmission.settle()
        }

        const hardClose = (request: CloseRequest) => {
          if (!open) return
          open = false
          closing = true
          try {
            ws.close(request.code, request.reason)
          } catch {
            ws.terminate()
          }
          Deferred.unsafeDone(closeRequested, Exit.void)
          for (const listener of closeListeners) listener(connection, request)
        }

        /*
         * Outbound FIFO. Frames are written to the socket synchronously, in call order, so per-connection
         * order holds by construction (the socket's own buffer is the queue) and no fiber hop is paid per
         * message. The socket is corked until the end of the event-loop turn (turn-flush.ts), so a burst of
         * frames (fan-out, many acks) leaves in one write, and a turn's answers to many connections leave
         * together. The backlog is what the socket has not flushed yet (`bufferedAmount`, corked
         * frames included); its frame count is estimated from the connection's average frame size. Above
         * either limit the connection is closed as a slow consumer.
         */
        const rawSocket = (ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket
        let corked = false
        let framesSent = 0
        let bytesSent = 0
        const uncork = () => {
          corked = false
          rawSocket?.uncork()
        }
        const sendEncoded = (frame: Uint8Array): void => {
          if (!open || closing) return
          framesSent++
          bytesSent += frame.byteLength
          const backlog = ws.bufferedAmount + frame.byteLength
          const backlogFrames = backlog / (bytesSent / framesSent)
          if (backlogFrames > config.outboundMaxMessages || backlog > config.outboundMaxBytes) {
            hardClose({ code: 4003, reason: "Slow consumer" })
            runFork(Effect.logWarning(`slow consumer closed (4003): ~${Math.round(backlogFrames)} frames / ${backlog} bytes unsent`).pipe(Effect.annotateLogs({ remote: remoteAddress })))
            return
          }
          if (!corked && rawSocket !== undefined) {
            corked = true
            rawSocket.cork()
            turnFlush.add(uncork)
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
            badInput(decoded._tag === "TooDeep" ? "frame too deep" : "undecodable frame", decoded._tag === "Malformed" ? decoded.error : undefined)
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
          if (isWriteBatch(frame.type)) {
            // Counted from arrival (received but not yet applied); without capacity it waits its turn.
            if (inFlight.tryAcquire()) permitsHeld++
            else (awaitingPermit ??= new WeakSet()).add(frame)
          }
          if (frame.type === "PING") {
            const timestamp = (frame as { timestamp?: unknown }).timestamp
            connection.send({ type: "PONG", timestamp: typeof timestamp === "number" ? timestamp : 0, serverTime: wall() })
            return
          }
          if (backlog === 0 && isWriteBatch(frame.type) && authenticated() && awaitingPermit?.has(frame) !== true && writeNow(frame)) {
            releasePermit()
            return
          }
          backlog++
          Queue.unsafeOffer(inbound, frame)
        }

        /**
         * The write fast path: with nothing queued ahead of it, a write whose maps are loaded is applied
         * and acknowledged right here, in the socket callback (Router.writeNow), saving the fiber hop.
         * False: the frame takes the queue like any other.
         */
        const writeNow = (frame: InboundFrame): boolean => {
          const decoded = decodeClientMessage(frame)
          if (decoded._tag !== "Ok") return false // the inbound fiber reports it
          connection.lastActiveHlc = hlc.now()
          try {
            return router.writeNow(connection, decoded.message as WriteMessage)
          } catch (error) {
            sendError(500, "Internal Error")
            runFork(Effect.logError(`handling ${frame.type} failed`, error))
            return true
          }
        }

        const onMessage = (data: RawData, isBinary: boolean) => {
          if (!open) return
          const now = wall()
          connection.lastInboundAt = now
          const bytes = toBytes(data)
          // Decoding cannot be interrupted: measure it, and close a peer whose frames keep overrunning.
          const started = performance.now()
          processFrame(isBinary ? bytes : bytes.toString("utf8"), now, false)
          const elapsed = performance.now() - started
          if (elapsed > config.decodeBudgetMs && decodeBudget.record(elapsed, now)) {
            hardClose({ code: 1008, reason: "Policy violation" })
            runFork(Effect.logWarning(`closed (1008): frames repeatedly exceeded the ${config.decodeBudgetMs} ms decode budget (last ${elapsed.toFixed(1)} ms, ${bytes.byteLength} bytes)`).pipe(Effect.annotateLogs({ remote: remoteAddress })))
          }
        }

        /** A warning for bad input, rate-limited per client address and kind (5 per 10 s). */
        const clientIp = remoteAddress.slice(0, Math.max(0, remoteAddress.lastIndexOf(":")))
        const badInput = (kind: string, detail: unknown): void => {
          const suppressed = badInputLog.allow(`${clientIp}\u0000${kind}`, wall())
          if (suppressed === undefined) return
          const note = suppressed > 0 ? ` (${suppressed} similar suppressed)` : ""
          runFork(Effect.logWarning(`bad input: ${kind}${note}`, detail).pipe(Effect.annotateLogs({ remote: remoteAddress, connection: connection.id })))
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
                    settlePending()
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
              badInput(`invalid ${frame.type} message`, decoded.details)
              return Effect.void
            case "UnknownType":
              sendError(400, `Unknown message type: ${decoded.type}`)
              badInput("unknown message type", decoded.type.slice(0, 100))
              return Effect.void
          }
        }

        const releasePermit = () => {
          permitsHeld--
          inFlight.release()
        }

        const handleSafely = (frame: InboundFrame) =>
          handle(frame).pipe(
            Effect.catchAllCause((cause) =>
              Effect.sync(() => sendError(500, "Internal Error")).pipe(
                Effect.zipRight(Effect.logError(`handling ${frame.type} failed`, cause))
              )
            )
          )

        /** A write batch that found no capacity on arrival waits (bounded), else is refused whole: no OP_ACK. */
        const handleAwaitingPermit = (frame: InboundFrame) =>
          inFlight.acquire(config.batchAdmissionWaitMs).pipe(
            Effect.flatMap((granted) => {
              if (!granted) {
                sendError(429, "server overloaded, try again later")
                return Effect.logWarning(`${frame.type} refused: ${inFlight.limit} write batches in flight`)
              }
              permitsHeld++
              return Effect.zipRight(handleSafely(frame), Effect.sync(releasePermit))
            })
          )

        const reader = Effect.gen(function* () {
          while (true) {
            const frames = yield* Queue.takeBetween(inbound, 1, 1024)
            for (const frame of frames) {
              if (!isWriteBatch(frame.type)) {
                yield* handleSafely(frame)
              } else if (awaitingPermit?.has(frame) === true) {
                yield* handleAwaitingPermit(frame)
              } else {
                yield* handleSafely(frame)
                releasePermit()
              }
              backlog--
            }
          }
        })

        ws.on("message", (data, isBinary) => {
          try {
            onMessage(data, isBinary)
          } catch (error) {
            // Decoding is plain code; a bug there must not kill the process.
            runFork(Effect.logError("frame handling crashed", error).pipe(Effect.annotateLogs({ remote: remoteAddress })))
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
        // Permits of batches still queued when the connection goes away return to the pool.
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            while (permitsHeld > 0) releasePermit()
            settlePending()
          })
        )
        yield* Effect.forkScoped(reader)
        if (hooks.onConnection !== undefined) {
          const admitted = yield* Effect.either(hooks.onConnection(connection))
          if (admitted._tag === "Left") {
            connection.close({ code: 4000, reason: "Connection Rejected" })
            yield* Effect.logInfo(`connection refused by onConnection hook: ${admitted.left.message}`)
          }
        }
        // A peer that never completes the close handshake (e.g. a slow consumer) is cut off.
        yield* Deferred.await(closeRequested).pipe(
          Effect.zipRight(Effect.sleep(config.closeGraceMs)),
          Effect.andThen(() => ws.terminate()),
          Effect.forkScoped
        )
        if (auth.noAuth) {
          connection.principal = { roles: ["USER"], claims: {} }
          settlePending()
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
      /**
       * New-connection admission (behavior.md §3.4), decided synchronously on upgrade. An admitted
       * connection counts as pending until it authenticates or closes; it must then be `accept`ed.
       */
      admitConnection: (): ConnectionRefusal | undefined => connectionAdmission.admit(wall()),
      /** Connections upgraded but not yet authenticated. */
      pendingConnections: (): number => connectionAdmission.pending,
      /** The server-wide in-flight write limiter (behavior.md §3.9); HTTP sync may share it. */
      inFlight,
      /** Observes every server-initiated close (code and reason); returns the unsubscribe function. */
      onServerClose: (listener: ServerCloseListener): (() => void) => {
        closeListeners.add(listener)
        return () => closeListeners.delete(listener)
      },
      /** Starts the actor of a freshly upgraded socket; it lives until the socket closes. */
      accept: (ws: WebSocket, remoteAddress: string): Effect.Effect<Fiber.RuntimeFiber<void>> =>
        FiberSet.run(sessionFibers, runConnection(ws, remoteAddress))
    } as const
  })
}) {}
