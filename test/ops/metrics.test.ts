import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeMetricsRegistry, MAX_MAP_LABELS, Metrics, MetricsRegistry, OTHER_MAP_LABEL, storageReadiness } from "../../src/layers/Metrics.js"
import { TestClient } from "../support/client.js"
import { postSync, type RunningOpsServer, signToken, startOpsServer } from "./support.js"

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_PAIR = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"$/
const VALUE = /^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]?Inf|NaN)$/i
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"])

/** Splits `a="x",b="y,z"` on the commas between pairs (commas inside quoted values stay). */
const splitLabels = (text: string): string[] => {
  const parts: string[] = []
  let current = ""
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (c === "\\" && quoted) {
      current += c + text[++i]!
      continue
    }
    if (c === "\"") quoted = !quoted
    if (c === "," && !quoted) {
      parts.push(current)
      current = ""
    } else {
      current += c
    }
  }
  if (current !== "") parts.push(current)
  return parts
}

/**
 * A strict reader of the Prometheus text exposition format 0.0.4: every line is a HELP, a TYPE or a
 * sample; every sample belongs to a family declared by TYPE (histogram/summary suffixes included).
 * Throws on the first violation.
 */
const parseExposition = (text: string): { readonly types: Map<string, string>; readonly samples: Sample[] } => {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  const lines = text.split("\n")
  if (lines[lines.length - 1] === "") lines.pop()
  for (const line of lines) {
    if (line.startsWith("# HELP ")) {
      const name = line.slice(7).split(" ")[0]!
      if (!METRIC_NAME.test(name)) throw new Error(`bad HELP name: ${line}`)
      continue
    }
    if (line.startsWith("# TYPE ")) {
      const [name, type, ...rest] = line.slice(7).split(" ")
      if (!METRIC_NAME.test(name!) || !TYPES.has(type!) || rest.length > 0) throw new Error(`bad TYPE line: ${line}`)
      if (types.has(name!)) throw new Error(`duplicate TYPE for ${name}`)
      types.set(name!, type!)
      continue
    }
    if (line === "") continue // empty lines are allowed (and ignored) by the format
    if (line.startsWith("#")) throw new Error(`unexpected comment: ${JSON.stringify(line)}`)
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line)
    if (match === null) throw new Error(`bad sample line: ${line}`)
    const [, name, labelText, valueText] = match
    if (!VALUE.test(valueText!)) throw new Error(`bad sample value: ${line}`)
    const labels: Record<string, string> = {}
    for (const pair of labelText === undefined || labelText === "" ? [] : splitLabels(labelText)) {
      const m = LABEL_PAIR.exec(pair)
      if (m === null) throw new Error(`bad label pair ${pair} in: ${line}`)
      labels[m[1]!] = m[2]!
    }
    const family = [name!, name!.replace(/_(bucket|sum|count)$/, "")].find((n) => types.has(n))
    if (family === undefined) throw new Error(`sample without TYPE: ${line}`)
    samples.push({ name: name!, labels, value: Number(valueText!.toLowerCase() === "nan" ? NaN : valueText!.replace(/inf/i, "Infinity")) })
  }
  return { types, samples }
}

const valueOf = (samples: ReadonlyArray<Sample>, name: string, labels: Record<string, string> = {}): number | undefined =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value

describe("exposition parser (self-check)", () => {
  it("rejects malformed exposition text", () => {
    expect(() => parseExposition("# TYPE a counter\na 1\n")).not.toThrow()
    expect(() => parseExposition("a 1\n")).toThrow(/without TYPE/)
    expect(() => parseExposition("# TYPE a counter\na{x=1} 1\n")).toThrow(/label/)
    expect(() => parseExposition("# TYPE a counter\na one\n")).toThrow(/value/)
    expect(() => parseExposition("# TYPE a thing\n")).toThrow(/TYPE/)
    expect(() => parseExposition("# TYPE 1a counter\n")).toThrow(/TYPE/)
  })
})

