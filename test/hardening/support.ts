import { Effect } from "effect"
import { Maps } from "../../src/layers/Maps.js"
import type { Message, TestClient } from "../support/client.js"
import type { RunningServer } from "../support/server.js"

export const ts = (millis: number, counter = 0, nodeId = "client-h") => ({ millis, counter, nodeId })

/** A CLIENT_OP payload (LWW PUT). */
export const putOp = (id: string | undefined, mapName: string, key: string, value: unknown, millis = Date.now(), counter = 0) => ({
  ...(id !== undefined ? { id } : {}),
  mapName,
  key,
  opType: "PUT",
  record: { value, timestamp: ts(millis, counter) }
})

/** Resolves once `pred` holds over everything the client received so far (re-checked on every message). */
export const waitUntil = (client: TestClient, pred: (received: ReadonlyArray<Message>) => boolean, what = "condition", timeoutMs = 10_000): Promise<void> =>
  new Promise((resolve, reject) => {
    if (pred(client.received)) return resolve()
    const onMessage = () => {
      // The client's own listener ran first (registered earlier), so `received` includes this message.
      if (!pred(client.received)) return
      cleanup()
      resolve()
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`timed out waiting for ${what}; received: ${client.received.map((m) => m.type).join(",")}`))
    }, timeoutMs)
    const cleanup = () => {
      clearTimeout(timer)
      client.ws.off("message", onMessage)
    }
    client.ws.on("message", onMessage)
  })

/** The stored LWW value of a key (undefined when absent), read from the server's own map store. */
export const storedValue = (server: RunningServer, mapName: string, key: string): Promise<unknown> =>
  server.run(Effect.gen(function* () {
    const maps = yield* Maps
    const state = yield* maps.get(mapName)
    return state.lww.get(key)?.record.value
  }))

/** Writes one value and waits for its OP_ACK. */
export const write = async (c: TestClient, id: string, mapName: string, key: string, value: unknown, millis = Date.now()) => {
  c.send({ type: "CLIENT_OP", payload: putOp(id, mapName, key, value, millis) })
  const ack = await c.next("OP_ACK", (m) => m.payload.lastId === id)
  if (ack.payload.results[0]?.success !== true) throw new Error(`write ${id} failed: ${JSON.stringify(ack.payload)}`)
  return ack
}
