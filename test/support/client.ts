import { Packr, Unpackr } from "msgpackr"
import WebSocket from "ws"
import { signToken } from "./server.js"

const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

export type Message = { readonly type: string; readonly [k: string]: any }

interface Waiter {
  readonly pred: (m: Message) => boolean
  readonly resolve: (m: Message) => void
}

/**
 * A raw protocol client for end-to-end tests: real socket, msgpack frames, and event-driven waits
 * (no sleeps). `received` keeps every inbound message in order.
 */
export class TestClient {
  readonly received: Message[] = []
  private readonly waiters = new Set<Waiter>()
  /** Messages already returned by `next` (each is returned once). */
  private readonly consumed = new Set<Message>()
  closeInfo: { code: number; reason: string } | undefined
  private readonly closedPromise: Promise<{ code: number; reason: string }>

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data, isBinary) => {
      const msg = (isBinary ? unpackr.unpack(data as Buffer) : JSON.parse(String(data))) as Message
      this.received.push(msg)
      for (const w of this.waiters) {
        if (w.pred(msg)) {
          this.waiters.delete(w)
          w.resolve(msg)
        }
      }
    })
    this.closedPromise = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() }
        resolve(this.closeInfo)
      })
    })
  }

  static connect(url: string): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url)
      const client = new TestClient(ws)
      ws.once("open", () => resolve(client))
      ws.once("error", reject)
    })
  }

  /** Connects and authenticates; resolves after AUTH_ACK. */
  static async authed(url: string, claims: Record<string, unknown> = { sub: "user-1" }): Promise<TestClient> {
    const client = await TestClient.connect(url)
    await client.next("AUTH_REQUIRED")
    client.send({ type: "AUTH", token: await signToken(claims) })
    await client.next("AUTH_ACK")
    return client
  }

  send(msg: object): void {
    this.ws.send(packr.pack(msg))
  }

  sendRaw(data: Uint8Array | string, binary = true): void {
    this.ws.send(data, { binary })
  }

  /** The earliest message not yet returned by `next` that matches `type` / `pred` (waits for it if needed). */
  next(type: string, pred: (m: Message) => boolean = () => true, timeoutMs = 5000): Promise<Message> {
    const match = (m: Message) => m.type === type && !this.consumed.has(m) && pred(m)
    for (const m of this.received) {
      if (match(m)) {
        this.consumed.add(m)
        return Promise.resolve(m)
      }
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        reject(new Error(`timed out waiting for ${type}; received: ${this.received.map((m) => m.type).join(",")}`))
      }, timeoutMs)
      const waiter: Waiter = {
        pred: match,
        resolve: (m) => {
          clearTimeout(timer)
          this.consumed.add(m)
          resolve(m)
        }
      }
      this.waiters.add(waiter)
    })
  }

  /**
   * A barrier through the server's ordered inbound queue: an unknown message type is answered with
   * ERROR 400 in order, so every reply to earlier messages has arrived when this resolves.
   * (PING cannot serve: it is answered on receipt, ahead of queued work.)
   */
  async sync(): Promise<void> {
    const nonce = `__SYNC_${Math.floor(Math.random() * 1e12)}__`
    this.send({ type: nonce })
    await this.next("ERROR", (m) => typeof m.payload?.message === "string" && m.payload.message.includes(nonce))
  }

  ofType(type: string): Message[] {
    return this.received.filter((m) => m.type === type)
  }

  closed(): Promise<{ code: number; reason: string }> {
    return this.closedPromise
  }

  close(): void {
    this.ws.close()
  }
}
