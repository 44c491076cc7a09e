/**
 * Fan-out: one writer, N subscribers. Two variants share one server and one connection pool per target:
 * - query: every subscriber holds a QUERY_SUB on map "fan" matching everything; the writer sends single-op
 *   OP_BATCHes; each write must reach every subscriber as a QUERY_UPDATE;
 * - topic: every subscriber holds a TOPIC_SUB; the writer sends TOPIC_PUB; each reaches them as TOPIC_MESSAGE.
 * The send time (performance.now() of this process) travels inside the record value / topic data, so the
 * write → event latency is measured per delivery. The writer keeps a bounded number of writes not yet
 * delivered to every subscriber (closed loop), so both servers run at their own saturation point without
 * unbounded queues. Subscriber counts run in ascending order; subscriptions accumulate between steps.
 */
import { randomUUID } from "node:crypto"
import { closeAll, connectMany, type BenchClient, type Inbound } from "./lib/client.js"
import { describeError, errorCounts, errorReason, unavailable, waitUntil, type Outcome } from "./lib/scenario.js"
import type { Target } from "./lib/server-process.js"
import { Samples, type LatencySummary } from "./lib/stats.js"

export type FanoutVariant = "query" | "topic"

export interface FanoutOptions {
  readonly queryCounts: ReadonlyArray<number>
  readonly topicCounts: ReadonlyArray<number>
  readonly token: string
  /** Deliveries aimed for per step; writes per step = this / N, clamped to [minWrites, maxWrites]. */
  readonly eventsPerStep: number
  readonly minWrites: number
  readonly maxWrites: number
  /** Writes allowed in flight ≈ this / N (clamped to [1, 256]): bounds queued events per step. */
  readonly inFlightEvents: number
  /** A step gives up after this long and reports the writes not fully delivered. */
  readonly stepTimeoutSeconds: number
}

export interface FanoutResult {
  readonly writes: number
  readonly eventsPerSecond: number
  readonly latency: LatencySummary
  /** Writes that did not reach every subscriber before the step timeout. */
  readonly incomplete: number
  readonly errors: string
}

export interface FanoutRow {
  readonly variant: FanoutVariant
  readonly subscribers: number
  readonly outcome: Outcome<FanoutResult>
}

const MAP_NAME = "fan"
const TOPIC = "bench-fan"
const TITLE = "Live dashboard tile update"
/** The writer cycles through this many keys, so the map stays small and updates are UPDATEs. */
const KEY_SPACE = 100

interface EventValue {
  readonly run: number
  readonly n: number
  readonly sentAt: number
}

/** Sends writes of one variant and extracts the embedded value from what subscribers receive. */
interface Channel {
  readonly inboundType: string
  readonly extract: (message: Inbound) => unknown
  readonly write: (value: EventValue & { readonly title: string }) => void
}

const queryChannel = (writer: BenchClient): Channel => {
  const nodeId = randomUUID()
  let seq = 0
  return {
    inboundType: "QUERY_UPDATE",
    extract: (message) => message.payload?.value,
    write: (value) => {
      const i = ++seq
      writer.send({
        type: "OP_BATCH",
        payload: {
          ops: [
            {
              id: String(i),
              mapName: MAP_NAME,
              key: `f${value.n % KEY_SPACE}`,
              opType: "PUT",
              record: { value, timestamp: { millis: Date.now(), counter: i, nodeId } }
            }
          ]
        }
      })
    }
  }
}

const topicChannel = (writer: BenchClient): Channel => ({
  inboundType: "TOPIC_MESSAGE",
  extract: (message) => message.payload?.data,
  write: (value) => writer.send({ type: "TOPIC_PUB", payload: { topic: TOPIC, data: value } })
})

let runCounter = 0

/** One measured step: `subscribers` all receive every write of `channel`. */
const runStep = async (
  channel: Channel,
  subscribers: ReadonlyArray<BenchClient>,
  writer: BenchClient,
  options: FanoutOptions
): Promise<FanoutResult> => {
  const n = subscribers.length
  const total = Math.min(options.maxWrites, Math.max(options.minWrites, Math.ceil(options.eventsPerStep / n)))
  const warmup = Math.max(10, Math.floor(total / 10))
  const window = Math.min(256, Math.max(1, Math.ceil(options.inFlightEvents / n)))
  const run = ++runCounter
  const delivered = new Int32Array(total)
  const sentAtOf = new Float64Array(total)
  const samples = new Samples()
  let sent = 0
  let completed = 0
  let measuredEvents = 0
  let lastDeliveryAt = 0

  const pump = () => {
    while (sent - completed < window && sent < total) {
      const i = sent++
      const sentAt = performance.now()
      sentAtOf[i] = sentAt
      channel.write({ title: TITLE, run, n: i, sentAt })
    }
  }
  const onEvent = (message: Inbound) => {
    const value = channel.extract(message) as EventValue | null | undefined
    if (value === null || typeof value !== "object" || value.run !== run) return
    const now = performance.now()
    const i = value.n
    if (i >= warmup) {
      samples.add(now - value.sentAt)
      measuredEvents++
      lastDeliveryAt = now
    }
    if (++delivered[i] === n) {
      completed++
      pump()
    }
  }
  for (const s of subscribers) s.on(channel.inboundType, onEvent)
  pump()
  await waitUntil(() => completed === total, options.stepTimeoutSeconds * 1000, 5)
  for (const s of subscribers) s.off(channel.inboundType)

  const measuredStart = sentAtOf[Math.min(warmup, total - 1)]!
  const seconds = (lastDeliveryAt - measuredStart) / 1000
  return {
    writes: total,
    eventsPerSecond: seconds > 0 ? measuredEvents / seconds : Number.NaN,
    latency: samples.summary(),
    incomplete: total - completed,
    errors: errorCounts([writer, ...subscribers])
  }
}

