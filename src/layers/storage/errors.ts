import { Data } from "effect"

/**
 * Any storage failure: unreachable or corrupt store at startup, a failed transaction, a failed load.
 * Kept in its own module so the adapters can use it without importing `Storage.ts` at runtime
 * (`Storage.ts` imports the adapters for its static layers).
 */
export class StorageError extends Data.TaggedError("StorageError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** The most useful one-line text of an unknown failure (driver errors nest the real reason). */
export const describeCause = (cause: unknown): string => {
  if (cause instanceof Error) {
    const inner = (cause as { cause?: unknown }).cause
    const own = cause.message !== "" ? cause.message : cause.name
    if (inner !== undefined && inner !== cause) {
      const innerText = describeCause(inner)
      if (innerText !== "" && !own.includes(innerText)) return `${own}: ${innerText}`
    }
    return own
  }
  if (typeof cause === "object" && cause !== null && "message" in cause) return String((cause as { message: unknown }).message)
  return String(cause)
}

/** Wraps a failure as a StorageError whose message says what was attempted and why it failed. */
export const storageError = (what: string) => (cause: unknown): StorageError =>
  new StorageError({ message: `${what}: ${describeCause(cause)}`, cause })
