import type { Timestamp } from "../crdt/types.js"

/** What an entry processor hands back (protocol.md §4.13). `value: undefined` means "delete / leave absent". */
export interface ProcessorOutput {
  readonly value: unknown
  readonly result: unknown
}

/** Argument of a conflict resolver: `function resolve(context)` (protocol.md §4.13). */
export interface ResolverContext {
  readonly mapName: string
  readonly key: string
  /** Current visible value; absent (or null) when there is no live local value. */
  readonly localValue?: unknown
  /** `null` for a deletion. */
  readonly remoteValue: unknown
  /** Absent when there is no local record at all (not even a tombstone). */
  readonly localTimestamp?: Timestamp
  readonly remoteTimestamp: Timestamp
  /** The writer's connection id. */
  readonly remoteNodeId?: string
  /** The writer's principal claims (`{ userId?, roles, ... }`) when the write came from a client. */
  readonly auth?: Readonly<Record<string, unknown>>
}

export type ResolverResult =
  | { readonly action: "accept"; readonly value: unknown }
  | { readonly action: "merge"; readonly value: unknown }
  | { readonly action: "reject"; readonly reason: string }
  | { readonly action: "local" }
