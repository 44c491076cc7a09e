import { Effect } from "effect"
import type { Timestamp } from "../crdt/types.js"
import type { Principal } from "./Auth.js"

/** Why a connection is closed; written to the socket as the close frame. */
export interface CloseRequest {
  readonly code: number
  readonly reason: string
}

/**
 * One live client connection. `send` enqueues to the connection's single outbound FIFO (never writes to
 * the socket directly), so every message — replies, errors, notifications from other connections —
 * keeps per-connection order.
 */
export interface Connection {
  readonly id: string
  readonly remoteAddress: string
  principal: Principal | undefined
  /** HLC of the client's last activity (GC consensus, protocol.md §4.12). */
  lastActiveHlc: Timestamp
  /** Effect-clock millis of the last inbound frame (idle eviction). */
  lastInboundAt: number
  readonly openedAt: number
  /** Enqueue a message object; it is encoded once here. */
  send(message: object): void
  /** Enqueue an already encoded frame (fan-out encodes once for many recipients). */
  sendEncoded(frame: Uint8Array): void
  /** Flush what is queued, then close with the given code. Idempotent. */
  close(request: CloseRequest): void
  readonly isOpen: () => boolean
}

type DisconnectHandler = (connection: Connection) => Effect.Effect<void>

/**
 * Registry of live connections plus the per-map set of connections with a live query
 * (the SERVER_EVENT recipients of protocol.md §3.2.4).
 */
export class Connections extends Effect.Service<Connections>()("tessera/Connections", {
  sync: () => {
    const byId = new Map<string, Connection>()
    const disconnectHandlers: Array<{ readonly order: number; readonly handler: DisconnectHandler }> = []
    /** mapName → connection id → number of live queries on that map. */
    const mapSubscribers = new Map<string, Map<string, number>>()

    const addMapSubscriber = (mapName: string, connectionId: string): void => {
      let subs = mapSubscribers.get(mapName)
      if (subs === undefined) mapSubscribers.set(mapName, subs = new Map())
      subs.set(connectionId, (subs.get(connectionId) ?? 0) + 1)
    }
    const removeMapSubscriber = (mapName: string, connectionId: string): void => {
      const subs = mapSubscribers.get(mapName)
      if (subs === undefined) return
      const n = (subs.get(connectionId) ?? 0) - 1
      if (n > 0) subs.set(connectionId, n)
      else subs.delete(connectionId)
      if (subs.size === 0) mapSubscribers.delete(mapName)
    }

    return {
      register: (connection: Connection): void => {
        byId.set(connection.id, connection)
      },
      get: (id: string): Connection | undefined => byId.get(id),
      all: (): IterableIterator<Connection> => byId.values(),
      count: (): number => byId.size,
      /** Subsystems register their per-connection cleanup here; lower `order` runs first. */
      onDisconnect: (order: number, handler: DisconnectHandler): void => {
        disconnectHandlers.push({ order, handler })
        disconnectHandlers.sort((a, b) => a.order - b.order)
      },
      /** Runs every cleanup handler (errors are logged, never stop the others), then forgets the connection. */
      unregister: (connection: Connection): Effect.Effect<void> =>
        Effect.gen(function* () {
          for (const { handler } of disconnectHandlers) {
            yield* handler(connection).pipe(
              Effect.catchAllCause((cause) => Effect.logWarning("disconnect cleanup failed", cause))
            )
          }
          byId.delete(connection.id)
        }),
      addMapSubscriber,
      removeMapSubscriber,
      /** Connection ids with at least one live query on the map. */
      mapSubscribers: (mapName: string): ReadonlyMap<string, number> | undefined => mapSubscribers.get(mapName)
    } as const
  }
}) {}
