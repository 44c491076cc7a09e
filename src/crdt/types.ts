/**
 * Plain data types shared by the CRDTs, the protocol and storage (protocol.md §3.0).
 * Readonly plain objects: they are created once per write and shared, never mutated.
 */
export interface Timestamp {
  readonly millis: number
  readonly counter: number
  readonly nodeId: string
}

/** LWW record; `value: null` is a tombstone. */
export interface LWWRecord<V = unknown> {
  readonly value: V | null
  readonly timestamp: Timestamp
  readonly ttlMs?: number
}

/** OR-map record; `tag` is opaque (clients use the string form of `timestamp`). */
export interface ORMapRecord<V = unknown> {
  readonly value: V
  readonly timestamp: Timestamp
  readonly tag: string
  readonly ttlMs?: number
}

export type MapType = "LWW" | "OR"

export type WriteConcern = "FIRE_AND_FORGET" | "MEMORY" | "APPLIED" | "REPLICATED" | "PERSISTED"

export const WRITE_CONCERN_ORDER: Readonly<Record<WriteConcern, number>> = {
  FIRE_AND_FORGET: 0,
  MEMORY: 1,
  APPLIED: 2,
  REPLICATED: 3,
  PERSISTED: 4
}