/** Subscribes clients[from, to) with QUERY_SUB and waits for every QUERY_RESP (or an ERROR). */
const addQuerySubscribers = async (clients: ReadonlyArray<BenchClient>, from: number, to: number) => {
  let responses = 0
  for (let i = from; i < to; i++) {
    const client = clients[i]!
    const queryId = `q${i}`
    client.on("QUERY_RESP", (message) => {
      if (message.payload?.queryId === queryId) responses++
    })
    client.send({ type: "QUERY_SUB", payload: { queryId, mapName: MAP_NAME, query: {} } })
  }
  const added = clients.slice(from, to)
  await waitUntil(() => responses === to - from || errorReason(added) !== undefined, 15_000)
  return responses === to - from ? undefined : (errorReason(added) ?? "QUERY_RESP missing after 15 s")
}

/**
 * Subscribes clients[from, to) with TOPIC_SUB. TOPIC_SUB has no reply, so readiness is probed: the writer
 * publishes probes until every subscriber has received one.
 */
const addTopicSubscribers = async (clients: ReadonlyArray<BenchClient>, from: number, to: number, writer: BenchClient) => {
  for (let i = from; i < to; i++) clients[i]!.send({ type: "TOPIC_SUB", payload: { topic: TOPIC } })
  const subscribers = clients.slice(0, to)
  const probed = new Set<BenchClient>()
  for (const s of subscribers) s.on("TOPIC_MESSAGE", () => probed.add(s))
  const ready = await waitUntil(
    () => {
      if (probed.size === subscribers.length || errorReason([writer, ...subscribers]) !== undefined) return true
      writer.send({ type: "TOPIC_PUB", payload: { topic: TOPIC, data: { probe: true } } })
      return false
    },
    10_000,
    100
  )
  for (const s of subscribers) s.off("TOPIC_MESSAGE")
  if (probed.size === subscribers.length) return undefined
  return errorReason([writer, ...subscribers]) ?? (ready ? "topic probe failed" : "TOPIC_MESSAGE probe missing after 10 s")
}

const ascending = (counts: ReadonlyArray<number>) => [...new Set(counts)].filter((c) => c > 0).sort((a, b) => a - b)

/** Runs every requested step against one server. Rows come back in the order query steps, topic steps. */
export const runFanoutSuite = async (target: Target, options: FanoutOptions): Promise<Array<FanoutRow>> => {
  const queryCounts = ascending(options.queryCounts)
  const topicCounts = ascending(options.topicCounts)
  const rows: Array<FanoutRow> = []
  const failAll = (variant: FanoutVariant, counts: ReadonlyArray<number>, reason: string) => {
    for (const subscribers of counts) rows.push({ variant, subscribers, outcome: unavailable(reason) })
  }
  const missing = target.unavailable()
  if (missing !== undefined) {
    failAll("query", queryCounts, missing)
    failAll("topic", topicCounts, missing)
    return rows
  }
  const poolSize = Math.max(0, ...queryCounts, ...topicCounts)
  let server
  try {
    server = await target.start()
  } catch (error) {
    failAll("query", queryCounts, describeError(error))
    failAll("topic", topicCounts, describeError(error))
    return rows
  }
  let clients: Array<BenchClient> = []
  try {
    clients = await connectMany(
      poolSize + 1,
      { url: server.url, token: options.token },
      { ratePerSecond: target.connectRatePerSecond }
    )
  } catch (error) {
    failAll("query", queryCounts, `connect: ${describeError(error)}`)
    failAll("topic", topicCounts, `connect: ${describeError(error)}`)
    await server.stop()
    return rows
  }
  const writer = clients[0]!
  const pool = clients.slice(1)

  const runVariant = async (
    variant: FanoutVariant,
    counts: ReadonlyArray<number>,
    channel: Channel,
    subscribe: (from: number, to: number) => Promise<string | undefined>
  ) => {
    let subscribed = 0
    for (const [index, count] of counts.entries()) {
      try {
        const failure = await subscribe(subscribed, count)
        if (failure !== undefined) {
          failAll(variant, counts.slice(index), failure)
          return
        }
        subscribed = count
        const result = await runStep(channel, pool.slice(0, count), writer, options)
        rows.push({ variant, subscribers: count, outcome: { ok: true, result } })
      } catch (error) {
        failAll(variant, counts.slice(index), describeError(error))
        return
      }
    }
  }

  try {
    await runVariant("query", queryCounts, queryChannel(writer), (from, to) => addQuerySubscribers(pool, from, to))
    for (const c of clients) c.errors.length = 0 // a 501 for QUERY_SUB must not be blamed on topics
    await runVariant("topic", topicCounts, topicChannel(writer), (from, to) =>
      addTopicSubscribers(pool, from, to, writer)
    )
  } finally {
    closeAll(clients)
    await server.stop()
  }
  return rows
}
