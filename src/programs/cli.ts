#!/usr/bin/env node
import { Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Context, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import { ConfigInvalid } from "../layers/Auth.js"
import type { LogLevelName, ServerSettings } from "../layers/ServerConfig.js"
import { Transport } from "../layers/Transport.js"
import { redactSettings, resolveSettings, serveOptions } from "./config.js"
import { gracefulShutdown, serverLayer } from "./server.js"
import { telemetryLayer } from "./telemetry.js"

const logLevels: Record<LogLevelName, LogLevel.LogLevel> = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

/** Structured JSON logs when stdout is not a terminal, pretty logs otherwise; always on stderr so stdout stays machine-readable. */
const loggerLayer = (settings: ServerSettings) =>
  Layer.mergeAll(
    Logger.replace(
      Logger.defaultLogger,
      (process.stderr.isTTY ? Logger.prettyLogger({ stderr: true }) : Logger.withConsoleError(Logger.jsonLogger))
    ),
    Logger.minimumLogLevel(logLevels[settings.logLevel])
  )

/**
 * Runs the server until SIGTERM/SIGINT (NodeRuntime.runMain interrupts the main fiber on a signal),
 * then shuts down gracefully; a second signal exits at once. Prints `PORT=<n>` on stdout once listening.
 */
const serve = (settings: ServerSettings) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(serverLayer(settings), scope).pipe(
      Effect.tapErrorCause(() => Scope.close(scope, Exit.void))
    )
    const { port } = Context.get(context, Transport)
    process.stdout.write(`PORT=${port}\n`)
    yield* Effect.logInfo("tessera ready", { nodeId: settings.nodeId, port, storage: settings.storage })
    let signals = 0
    const onSignal = () => {
      if (++signals > 1) process.exit(1)
    }
    process.on("SIGTERM", onSignal)
    process.on("SIGINT", onSignal)
    const shutdown = Effect.gen(function* () {
      yield* Effect.logInfo("signal received, shutting down")
      yield* gracefulShutdown.pipe(
        Effect.provide(context),
        Effect.timeout(settings.shutdownTimeoutMs),
        Effect.catchAllCause((cause) => Effect.logWarning("graceful shutdown incomplete", cause))
      )
      yield* Scope.close(scope, Exit.void).pipe(Effect.timeout(5000), Effect.ignore)
      yield* Effect.logInfo("stopped")
    })
    yield* Effect.never.pipe(Effect.onInterrupt(() => shutdown))
  })

const serveCommand = Command.make("serve", serveOptions, (parsed) =>
  Effect.gen(function* () {
    const settings = yield* resolveSettings(parsed)
    const telemetry = telemetryLayer()
    const withTelemetry = telemetry === undefined ? serve(settings) : Effect.provide(serve({ ...settings, tracing: true }), telemetry)
    yield* withTelemetry.pipe(Effect.provide(loggerLayer(settings)))
  })
).pipe(Command.withDescription("Run the Tessera server (TopGun wire protocol over WebSocket on /ws and /)."))

const configCommand = Command.make("config", serveOptions, (parsed) =>
  Effect.gen(function* () {
    const settings = yield* resolveSettings(parsed)
    process.stdout.write(`${JSON.stringify(redactSettings(settings), null, 2)}\n`)
  })
).pipe(Command.withDescription("Print the effective configuration (flags > env > config file > defaults), secrets redacted."))

const tessera = Command.make("tessera").pipe(
  Command.withDescription("Tessera — a real-time data grid server speaking the TopGun protocol."),
  Command.withSubcommands([serveCommand, configCommand])
)

const cli = Command.run(tessera, { name: "tessera", version: "0.1.0" })

cli(process.argv).pipe(
  Effect.catchIf((e): e is ConfigInvalid => e instanceof ConfigInvalid, (e) =>
    Effect.sync(() => {
      process.stderr.write(`tessera: invalid configuration (${e.setting}): ${e.message}\n`)
      process.exitCode = 2
    })
  ),
  Effect.tapErrorCause((cause) =>
    Cause.isInterruptedOnly(cause) ? Effect.void : Effect.sync(() => {
      // Expected startup failures (storage unreachable or corrupt, port in use) are one clear line;
      // anything else is a bug and keeps its full cause.
      const failure = Cause.failureOption(cause)
      const expected = failure._tag === "Some" && typeof (failure.value as { message?: unknown }).message === "string"
      process.stderr.write(expected ? `tessera: startup failed: ${(failure.value as { message: string }).message}\n` : `tessera: ${Cause.pretty(cause)}\n`)
      process.exitCode = 1
    })
  ),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
