/**
 * Prometheus metrics (behavior.md §3.27) on the main port's `GET /metrics`, rendered by `prom-client`.
 *
 * Two services, so the hot path never depends on the HTTP surface:
 * - `MetricsRegistry` has no dependencies: it owns the prom-client `Registry`, the default process metrics
 *   (prefix `topgun_`) and every counter/histogram, with plain synchronous increment methods. Sessions,
 *   Operations, Gc … depend on it directly (placing it in the base layer creates no cycle).
 * - `Metrics` is a leaf: gauges read from live services at scrape time (connections, maps, live queries,
 *   write-behind, cluster), the `/metrics` route and the storage readiness check. It re-exposes the
 *   increment methods.
 */
import { Effect, Option, Stream } from "effect"
import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from "prom-client"
import { isClientMessageType } from "../protocol/decode.js"
import { ChangeStage, Changes } from "./Changes.js"
import { Cluster } from "./Cluster.js"
import { Connections } from "./Connections.js"
import { Maps } from "./Maps.js"
import { Queries } from "./Queries.js"
import { WriteBehind, type WriteBehindStatus } from "./storage/write-behind.js"
import { Transport } from "./Transport.js"

/** Distinct `map` label values kept per metric; later maps are reported as `_other` (bounded cardinality). */
export const MAX_MAP_LABELS = 1000
export const OTHER_MAP_LABEL = "_other"

/** Ack latency buckets (seconds): sub-millisecond MEMORY acks up to the 5 s default timeout. */
const ACK_LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const SUBSCRIBERS_BUCKETS = [0, 1, 2, 5, 10, 25, 50, 100, 250, 1000]

/** Caches prom-client label children: `labels(...)` hashes its arguments on every call. */
const childCache = <C>(make: (label: string) => C) => {
  const children = new Map<string, C>()
  return (label: string): C => {
    let child = children.get(label)
    if (child === undefined) children.set(label, child = make(label))
    return child
  }
}

/** Maps an unbounded set of map names onto at most `MAX_MAP_LABELS` label values. */
const boundedMapLabel = () => {
  const seen = new Set<string>()
  return (mapName: string): string => {
    if (seen.has(mapName)) return mapName
    if (seen.size >= MAX_MAP_LABELS) return OTHER_MAP_LABEL
    seen.add(mapName)
    return mapName
  }
}

/** Bucket counts, sum and count of one label value. */
class HistogramSeries {
  readonly counts: Float64Array
  sum = 0
  count = 0
  constructor(private readonly upperBounds: ReadonlyArray<number>) {
    this.counts = new Float64Array(upperBounds.length)
  }
  observe(value: number): void {
    const bounds = this.upperBounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++
        break
      }
    }
    this.sum += value
    this.count++
  }
}

/**
 * A fixed-bucket histogram, optionally with one label, whose `observe` is a bucket search and three
 * increments. prom-client's allocates closures and hashes labels on every call, which is too much for a
 * per-change or per-write observation; this one is registered in the same registry and rendered like any
 * prom-client histogram (cumulative `le` buckets, `_sum`, `_count`).
 */
