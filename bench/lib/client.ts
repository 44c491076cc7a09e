/**
 * Minimal protocol client for the benchmarks: one WebSocket, msgpack frames encoded the way the TopGun
 * client encodes them (protocol.md §1.3), AUTH_REQUIRED → AUTH → AUTH_ACK (§1.8), dispatch by `type`,
 * application-level PINGs so idle subscribers are not evicted (§1.7).
 */
import { SignJWT } from "jose"
import { Packr, Unpackr } from "msgpackr"
import WebSocket from "ws"

export const packr = new Packr({ useRecords: false })
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

/** The development default secret (protocol.md §2.2). */
export const DEV_JWT_SECRET = "topgun-secret-dev"

/** HS256 token `{ sub, roles: ["USER"] }`, as the TopGun examples issue them. */
export const signToken = (sub: string, secret: string = DEV_JWT_SECRET): Promise<string> =>
  new SignJWT({ roles: ["USER"] })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime("2h")
    .sign(new TextEncoder().encode(secret))

/** A decoded inbound message. `payload` is typed loosely on purpose: benchmarks read a few known fields. */
export interface Inbound {
  readonly type: string
  readonly payload?: any
  readonly [key: string]: unknown
}

export type Handler = (message: Inbound) => void

export interface ClientOptions {
  readonly url: string
  /** Token for AUTH; when absent the client is ready as soon as the socket opens (no-auth servers). */
  readonly token?: string
  readonly authTimeoutMs?: number
  /** Send `PING` this often after AUTH_ACK; 0 disables. */
  readonly heartbeatMs?: number
}

export interface ServerError {
  readonly code: number
  readonly message: string
}

/** Raised when a connection attempt fails; `closeCode` tells a retryable refusal (1013) apart. */
export class ConnectError extends Error {
  constructor(
    message: string,
    readonly closeCode?: number
  ) {
    super(message)
  }
}

// One shared heartbeat timer instead of one per connection (subscriber pools reach 1000 sockets).
const heartbeatClients = new Set<BenchClient>()
let heartbeatTimer: NodeJS.Timeout | undefined
const startHeartbeat = (client: BenchClient, intervalMs: number): void => {
  heartbeatClients.add(client)
  if (heartbeatTimer !== undefined) return
  heartbeatTimer = setInterval(() => {
    const now = Date.now()
    for (const c of heartbeatClients) c.send({ type: "PING", timestamp: now })
  }, intervalMs)
  heartbeatTimer.unref()
}
const stopHeartbeat = (client: BenchClient): void => {
  heartbeatClients.delete(client)
  if (heartbeatClients.size === 0 && heartbeatTimer !== undefined) {
    clearInterval(heartbeatTimer)
    heartbeatTimer = undefined
  }
}

export class BenchClient {
  private readonly handlers = new Map<string, Handler>()
  /** ERROR messages received, most recent last (bounded). */
  readonly errors: Array<ServerError> = []
  private errorListener: ((error: ServerError) => void) | undefined
  closeCode: number | undefined
  /** Application frame bytes received / sent (WebSocket payloads, without the WebSocket frame header). */
  bytesIn = 0
  bytesOut = 0

  private constructor(private readonly ws: WebSocket) {}