describe("GET /metrics", () => {
  let server: RunningOpsServer
  const scrape = async () => {
    const res = await fetch(`${server.httpUrl}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
    return parseExposition(await res.text())
  }

  beforeAll(async () => {
    server = await startOpsServer({ noAuth: false })
  })
  afterAll(async () => {
    await server.close()
  })

  it("is valid Prometheus text with the required families and prefixed default metrics", async () => {
    const { types } = await scrape()
    const required: Record<string, string> = {
      topgun_connected_clients: "gauge",
      topgun_connections_pending: "gauge",
      topgun_connections_accepted_total: "counter",
      topgun_connections_rejected_total: "counter",
      topgun_messages_in_total: "counter",
      topgun_messages_out_total: "counter",
      topgun_ops_total: "counter",
      topgun_op_results_total: "counter",
      topgun_write_ack_latency_seconds: "histogram",
      topgun_write_ack_timeouts_total: "counter",
      topgun_live_subscriptions: "gauge",
      topgun_storage_queue_depth: "gauge",
      topgun_storage_errors_total: "counter",
      topgun_gc_last_safe_timestamp: "gauge",
      topgun_gc_pruned_total: "counter",
      topgun_rate_limited_total: "counter",
      topgun_map_size_items: "gauge",
      topgun_memory_usage_bytes: "gauge",
      topgun_cluster_members: "gauge",
      topgun_events_routed_total: "counter",
      topgun_subscribers_per_event: "histogram",
      topgun_replication_lag_ms: "gauge",
      topgun_nodejs_eventloop_lag_seconds: "gauge",
      topgun_process_cpu_seconds_total: "counter"
    }
    for (const [name, type] of Object.entries(required)) expect(types.get(name), name).toBe(type)
    // Every default process metric carries the prefix.
    for (const name of types.keys()) expect(name.startsWith("topgun_"), name).toBe(true)
  })

  it("moves the pushed counters when the recording methods are called", async () => {
    await server.run(Effect.gen(function* () {
      const metrics = yield* Metrics
      metrics.messageIn("CLIENT_OP")
      metrics.messageIn("CLIENT_OP")
      metrics.messageIn("NO_SUCH_TYPE")
      metrics.opApplied("PUT", "todos")
      metrics.opApplied("DELETE", "todos")
      metrics.opResult("success")
      metrics.ackLatency("MEMORY", 0.002)
      metrics.ackTimeout()
      metrics.rateLimited(3)
      metrics.connectionAccepted()
      metrics.connectionRejected()
      metrics.messagesOut(5)
      metrics.gcSafeTimestamp(1_700_000_000_000)
      metrics.gcPruned(4)
      metrics.replicationLag("node-b", 12)
    }))
    const { samples } = await scrape()
    expect(valueOf(samples, "topgun_messages_in_total", { type: "CLIENT_OP" })).toBe(2)
    expect(valueOf(samples, "topgun_messages_in_total", { type: "unknown" })).toBe(1)
    expect(valueOf(samples, "topgun_messages_in_total", { type: "NO_SUCH_TYPE" })).toBeUndefined()
    expect(valueOf(samples, "topgun_ops_total", { type: "PUT", map: "todos" })).toBe(1)
    expect(valueOf(samples, "topgun_ops_total", { type: "DELETE", map: "todos" })).toBe(1)
    expect(valueOf(samples, "topgun_op_results_total", { result: "success" })).toBe(1)
    expect(valueOf(samples, "topgun_write_ack_latency_seconds_count", { concern: "MEMORY" })).toBe(1)
    expect(valueOf(samples, "topgun_write_ack_latency_seconds_bucket", { concern: "MEMORY", le: "0.0025" })).toBe(1)
    expect(valueOf(samples, "topgun_write_ack_latency_seconds_bucket", { concern: "MEMORY", le: "0.001" })).toBe(0)
    expect(valueOf(samples, "topgun_write_ack_timeouts_total")).toBe(1)
    expect(valueOf(samples, "topgun_rate_limited_total")).toBe(3)
    expect(valueOf(samples, "topgun_connections_accepted_total")).toBe(1)
    expect(valueOf(samples, "topgun_connections_rejected_total")).toBe(1)
    expect(valueOf(samples, "topgun_messages_out_total")).toBe(5)
    expect(valueOf(samples, "topgun_gc_last_safe_timestamp")).toBe(1_700_000_000_000)
    expect(valueOf(samples, "topgun_gc_pruned_total")).toBe(4)
    expect(valueOf(samples, "topgun_replication_lag_ms", { node: "node-b" })).toBe(12)
    expect(valueOf(samples, "topgun_cluster_members")).toBe(1)
    expect(valueOf(samples, "topgun_memory_usage_bytes")).toBeGreaterThan(0)
  })

  it("reads connections, live subscriptions, map sizes and routed events from the running server", async () => {
    const before = await scrape()
    expect(valueOf(before.samples, "topgun_connected_clients")).toBe(0)
    const routedBefore = valueOf(before.samples, "topgun_events_routed_total")!

    const client = await TestClient.connect(server.url)
    await client.next("AUTH_REQUIRED")
    const pending = await scrape()
    expect(valueOf(pending.samples, "topgun_connected_clients")).toBe(1)
    expect(valueOf(pending.samples, "topgun_connections_pending")).toBe(1)

    client.send({ type: "AUTH", token: await signToken({ sub: "watcher" }) })
    await client.next("AUTH_ACK")
    client.send({ type: "QUERY_SUB", payload: { queryId: "q1", mapName: "metrics-map", query: {} } })
    await client.next("QUERY_RESP")
    const subscribed = await scrape()
    expect(valueOf(subscribed.samples, "topgun_connections_pending")).toBe(0)
    expect(valueOf(subscribed.samples, "topgun_live_subscriptions")).toBe(1)

    const now = Date.now()
    const reply = await postSync(server.httpUrl, {
      clientHlc: { millis: now, counter: 0, nodeId: "http-client" },
      operations: [
        ...["a", "b", "c"].map((key, i) => ({
          mapName: "metrics-map",
          key,
          record: { value: { n: i }, timestamp: { millis: now, counter: i, nodeId: "http-client" } }
        })),
        { mapName: "metrics-map", key: "a", opType: "REMOVE", record: { value: null, timestamp: { millis: now, counter: 9, nodeId: "http-client" } } }
      ]
    }, { token: await signToken({ sub: "writer" }) })
    expect(reply.status).toBe(200)
    await client.next("SERVER_EVENT", (m) => m.payload.eventType === "REMOVE")

    const after = await scrape()
    // Tombstones are not counted as items.
    expect(valueOf(after.samples, "topgun_map_size_items", { map: "metrics-map" })).toBe(2)
    expect(valueOf(after.samples, "topgun_events_routed_total")).toBe(routedBefore + 4)
    expect(valueOf(after.samples, "topgun_subscribers_per_event_bucket", { le: "1" })).toBeGreaterThanOrEqual(4)
    client.close()
  })
})

describe("MetricsRegistry provided in the base layer", () => {
  it("is the same registry /metrics serves (layers are shared by reference)", async () => {
    const server = await startOpsServer({}, undefined, { registryInBase: true })
    try {
      await server.run(Effect.gen(function* () {
        const recorder = yield* MetricsRegistry
        recorder.messageIn("OP_BATCH")
        expect((yield* Metrics).registry).toBe(recorder.registry)
      }))
      const { samples } = parseExposition(await (await fetch(`${server.httpUrl}/metrics`)).text())
      expect(valueOf(samples, "topgun_messages_in_total", { type: "OP_BATCH" })).toBe(1)
    } finally {
      await server.close()
    }
  })
})

describe("MetricsRegistry", () => {
  it("bounds the map label cardinality of topgun_ops_total", async () => {
    const recorder = makeMetricsRegistry()
    for (let i = 0; i < MAX_MAP_LABELS + 5; i++) recorder.opApplied("PUT", `map-${i}`)
    recorder.opApplied("PUT", "map-0")
    const { samples } = parseExposition(await recorder.registry.metrics())
    const ops = samples.filter((s) => s.name === "topgun_ops_total")
    expect(ops.length).toBe(MAX_MAP_LABELS + 1)
    expect(valueOf(samples, "topgun_ops_total", { map: OTHER_MAP_LABEL })).toBe(5)
    expect(valueOf(samples, "topgun_ops_total", { map: "map-0" })).toBe(2)
  })

  it("escapes label values so the exposition stays parseable", async () => {
    const recorder = makeMetricsRegistry()
    recorder.opApplied("PUT", "we\"ird\\map\nname")
    const { samples } = parseExposition(await recorder.registry.metrics())
    expect(valueOf(samples, "topgun_ops_total", { type: "PUT" })).toBe(1)
  })

  it("storage readiness reports the last storage error", () => {
    const base = { queueDepth: 3, failures: 2, consecutiveFailures: 2, committedBatches: 0 }
    expect(storageReadiness({ ...base, healthy: true })).toEqual({ ready: true })
    expect(storageReadiness({ ...base, healthy: false, lastError: "disk full" })).toEqual({ ready: false, reason: "storage unavailable: disk full" })
    expect(storageReadiness({ ...base, healthy: false })).toEqual({ ready: false, reason: "storage unavailable: write queue depth 3" })
  })
})