export class CountingHistogram {
  readonly type = "histogram"
  readonly aggregator = "sum"
  private readonly series = new Map<string, HistogramSeries>()
  /** The only series of a histogram without label (present from the start, like prom-client's). */
  private readonly unlabeled: HistogramSeries | undefined
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly upperBounds: ReadonlyArray<number>,
    private readonly labelName?: string
  ) {
    this.unlabeled = labelName === undefined ? this.child() : undefined
  }
  /** The series of one label value (the only series when the histogram has no label). */
  child(labelValue = ""): HistogramSeries {
    let series = this.series.get(labelValue)
    if (series === undefined) this.series.set(labelValue, series = new HistogramSeries(this.upperBounds))
    return series
  }
  observe(value: number): void {
    const series = this.unlabeled ?? this.child()
    series.observe(value)
  }
  get() {
    const values: Array<{ value: number; labels: Record<string, string | number>; metricName: string }> = []
    for (const [labelValue, series] of this.series) {
      const labels: Record<string, string | number> = this.labelName === undefined ? {} : { [this.labelName]: labelValue }
      let cumulative = 0
      for (let i = 0; i < this.upperBounds.length; i++) {
        cumulative += series.counts[i]!
        values.push({ value: cumulative, labels: { ...labels, le: this.upperBounds[i]! }, metricName: `${this.name}_bucket` })
      }
      values.push({ value: series.count, labels: { ...labels, le: "+Inf" }, metricName: `${this.name}_bucket` })
      values.push({ value: series.sum, labels, metricName: `${this.name}_sum` })
      values.push({ value: series.count, labels, metricName: `${this.name}_count` })
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator })
  }
  reset(): void {
    for (const series of this.series.values()) {
      series.counts.fill(0)
      series.sum = 0
      series.count = 0
    }
  }
}

/**
 * A prom-client counter whose increments are plain additions to a per-label-set number, handed to
 * prom-client at scrape time (`collect`): a `labels(...).inc()` hashes its labels on every call.
 */
const pulledCounter = <L extends string>(registers: Array<Registry>, name: string, help: string, labelNames: ReadonlyArray<L>) => {
  const totals = new Map<string, { readonly labels: Partial<Record<L, string>>; value: number }>()
  new Counter<L>({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset()
      for (const t of totals.values()) this.inc(t.labels, t.value)
    }
  })
  return (labelKey: string, labels: () => Partial<Record<L, string>>, count: number): void => {
    const total = totals.get(labelKey)
    if (total !== undefined) total.value += count
    else totals.set(labelKey, { labels: labels(), value: count })
  }
}