  /** Opens, authenticates and resolves once the connection may send authenticated traffic. */
  static connect(options: ClientOptions): Promise<BenchClient> {
    const ws = new WebSocket(options.url, { perMessageDeflate: false })
    const client = new BenchClient(ws)
    const authTimeoutMs = options.authTimeoutMs ?? 10_000
    return new Promise<BenchClient>((resolve, reject) => {
      let settled = false
      const settle = (error: Error | undefined) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (error === undefined) {
          if ((options.heartbeatMs ?? 5000) > 0) startHeartbeat(client, options.heartbeatMs ?? 5000)
          resolve(client)
        } else {
          ws.terminate()
          reject(error)
        }
      }
      const timer = setTimeout(() => settle(new ConnectError(`no AUTH_ACK within ${authTimeoutMs} ms`)), authTimeoutMs)
      ws.on("open", () => {
        if (options.token === undefined) settle(undefined)
      })
      ws.on("message", (data: Buffer, isBinary: boolean) => client.dispatch(data, isBinary))
      ws.on("error", (error) => settle(new ConnectError(error.message)))
      ws.on("close", (code, reason) => {
        client.closeCode = code
        stopHeartbeat(client)
        settle(new ConnectError(`closed ${code} ${reason.toString()}`, code))
      })
      client.handlers.set("AUTH_REQUIRED", () => {
        if (options.token !== undefined) client.send({ type: "AUTH", token: options.token, protocolVersion: 1 })
      })
      client.handlers.set("AUTH_ACK", () => settle(undefined))
      client.handlers.set("AUTH_FAIL", (m) => settle(new ConnectError(`AUTH_FAIL ${String(m["error"])}`)))
    })
  }

  /** Registers the handler of one message type (replacing any previous one). */
  on(type: string, handler: Handler): void {
    this.handlers.set(type, handler)
  }

  off(type: string): void {
    this.handlers.delete(type)
  }

  /** Called for every ERROR frame (after it is recorded in `errors`). */
  onError(listener: ((error: ServerError) => void) | undefined): void {
    this.errorListener = listener
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN
  }

  send(message: object): void {
    if (this.ws.readyState !== WebSocket.OPEN) return
    const frame = packr.pack(message)
    this.bytesOut += frame.length
    this.ws.send(frame)
  }

  /** Bytes already encoded (lets a sender encode once and reuse). */
  sendEncoded(frame: Buffer | Uint8Array): void {
    if (this.ws.readyState !== WebSocket.OPEN) return
    this.bytesOut += frame.length
    this.ws.send(frame)
  }

  close(): void {
    stopHeartbeat(this)
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate()
  }

  private dispatch(data: Buffer, isBinary: boolean): void {
    this.bytesIn += data.length
    let message: Inbound
    try {
      message = isBinary ? unpackr.unpack(data) : JSON.parse(data.toString("utf8"))
    } catch {
      return
    }
    if (message === null || typeof message !== "object" || typeof message.type !== "string") return
    if (message.type === "ERROR") {
      const error: ServerError = {
        code: Number(message.payload?.code ?? 0),
        message: String(message.payload?.message ?? "")
      }
      if (this.errors.length >= 100) this.errors.shift()
      this.errors.push(error)
      this.errorListener?.(error)
    }
    this.handlers.get(message.type)?.(message)
  }
}

export interface ConnectManyOptions {
  /** New connections started per second (Tessera admits 100/s by default, behavior.md §3.4). */
  readonly ratePerSecond: number
  /** Attempts per connection when the server refuses with 1013 or times out. */
  readonly attempts?: number
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const connectWithRetry = async (options: ClientOptions, attempts: number): Promise<BenchClient> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await BenchClient.connect(options)
    } catch (error) {
      if (attempt >= attempts) throw error
      await sleep(1000)
    }
  }
}

/** Opens `count` authenticated connections, paced; on a final failure closes the ones already open. */
export const connectMany = async (
  count: number,
  options: ClientOptions,
  pacing: ConnectManyOptions
): Promise<Array<BenchClient>> => {
  const intervalMs = 1000 / pacing.ratePerSecond
  const started = performance.now()
  const pending: Array<Promise<BenchClient>> = []
  for (let i = 0; i < count; i++) {
    const due = started + i * intervalMs
    const wait = due - performance.now()
    if (wait > 1) await sleep(wait)
    pending.push(connectWithRetry(options, pacing.attempts ?? 3))
  }
  const settled = await Promise.allSettled(pending)
  const clients = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []))
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === "rejected")
  if (failure !== undefined) {
    for (const c of clients) c.close()
    throw failure.reason
  }
  return clients
}

export const closeAll = (clients: ReadonlyArray<BenchClient>): void => {
  for (const c of clients) c.close()
}
