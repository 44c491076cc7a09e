import { Effect, Stream } from "effect"
import {
  counterStatesEqual,
  counterToWire,
  emptyCounterState,
  mergeCounter,
  normalizeCounterState,
  type PNCounterState
} from "../crdt/pn-counter.js"
import { encodeMessage } from "../protocol/codec.js"
import { Cluster } from "./Cluster.js"
import { type Connection, Connections } from "./Connections.js"
import { Security } from "./Security.js"
import { Storage } from "./Storage.js"
import { WriteBehind } from "./storage/write-behind.js"

/** Node-metadata key prefix of persisted counter states (value: JSON `{p, n}`). */
export const COUNTER_META_PREFIX = "counter:"

export interface CounterRequestPayload {
  readonly name: string
}
export interface CounterSyncPayload {
  readonly name: string
  /** Either or both wire shapes (`{p, n}`, `{positive, negative}`), protocol.md §3.8. */
  readonly state: unknown
}

/**
 * PN counters (protocol.md §3.8, §4.4; behavior.md §3.19). The server never increments: it merges the
 * states clients send (per-node max), persists the result as node metadata, fans `COUNTER_UPDATE` out
 * to every local subscriber (encoded once) and broadcasts the merged state so other nodes converge.
 */
export class Counters extends Effect.Service<Counters>()("tessera/Counters", {
  scoped: Effect.gen(function* () {
    const connections = yield* Connections
    const security = yield* Security
    const cluster = yield* Cluster
    const storage = yield* Storage
    const writeBehind = yield* WriteBehind

    const states = new Map<string, PNCounterState>()
    /** counter name → connection id → subscriber. */
    const subscribers = new Map<string, Map<string, Connection>>()
    /** connection id → counters it is subscribed to (disconnect cleanup). */
    const countersOf = new Map<string, Set<string>>()

    if (storage.durable) {
      for (const [key, json] of yield* storage.metaByPrefix(COUNTER_META_PREFIX)) {
        let parsed: unknown
        try {
          parsed = JSON.parse(json)
        } catch {
          parsed = undefined
        }
        const state = normalizeCounterState(parsed)
        if (state === undefined) {
          yield* Effect.logWarning(`ignoring unreadable persisted counter ${key}`)
          continue
        }
        states.set(key.slice(COUNTER_META_PREFIX.length), state)
      }
    }

    const subscribe = (connection: Connection, name: string): void => {
      // Disconnect cleanup already ran for this connection: a late subscription would never be removed.
      if (connections.get(connection.id) !== connection) return
      let subs = subscribers.get(name)
      if (subs === undefined) subscribers.set(name, subs = new Map())
      subs.set(connection.id, connection)
      let mine = countersOf.get(connection.id)
      if (mine === undefined) countersOf.set(connection.id, mine = new Set())
      mine.add(name)
    }

    const stateMessage = (type: "COUNTER_RESPONSE" | "COUNTER_UPDATE", name: string, state: PNCounterState) => ({
      type,
      payload: { name, state: counterToWire(state) }
    })

    /** Merges `incoming` into the stored state; returns the merged state and whether it changed. */
    const merge = (name: string, incoming: PNCounterState): { readonly state: PNCounterState; readonly changed: boolean } => {
      const current = states.get(name) ?? emptyCounterState
      const merged = mergeCounter(current, incoming)
      if (counterStatesEqual(merged, current)) return { state: current, changed: false }
      states.set(name, merged)
      if (storage.durable) {
        writeBehind.submitUnsafe([{ _tag: "Meta", key: COUNTER_META_PREFIX + name, value: JSON.stringify(merged) }])
      }
      return { state: merged, changed: true }
    }

    const fanOut = (name: string, state: PNCounterState): void => {
      const subs = subscribers.get(name)
      if (subs === undefined) return
      const frame = encodeMessage(stateMessage("COUNTER_UPDATE", name, state))
      for (const subscriber of subs.values()) subscriber.sendEncoded(frame)
    }

    const denied = (connection: Connection, name: string): void =>
      connection.send({ type: "ERROR", payload: { code: 403, message: `Access Denied for counter ${name}` } })

    const request = (connection: Connection, payload: CounterRequestPayload): Effect.Effect<void> =>
      Effect.sync(() => {
        const { name } = payload
        if (!security.checkPermission(connection.principal!, COUNTER_META_PREFIX + name, "READ")) return denied(connection, name)
        subscribe(connection, name)
        connection.send(stateMessage("COUNTER_RESPONSE", name, states.get(name) ?? emptyCounterState))
      })

    const sync = (connection: Connection, payload: CounterSyncPayload): Effect.Effect<void> =>
      Effect.suspend(() => {
        const { name } = payload
        if (!security.checkPermission(connection.principal!, COUNTER_META_PREFIX + name, "PUT")) {
          denied(connection, name)
          return Effect.void
        }
        const incoming = normalizeCounterState(payload.state)
        if (incoming === undefined) {
          connection.send({ type: "ERROR", payload: { code: 400, message: "Invalid counter state" } })
          return Effect.void
        }
        const { state, changed } = merge(name, incoming)
        subscribe(connection, name)
        // The sender and every other subscriber get the same COUNTER_UPDATE (protocol.md §3.8).
        fanOut(name, state)
        return changed ? cluster.broadcast({ _tag: "CounterState", name, p: state.p, n: state.n }) : Effect.void
      })

    connections.onDisconnect(20, (connection) =>
      Effect.sync(() => {
        const mine = countersOf.get(connection.id)
        if (mine === undefined) return
        countersOf.delete(connection.id)
        for (const name of mine) {
          const subs = subscribers.get(name)
          if (subs === undefined) continue
          subs.delete(connection.id)
          if (subs.size === 0) subscribers.delete(name)
        }
      })
    )

    // States merged on other nodes: merge here and tell local subscribers when it changed anything
    // (no re-broadcast: every node hears the originator directly).
    yield* cluster.inbound.pipe(
      Stream.runForEach(({ from, message }) =>
        Effect.sync(() => {
          if (message._tag !== "CounterState" || from === cluster.nodeId) return
          const incoming = normalizeCounterState({ p: message.p, n: message.n })
          if (incoming === undefined) return
          const { state, changed } = merge(message.name, incoming)
          if (changed) fanOut(message.name, state)
        })
      ),
      Effect.catchAllCause((cause) => Effect.logWarning("counter inbound stream failed", cause)),
      Effect.annotateLogs({ fiber: "counters-inbound" }),
      Effect.forkScoped
    )

    return {
      request,
      sync,
      /** The current merged state of `name` (tests, admin). */
      state: (name: string): PNCounterState => states.get(name) ?? emptyCounterState,
      subscriberCount: (name: string): number => subscribers.get(name)?.size ?? 0
    } as const
  })
}) {}