/** The registry, the default metrics and every pushed metric; nothing here reads other services. */
export const makeMetricsRegistry = () => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: "topgun_" })
  const registers = [registry]

  const connectionsAccepted = new Counter({ name: "topgun_connections_accepted_total", help: "WebSocket connections accepted", registers })
  const connectionsRejected = new Counter({ name: "topgun_connections_rejected_total", help: "WebSocket connections rejected (limit, shutdown)", registers })
  const messagesIn = pulledCounter(registers, "topgun_messages_in_total", "Client messages received, by type", ["type"])
  const messagesOut = new Counter({ name: "topgun_messages_out_total", help: "Messages sent to clients", registers })
  const ops = pulledCounter(registers, "topgun_ops_total", "Operations by type and map", ["type", "map"])
  const opResults = new Counter({ name: "topgun_op_results_total", help: "Write results by outcome", labelNames: ["result"], registers })
  const ackLatency = new CountingHistogram(
    "topgun_write_ack_latency_seconds",
    "Time from receiving a write to acknowledging it, by requested write concern",
    ACK_LATENCY_BUCKETS,
    "concern"
  )
  registry.registerMetric(ackLatency as unknown as Metric)
  const ackTimeouts = new Counter({ name: "topgun_write_ack_timeouts_total", help: "Writes whose requested level was not reached in time", registers })
  const rateLimited = new Counter({ name: "topgun_rate_limited_total", help: "Messages refused by the rate limiter", registers })
  // Counted in a plain number (one per change) and handed to prom-client at scrape time.
  let routedEvents = 0
  new Counter({
    name: "topgun_events_routed_total",
    help: "Applied changes routed to subscribers",
    registers,
    collect() {
      this.reset()
      this.inc(routedEvents)
    }
  })
  const subscribersPerEvent = new CountingHistogram(
    "topgun_subscribers_per_event",
    "Connections with a live query on the changed map, per change",
    SUBSCRIBERS_BUCKETS
  )
  registry.registerMetric(subscribersPerEvent as unknown as Metric)
  const gcLastSafe = new Gauge({ name: "topgun_gc_last_safe_timestamp", help: "Millis of the last GC safe timestamp agreed by the cluster", registers })
  const gcPruned = new Counter({ name: "topgun_gc_pruned_total", help: "Tombstones and expired records pruned by GC", registers })
  const replicationLag = new Gauge({ name: "topgun_replication_lag_ms", help: "Replication lag per backup node (ms)", labelNames: ["node"], registers })

  const opResultChild = childCache((result) => opResults.labels(result))
  const opsMapLabel = boundedMapLabel()

  return {
    registry,
    /** A WebSocket upgrade was accepted. */
    connectionAccepted: (): void => connectionsAccepted.inc(),
    /** A WebSocket upgrade was refused (connection limit, shutting down). */
    connectionRejected: (): void => connectionsRejected.inc(),
    /** One inbound client message (inner BATCH records count one each); unknown types share one label. */
    messageIn: (type: string): void => {
      const label = isClientMessageType(type) ? type : "unknown"
      messagesIn(label, () => ({ type: label }), 1)
    },
    messagesOut: (count = 1): void => messagesOut.inc(count),
    /** One op, e.g. `PUT` / `DELETE` / `OR_ADD` / `OR_REMOVE` / `GET` / `SUBSCRIBE`, on a map. */
    opApplied: (type: string, mapName: string, count = 1): void => {
      const map = opsMapLabel(mapName)
      ops(`${type}\u0000${map}`, () => ({ type, map }), count)
    },
    /** One write result: e.g. `success`, `rejected`, `timeout`, `failed`. */
    opResult: (result: string): void => opResultChild(result).inc(),
    ackLatency: (concern: string, seconds: number): void => ackLatency.child(concern).observe(seconds),
    ackTimeout: (): void => ackTimeouts.inc(),
    rateLimited: (count = 1): void => rateLimited.inc(count),
    /** One change fanned out to `subscribers` connections. */
    eventRouted: (subscribers: number): void => {
      routedEvents++
      subscribersPerEvent.observe(subscribers)
    },
    gcSafeTimestamp: (millis: number): void => gcLastSafe.set(millis),
    gcPruned: (count = 1): void => gcPruned.inc(count),
    replicationLag: (node: string, ms: number): void => replicationLag.labels(node).set(ms)
  } as const
}

export type MetricsRecorder = Omit<ReturnType<typeof makeMetricsRegistry>, "registry">

/** The counters the hot path increments. No dependencies. */
export class MetricsRegistry extends Effect.Service<MetricsRegistry>()("tessera/MetricsRegistry", {
  sync: makeMetricsRegistry
}) {}

/** The readiness verdict for a write-behind status (exported for tests). */
export const storageReadiness = (status: WriteBehindStatus): { readonly ready: boolean; readonly reason?: string } =>
  status.healthy
    ? { ready: true }
    : { ready: false, reason: `storage unavailable: ${status.lastError ?? `write queue depth ${status.queueDepth}`}` }

/**
 * The leaf metrics layer: scrape-time gauges, `GET /metrics`, the storage readiness check.
 * `Metrics.Default` includes `MetricsRegistry.Default` (shared by reference when the base layer also
 * provides it); use `Metrics.DefaultWithoutDependencies` to take the registry from the base layer.
 */
