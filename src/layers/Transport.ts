import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Deferred, Effect, Exit, Runtime } from "effect"
import { type WebSocket, WebSocketServer } from "ws"
import { Connections } from "./Connections.js"
import { ServerConfig } from "./ServerConfig.js"
import { MetricsRegistry } from "./Metrics.js"
import { ServerInfo } from "./Partitions.js"
import { Sessions } from "./Sessions.js"

export class ListenFailed extends Error {
  readonly _tag = "ListenFailed"
}

/** Readiness checks contributed by other layers (storage, cluster). All must pass for `/health/ready`. */
export type ReadinessCheck = () => { readonly ready: boolean; readonly reason?: string }

export interface HttpRoute {
  readonly method: string
  readonly path: string
  readonly handle: (req: http.IncomingMessage, res: http.ServerResponse) => void
}

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

/**
 * One HTTP server on the client port (behavior.md §3.1): WebSocket upgrades on `/ws` and `/`,
 * health endpoints, and routes other layers register (metrics, `/sync`). Node callbacks only hand
 * sockets to `Sessions`; everything else runs in Effect.
 */
export class Transport extends Effect.Service<Transport>()("tessera/Transport", {
  scoped: Effect.gen(function* () {
    const config = yield* ServerConfig
    const sessions = yield* Sessions
    const connections = yield* Connections
    const info = yield* ServerInfo
    const metrics = yield* MetricsRegistry
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const readinessChecks: ReadinessCheck[] = []
    const routes: HttpRoute[] = []
    let accepting = true

    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: config.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: true
    })

    const readiness = () => {
      if (!accepting) return { ready: false, reason: "shutting down" }
      for (const check of readinessChecks) {
        const r = check()
        if (!r.ready) return r
      }
      return { ready: true }
    }

    const server = http.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, (req, res) => {
      const path = (req.url ?? "/").split("?")[0]
      const route = routes.find((r) => r.path === path && r.method === req.method)
      if (route !== undefined) return route.handle(req, res)
      if (req.method === "GET" && (path === "/health" || path === "/health/live")) return json(res, 200, { status: "ok" })
      if (req.method === "GET" && (path === "/health/ready" || path === "/healthz")) {
        const r = readiness()
        return r.ready ? json(res, 200, { ready: true }) : json(res, 503, { ready: false, reason: r.reason })
      }
      if (req.method === "GET" && path === "/") {
        res.writeHead(200, { "content-type": "text/plain" })
        return res.end("TopGun Server Running")
      }
      json(res, 404, { error: "Not found" })
    })
    server.requestTimeout = 120_000
    server.headersTimeout = 60_000
    server.keepAliveTimeout = 5_000
    server.maxConnections = config.maxConnections + 100

    /** A refused socket gets `closeGraceMs` to finish the close handshake, then is cut off. */
    const refusedSocketCleanup = (ws: WebSocket, refusal: string, remote: string) =>
      Effect.logDebug(`connection refused (1013, ${refusal === "rate" ? "connection rate" : "pending connections"} limit)`).pipe(
        Effect.zipRight(Effect.sleep(config.closeGraceMs)),
        Effect.andThen(() => {
          if (ws.readyState !== ws.CLOSED) ws.terminate()
        }),
        Effect.annotateLogs({ remote })
      )

    server.on("upgrade", (req, socket, head) => {
      const path = (req.url ?? "/").split("?")[0]
      if (path !== "/" && path !== "/ws") {
        socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n")
        return
      }
      if (!accepting || connections.count() >= config.maxConnections) {
        metrics.connectionRejected()
        socket.end("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n")
        return
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const remote = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`
        // Connection rate / pending cap (behavior.md §3.2 step 1): the refusal is a WebSocket close code.
        const refusal = sessions.admitConnection()
        if (refusal !== undefined) {
          metrics.connectionRejected()
          ws.close(1013, "Server overloaded")
          runFork(refusedSocketCleanup(ws, refusal, remote))
          return
        }
        metrics.connectionAccepted()
        runFork(sessions.accept(ws, remote))
      })
    })
    server.on("clientError", (_err, socket) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\n\r\n")
    })

    const listening = yield* Deferred.make<AddressInfo, ListenFailed>()
    server.once("error", (err) => Deferred.unsafeDone(listening, Exit.fail(new ListenFailed(`cannot listen on ${config.host}:${config.port}: ${err.message}`))))
    server.listen({ port: config.port, host: config.host, backlog: 511, ipv6Only: false }, () =>
      Deferred.unsafeDone(listening, Exit.succeed(server.address() as AddressInfo))
    )
    const address = yield* Deferred.await(listening)
    info.setPort(address.port)

    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        for (const ws of wss.clients) ws.terminate()
        wss.close()
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    yield* Effect.logInfo(`listening on ${address.address}:${address.port}`)

    return {
      port: address.port,
      address: address.address,
      addReadinessCheck: (check: ReadinessCheck) => readinessChecks.push(check),
      addRoute: (route: HttpRoute) => routes.push(route),
      /** Stop accepting new connections (graceful shutdown). */
      stopAccepting: Effect.sync(() => {
        accepting = false
      }),
      readiness
    } as const
  })
}) {}
