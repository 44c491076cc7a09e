/**
 * Optional OpenTelemetry trace export, configured by the standard OTEL_* environment variables and off
 * by default. The spans themselves come from `Effect.fn` / `Effect.withSpan` on the request path; this
 * layer only swaps Effect's tracer for one that batches them to an OTLP/HTTP collector.
 */
import { NodeSdk } from "@effect/opentelemetry"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Context, Layer } from "effect"

const DEFAULT_SERVICE_NAME = "tessera"
const TRACES_PATH = "v1/traces"

/** The OTel spec treats an empty variable as unset. */
const read = (env: NodeJS.ProcessEnv, name: string): string | undefined => {
  const value = env[name]?.trim()
  return value === undefined || value === "" ? undefined : value
}

/**
 * The OTLP/HTTP traces URL, by the spec's rules: the signal-specific endpoint is used as is, the generic
 * one gets `v1/traces` appended. Undefined when neither is set.
 */
export const tracesUrl = (env: NodeJS.ProcessEnv): string | undefined => {
  const specific = read(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
  if (specific !== undefined) return specific
  const base = read(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
  if (base === undefined) return undefined
  return base.endsWith("/") ? `${base}${TRACES_PATH}` : `${base}/${TRACES_PATH}`
}

/**
 * True when trace export is wanted: an OTLP endpoint is configured, the SDK is not disabled, and
 * OTEL_TRACES_EXPORTER (default "otlp") names otlp. Other exporters (console, zipkin, ...) are not
 * bundled, so a list without "otlp" — "none" included — turns export off.
 */
export const tracingEnabled = (env: NodeJS.ProcessEnv): boolean => {
  if (read(env, "OTEL_SDK_DISABLED")?.toLowerCase() === "true") return false
  const exporters = (read(env, "OTEL_TRACES_EXPORTER") ?? "otlp").split(",").map((name) => name.trim().toLowerCase())
  if (!exporters.includes("otlp")) return false
  return tracesUrl(env) !== undefined
}

/** Parses OTEL_RESOURCE_ATTRIBUTES (`key1=value1,key2=value2`, values percent-encoded); malformed pairs are skipped. */
export const resourceAttributes = (env: NodeJS.ProcessEnv): Record<string, string> => {
  const attributes: Record<string, string> = {}
  const raw = read(env, "OTEL_RESOURCE_ATTRIBUTES")
  if (raw === undefined) return attributes
  for (const pair of raw.split(",")) {
    const eq = pair.indexOf("=")
    if (eq <= 0) continue
    const key = pair.slice(0, eq).trim()
    if (key === "") continue
    const value = pair.slice(eq + 1).trim()
    try {
      attributes[key] = decodeURIComponent(value)
    } catch {
      attributes[key] = value
    }
  }
  return attributes
}

/**
 * The tracing layer, or undefined when tracing is off (see `tracingEnabled`). Service name: OTEL_SERVICE_NAME,
 * else `service.name` from OTEL_RESOURCE_ATTRIBUTES, else "tessera". The URL is resolved from `env` here so
 * the on/off decision and the destination cannot disagree; the exporter and the batch processor read the
 * remaining variables (headers, timeout, compression, certificates, OTEL_BSP_*) from process.env themselves.
 * Closing the layer's scope flushes pending spans.
 */
export const telemetryLayer = (env: NodeJS.ProcessEnv = process.env): Layer.Layer<never> | undefined => {
  const url = tracesUrl(env)
  if (url === undefined || !tracingEnabled(env)) return undefined
  const attributes = resourceAttributes(env)
  const serviceName = read(env, "OTEL_SERVICE_NAME") ?? attributes["service.name"] ?? DEFAULT_SERVICE_NAME
  const sdk = NodeSdk.layer(() => ({
    resource: { serviceName, attributes },
    spanProcessor: new BatchSpanProcessor(new OTLPTraceExporter({ url }))
  }))
  // Only the tracer swap matters to callers; drop the Resource service from the output.
  return Layer.map(sdk, () => Context.empty())
}