export class Metrics extends Effect.Service<Metrics>()("tessera/Metrics", {
  scoped: Effect.gen(function* () {
    const recorder = yield* MetricsRegistry
    const { registry } = recorder
    const transport = yield* Transport
    const connections = yield* Connections
    const maps = yield* Maps
    const queries = yield* Queries
    const writeBehind = yield* WriteBehind
    const changes = yield* Changes
    const cluster = yield* Effect.serviceOption(Cluster)
    const registers = [registry]
    const owned: Metric[] = []
    const own = <M extends Metric>(metric: M): M => {
      owned.push(metric)
      return metric
    }

    // `status` is an Effect.sync: safe to run from prom-client's synchronous collect callbacks.
    const readStorage = (): WriteBehindStatus => Effect.runSync(writeBehind.status)

    let clusterMembers = 1
    if (Option.isSome(cluster)) {
      yield* cluster.value.membershipChanges.pipe(
        Stream.runForEach((view) => Effect.sync(() => {
          clusterMembers = view.members.length
        })),
        Effect.forkScoped
      )
    }

    own(new Gauge({
      name: "topgun_connected_clients",
      help: "Open WebSocket connections",
      registers,
      collect() {
        this.set(connections.count())
      }
    }))
    own(new Gauge({
      name: "topgun_connections_pending",
      help: "Open connections that have not authenticated yet",
      registers,
      collect() {
        let pending = 0
        for (const c of connections.all()) if (c.principal === undefined) pending++
        this.set(pending)
      }
    }))
    own(new Gauge({
      name: "topgun_live_subscriptions",
      help: "Live query subscriptions",
      registers,
      collect() {
        this.set(queries.count())
      }
    }))
    const mapLabel = boundedMapLabel()
    own(new Gauge({
      name: "topgun_map_size_items",
      help: "Entries per loaded map (LWW keys without tombstones, OR keys with records)",
      labelNames: ["map"],
      registers,
      collect() {
        this.reset()
        const sizes = new Map<string, number>()
        for (const state of maps.all()) {
          // O(1) per map (a scrape must not walk a million rows); TTL-expired entries count until swept.
          const n = state.type === "OR" ? state.or.size : state.lww.size - state.lww.tombstoneCount
          const label = mapLabel(state.name)
          sizes.set(label, (sizes.get(label) ?? 0) + n)
        }
        for (const [label, n] of sizes) this.labels(label).set(n)
      }
    }))
    own(new Gauge({
      name: "topgun_memory_usage_bytes",
      help: "V8 heap in use (bytes)",
      registers,
      collect() {
        this.set(process.memoryUsage().heapUsed)
      }
    }))
    own(new Gauge({
      name: "topgun_cluster_members",
      help: "Members of the cluster this node sees (itself included)",
      registers,
      collect() {
        this.set(clusterMembers)
      }
    }))
    own(new Gauge({
      name: "topgun_storage_queue_depth",
      help: "Mutations waiting in the write-behind queue",
      registers,
      collect() {
        this.set(readStorage().queueDepth)
      }
    }))
    own(new Counter({
      name: "topgun_storage_errors_total",
      help: "Failed storage write attempts",
      registers,
      collect() {
        // The write-behind owns the count; mirror it (a counter never goes down, and neither does `failures`).
        this.reset()
        this.inc(readStorage().failures)
      }
    }))

    // Fan-out statistics from the change feed, after every other consumer.
    const unsubscribe = changes.subscribe(ChangeStage.Cluster + 1, "metrics", (change) => {
      recorder.eventRouted(connections.mapSubscribers(change.mapName)?.size ?? 0)
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        unsubscribe()
        for (const metric of owned) registry.removeSingleMetric((metric as unknown as { name: string }).name)
      })
    )

    transport.addRoute({
      method: "GET",
      path: "/metrics",
      handle: (_req, res) => {
        registry.metrics().then(
          (text) => {
            res.writeHead(200, { "content-type": registry.contentType, "content-length": Buffer.byteLength(text) })
            res.end(text)
          },
          (error: unknown) => {
            res.writeHead(500, { "content-type": "text/plain" })
            res.end(`metrics collection failed: ${error instanceof Error ? error.message : String(error)}`)
          }
        )
      }
    })
    transport.addReadinessCheck(() => storageReadiness(readStorage()))

    const { registry: _registry, _tag: _serviceTag, ...methods } = recorder
    return {
      ...methods,
      registry,
      /** The exposition text, as `/metrics` serves it. */
      render: Effect.promise(() => registry.metrics()),
      contentType: registry.contentType
    } as const
  }),
  dependencies: [MetricsRegistry.Default]
}) {}
