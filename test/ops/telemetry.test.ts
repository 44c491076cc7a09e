import { createServer, type IncomingMessage, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { resourceAttributes, telemetryLayer, tracesUrl, tracingEnabled } from "../../src/programs/telemetry.js"

interface ReceivedExport {
  readonly method: string
  readonly path: string
  readonly body: Buffer
}

/** A stand-in OTLP collector on loopback: answers every request with 200 and records it. */
const startCollector = async () => {
  const received: ReceivedExport[] = []
  let notify: (() => void) | undefined
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      received.push({ method: req.method ?? "", path: req.url ?? "", body: Buffer.concat(chunks) })
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
      notify?.()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  /** Resolves once a request has arrived (at once if one already has); rejects after `ms`. */
  const firstRequest = (ms: number) =>
    new Promise<ReceivedExport>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no OTLP request within ${ms} ms`)), ms)
      const check = () => {
        if (received.length === 0) return
        clearTimeout(timer)
        resolve(received[0]!)
      }
      notify = check
      check()
    })
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return { url: `http://127.0.0.1:${port}`, received, firstRequest, close }
}

let collector: Awaited<ReturnType<typeof startCollector>> | undefined
afterEach(async () => {
  await collector?.close()
  collector = undefined
})

describe("telemetryLayer switching", () => {
  const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" }

  it("is off by default", () => {
    expect(telemetryLayer({})).toBeUndefined()
  })

  it("is off when OTEL_SDK_DISABLED=true, even with an endpoint", () => {
    expect(telemetryLayer({ ...endpoint, OTEL_SDK_DISABLED: "true" })).toBeUndefined()
    expect(telemetryLayer({ ...endpoint, OTEL_SDK_DISABLED: "TRUE" })).toBeUndefined()
  })

  it("is off when OTEL_TRACES_EXPORTER=none, even with an endpoint", () => {
    expect(telemetryLayer({ ...endpoint, OTEL_TRACES_EXPORTER: "none" })).toBeUndefined()
  })

  it("is on with either endpoint variable", () => {
    expect(telemetryLayer(endpoint)).toBeDefined()
    expect(telemetryLayer({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://127.0.0.1:4318/v1/traces" })).toBeDefined()
    expect(tracingEnabled({ ...endpoint, OTEL_SDK_DISABLED: "false", OTEL_TRACES_EXPORTER: "otlp" })).toBe(true)
  })

  it("treats empty variables as unset", () => {
    expect(telemetryLayer({ OTEL_EXPORTER_OTLP_ENDPOINT: "" })).toBeUndefined()
    expect(tracingEnabled({ ...endpoint, OTEL_TRACES_EXPORTER: "" })).toBe(true)
  })
})

describe("OTLP configuration from env", () => {
  it("appends v1/traces to the generic endpoint and keeps the traces endpoint as is", () => {
    expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" })).toBe("http://c:4318/v1/traces")
    expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/base/" })).toBe("http://c:4318/base/v1/traces")
    expect(
      tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://a:1", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://b:2/t" })
    ).toBe("http://b:2/t")
    expect(tracesUrl({})).toBeUndefined()
  })

  it("parses OTEL_RESOURCE_ATTRIBUTES, decoding values and skipping malformed pairs", () => {
    expect(
      resourceAttributes({ OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod, team = grid ,bad,=x,note=a%20b%2Cc" })
    ).toEqual({ "deployment.environment": "prod", team: "grid", note: "a b,c" })
    expect(resourceAttributes({})).toEqual({})
  })
})

describe("trace export", () => {
  it("exports a span to OTLP /v1/traces when the layer's scope closes", async () => {
    collector = await startCollector()
    const layer = telemetryLayer({
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_SERVICE_NAME: "tessera-test",
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=ci"
    })
    expect(layer).toBeDefined()
    await Effect.void.pipe(Effect.withSpan("test-span"), Effect.provide(layer!), Effect.runPromise)
    const request = await collector.firstRequest(15_000)
    expect(request.method).toBe("POST")
    expect(request.path).toBe("/v1/traces")
    // JSON or protobuf, the span name and resource attributes appear verbatim in the payload.
    const payload = request.body.toString("latin1")
    expect(payload).toContain("test-span")
    expect(payload).toContain("tessera-test")
    expect(payload).toContain("deployment.environment")
  })
})
