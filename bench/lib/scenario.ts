/** What every scenario returns, and small shared helpers. */
import type { BenchClient, ServerError } from "./client.js"

export type Outcome<R> = { readonly ok: true; readonly result: R } | { readonly ok: false; readonly reason: string }

export const unavailable = <R>(reason: string): Outcome<R> => ({ ok: false, reason })

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves true once `predicate` holds (polled every `stepMs`), false after `timeoutMs`. */
export const waitUntil = async (predicate: () => boolean, timeoutMs: number, stepMs = 10): Promise<boolean> => {
  const deadline = performance.now() + timeoutMs
  while (!predicate()) {
    if (performance.now() >= deadline) return false
    await sleep(stepMs)
  }
  return true
}

/** "n/a (server answered 501)" style reason from the first ERROR frame seen by any of `clients`. */
export const errorReason = (clients: ReadonlyArray<BenchClient>): string | undefined => {
  for (const c of clients) {
    const error: ServerError | undefined = c.errors[0]
    if (error !== undefined) return `server answered ${error.code}${error.message ? `: ${error.message}` : ""}`
  }
  return undefined
}

/** Counts ERROR frames by code across clients, e.g. "429×3, 500×1". */
export const errorCounts = (clients: ReadonlyArray<BenchClient>): string => {
  const counts = new Map<number, number>()
  for (const c of clients) for (const e of c.errors) counts.set(e.code, (counts.get(e.code) ?? 0) + 1)
  return [...counts].map(([code, n]) => `${code}×${n}`).join(", ")
}

export const describeError = (error: unknown): string =>
  (error instanceof Error ? error.message : String(error)).split("\n")[0]!

/**
 * Sends `message` and resolves with the payload of the first `replyType` reply that `matches` (default:
 * any); rejects on an ERROR from the server or after `timeoutMs`.
 */
export const ask = (
  client: BenchClient,
  message: object,
  replyType: string,
  timeoutMs: number,
  matches: (payload: any) => boolean = () => true
) =>
  new Promise<any>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${replyType} within ${timeoutMs} ms`)), timeoutMs)
    client.onError((e) => {
      clearTimeout(timer)
      reject(new Error(`server answered ERROR ${e.code} ${e.message}`))
    })
    client.on(replyType, (reply) => {
      if (!matches(reply.payload)) return
      clearTimeout(timer)
      client.off(replyType)
      client.onError(undefined)
      resolve(reply.payload)
    })
    client.send(message)
  })
