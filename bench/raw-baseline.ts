/**
 * Raw baseline server: `ws` + msgpackr and nothing else, run as a child process like Tessera
 * (`node dist/bench/raw-baseline.js --port 0` prints `PORT=<n>`).
 *
 * It speaks just enough of the protocol for the benchmark clients to run unchanged:
 * - AUTH_REQUIRED on connect, AUTH → AUTH_ACK (the token is not verified), PING → PONG;
 * - OP_BATCH → one OP_ACK { lastId, achievedLevel, results } built per op exactly like Tessera's
 *   (so the same decode/encode work is done, with no CRDT, storage or Effect);
 * - QUERY_SUB → empty QUERY_RESP and a subscription on the map; every op written to that map is relayed as
 *   one QUERY_UPDATE, encoded once, to every other subscribed socket (a raw broadcast);
 * - TOPIC_SUB / TOPIC_PUB → TOPIC_MESSAGE, encoded once, to every other subscriber of the topic.
 */
import { Packr, Unpackr } from "msgpackr"
import { WebSocketServer, type WebSocket } from "ws"

const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

interface Connection {
  readonly id: string
  readonly socket: WebSocket
  authenticated: boolean
}

const mapSubscribers = new Map<string, Set<Connection>>()
const topicSubscribers = new Map<string, Set<Connection>>()
let nextConnectionId = 0

const send = (connection: Connection, message: object): void => {
  connection.socket.send(packr.pack(message))
}

const subscribe = (index: Map<string, Set<Connection>>, name: string, connection: Connection): void => {
  let set = index.get(name)
  if (set === undefined) index.set(name, (set = new Set()))
  set.add(connection)
}

/** Sends one pre-encoded frame to every member of `recipients` except `sender`. */
const broadcast = (recipients: Set<Connection> | undefined, sender: Connection, frame: Buffer): void => {
  if (recipients === undefined) return
  for (const r of recipients) if (r !== sender) r.socket.send(frame)
}

const handleOpBatch = (connection: Connection, payload: any): void => {
  const ops: Array<any> = Array.isArray(payload?.ops) ? payload.ops : []
  if (ops.length === 0) return
  const level = payload.writeConcern ?? "MEMORY"
  const results: Array<object> = []
  let lastId = ""
  for (const op of ops) {
    const opLevel = op.writeConcern ?? level
    if (typeof op.id === "string") {
      lastId = op.id
      results.push({ opId: op.id, success: true, achievedLevel: opLevel })
    }
    const subscribers = mapSubscribers.get(op.mapName)
    if (subscribers !== undefined) {
      const update = {
        type: "QUERY_UPDATE",
        payload: { queryId: "*", key: op.key, value: op.record?.value ?? null, changeType: "UPDATE" }
      }
      broadcast(subscribers, connection, packr.pack(update))
    }
  }
  send(connection, { type: "OP_ACK", payload: { lastId, achievedLevel: level, results } })
}

const handle = (connection: Connection, message: any): void => {
  switch (message.type) {
    case "AUTH":
      if (!connection.authenticated) {
        connection.authenticated = true
        send(connection, { type: "AUTH_ACK", protocolVersion: 1, userId: "bench" })
      }
      return
    case "PING":
      send(connection, { type: "PONG", timestamp: message.timestamp, serverTime: Date.now() })
      return
  }
  if (!connection.authenticated) return
  const payload = message.payload
  switch (message.type) {
    case "OP_BATCH":
      handleOpBatch(connection, payload)
      return
    case "QUERY_SUB":
      subscribe(mapSubscribers, payload.mapName, connection)
      send(connection, { type: "QUERY_RESP", payload: { queryId: payload.queryId, results: [] } })
      return
    case "TOPIC_SUB":
      subscribe(topicSubscribers, payload.topic, connection)
      return
    case "TOPIC_PUB": {
      const frame = packr.pack({
        type: "TOPIC_MESSAGE",
        payload: { topic: payload.topic, data: payload.data, publisherId: connection.id, timestamp: Date.now() }
      })
      broadcast(topicSubscribers.get(payload.topic), connection, frame)
      return
    }
  }
}

const portArg = process.argv.indexOf("--port")
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 0
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })

server.on("connection", (socket) => {
  const connection: Connection = { id: `c${nextConnectionId++}`, socket, authenticated: false }
  socket.on("message", (data: Buffer) => {
    let message: any
    try {
      message = unpackr.unpack(data)
    } catch {
      return
    }
    if (message !== null && typeof message === "object" && typeof message.type === "string") {
      handle(connection, message)
    }
  })
  socket.on("close", () => {
    for (const set of mapSubscribers.values()) set.delete(connection)
    for (const set of topicSubscribers.values()) set.delete(connection)
  })
  send(connection, { type: "AUTH_REQUIRED" })
})

server.on("listening", () => {
  const address = server.address()
  if (typeof address === "object" && address !== null) process.stdout.write(`PORT=${address.port}\n`)
})

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    for (const client of server.clients) client.terminate()
    server.close(() => process.exit(0))
  })
}
