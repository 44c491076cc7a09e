import { type Metric, Registry } from "prom-client"
import { describe, expect, it } from "vitest"
import { CountingHistogram } from "../../src/layers/Metrics.js"

describe("CountingHistogram", () => {
  it("renders like a prom-client histogram: cumulative le buckets, +Inf, _sum and _count, per label", async () => {
    const registry = new Registry()
    const h = new CountingHistogram("t_latency_seconds", "test latency", [0.1, 1, 10], "concern")
    registry.registerMetric(h as unknown as Metric)
    h.child("MEMORY").observe(0.05)
    h.child("MEMORY").observe(0.5)
    h.child("MEMORY").observe(50)
    h.child("PERSISTED").observe(1)
    const text = await registry.metrics()
    expect(text).toContain("# TYPE t_latency_seconds histogram")
    expect(text).toContain('t_latency_seconds_bucket{concern="MEMORY",le="0.1"} 1')
    expect(text).toContain('t_latency_seconds_bucket{concern="MEMORY",le="1"} 2')
    expect(text).toContain('t_latency_seconds_bucket{concern="MEMORY",le="10"} 2')
    expect(text).toContain('t_latency_seconds_bucket{concern="MEMORY",le="+Inf"} 3')
    expect(text).toContain('t_latency_seconds_sum{concern="MEMORY"} 50.55')
    expect(text).toContain('t_latency_seconds_count{concern="MEMORY"} 3')
    expect(text).toContain('t_latency_seconds_bucket{concern="PERSISTED",le="1"} 1')
  })

  it("without a label has one series from the start", async () => {
    const registry = new Registry()
    const h = new CountingHistogram("t_subscribers", "test", [0, 1])
    registry.registerMetric(h as unknown as Metric)
    expect(await registry.metrics()).toContain("t_subscribers_count 0")
    h.observe(0)
    h.observe(3)
    const text = await registry.metrics()
    expect(text).toContain('t_subscribers_bucket{le="0"} 1')
    expect(text).toContain('t_subscribers_bucket{le="1"} 1')
    expect(text).toContain('t_subscribers_bucket{le="+Inf"} 2')
    expect(text).toContain("t_subscribers_count 2")
  })
})
