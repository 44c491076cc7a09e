/**
 * Bulk loading through the protocol: OP_BATCHes of LWW PUTs spread over a few connections, one batch in
 * flight per connection (so an `ERROR 429` — rate limit or overload, which carries no batch id — can only
 * mean that connection's pending batch, which is then resent). Not measured by the scenarios; it only
 * has to be fast and to fail loudly instead of hanging.
 */
import type { LWWRecord, WriteConcern } from "../../src/crdt/types.js"
import type { BenchClient } from "./client.js"

export interface LoadOptions {
  readonly mapName: string
  readonly count: number
  readonly key: (i: number) => string
  readonly record: (i: number) => LWWRecord
  /** Ops per OP_BATCH (1000). */
  readonly batch?: number
  /** APPLIED (the default) makes the data visible to reads once the load resolves. */
  readonly concern?: WriteConcern
  /** Give up when no ack arrived for this long (15 000 ms). */
  readonly stallTimeoutMs?: number
}

export interface LoadResult {
  readonly ms: number
  readonly opsPerSecond: number
  /** Batches resent after an ERROR 429. */
  readonly resent: number
}

/** Loads records 0..count-1; rejects on refused ops, a closed connection or a stall. */
export const loadRecords = (clients: ReadonlyArray<BenchClient>, options: LoadOptions): Promise<LoadResult> => {
  const batchSize = options.batch ?? 1000
  const concern = options.concern ?? "APPLIED"
  const stallMs = options.stallTimeoutMs ?? 15_000
  const started = performance.now()
  let next = 0
  let done = 0
  let resent = 0
  let opSeq = 0
  return new Promise<LoadResult>((resolve, reject) => {
    let finished = false
    let lastProgress = performance.now()
    const finish = (error: Error | undefined) => {
      if (finished) return
      finished = true
      clearInterval(watchdog)
      for (const c of clients) {
        c.off("OP_ACK")
        c.off("OP_REJECTED")
        c.onError(undefined)
      }
      if (error !== undefined) reject(error)
      else {
        const ms = performance.now() - started
        resolve({ ms, opsPerSecond: (options.count / ms) * 1000, resent })
      }
    }
    const watchdog = setInterval(() => {
      if (clients.some((c) => !c.isOpen)) finish(new Error(`load of ${options.mapName}: a connection closed (code ${clients.find((c) => !c.isOpen)?.closeCode})`))
      else if (performance.now() - lastProgress > stallMs) finish(new Error(`load of ${options.mapName}: no OP_ACK for ${stallMs} ms (${done}/${options.count} loaded)`))
    }, 250)

    for (const client of clients) {
      let pending: { lastId: string; frame: object; size: number } | undefined
      const sendNext = () => {
        if (next >= options.count) {
          pending = undefined
          if (done >= options.count) finish(undefined)
          return
        }
        const from = next
        const to = Math.min(options.count, from + batchSize)
        next = to
        const ops = new Array<object>(to - from)
        let lastId = ""
        for (let i = from; i < to; i++) {
          lastId = String(++opSeq)
          ops[i - from] = { id: lastId, mapName: options.mapName, key: options.key(i), opType: "PUT", record: options.record(i) }
        }
        pending = { lastId, frame: { type: "OP_BATCH", payload: { ops, writeConcern: concern } }, size: to - from }
        client.send(pending.frame)
      }
      client.on("OP_ACK", (message) => {
        if (pending === undefined || message.payload?.lastId !== pending.lastId) return
        const results: Array<{ success?: boolean; error?: string }> = Array.isArray(message.payload.results) ? message.payload.results : []
        const failed = results.find((r) => r.success === false)
        if (failed !== undefined) return finish(new Error(`load of ${options.mapName}: op failed: ${failed.error ?? "unknown"}`))
        done += pending.size
        lastProgress = performance.now()
        sendNext()
      })
      client.on("OP_REJECTED", (message) =>
        finish(new Error(`load of ${options.mapName}: OP_REJECTED ${message.payload?.code} ${message.payload?.reason}`)))
      client.onError((error) => {
        if (error.code !== 429 || pending === undefined) return finish(new Error(`load of ${options.mapName}: ERROR ${error.code} ${error.message}`))
        resent++
        const frame = pending.frame
        setTimeout(() => client.send(frame), 100)
      })
      sendNext()
    }
  })
}
