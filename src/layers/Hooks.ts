import { Context, Data, type Effect, Layer } from "effect"
import type { ClientOp } from "../protocol/schema.js"
import type { Principal } from "./Auth.js"
import type { Connection } from "./Connections.js"

/** Where a client-originated write came from (behavior.md §3.11). */
export interface OpContext {
  readonly connectionId: string | undefined
  readonly principal: Principal
  readonly authenticated: boolean
  readonly origin: "client" | "http"
}

/** A hook refuses an op (the op's result carries `message`) or a connection (close 4000). */
export class HookRejected extends Data.TaggedError("HookRejected")<{ readonly message: string }> {}

/**
 * Programmatic extension points for embedders (behavior.md §3.11). Every hook is optional; none is
 * installed by default, and the write path skips them entirely when absent.
 *
 * - `onConnection` — may refuse the connection (close 4000 "Connection Rejected").
 * - `onDisconnect` — cleanup; failures are logged.
 * - `onBeforeOp` — may return a replacement op, `undefined` to drop it ("Dropped by interceptor"), or fail
 *   to refuse it with the failure's message.
 * - `onAfterOp` — notification after the apply; fire-and-forget.
 */
export interface ServerHooks {
  readonly onConnection?: (connection: Connection) => Effect.Effect<void, HookRejected>
  readonly onDisconnect?: (connection: Connection) => Effect.Effect<void, unknown>
  readonly onBeforeOp?: (op: ClientOp, context: OpContext) => Effect.Effect<ClientOp | undefined, HookRejected>
  readonly onAfterOp?: (op: ClientOp, context: OpContext) => Effect.Effect<void, unknown>
}

export class Hooks extends Context.Tag("tessera/Hooks")<Hooks, ServerHooks>() {
  /** No hooks (the default). */
  static readonly layerNone: Layer.Layer<Hooks> = Layer.succeed(Hooks, {})
  static readonly layer = (hooks: ServerHooks): Layer.Layer<Hooks> => Layer.succeed(Hooks, hooks)
}
