/**
 * Thread side of the SQLite writer (started by sqlite-writer.ts): its own @libsql/client connection to the
 * store, which runs local files on the calling thread — this one, so a commit never blocks the server's
 * event loop. Requests are answered strictly in arrival order, one at a time: a write batch is one
 * transaction; a query returns its rows as plain arrays (chunked map loads).
 *
 * Loaded from a data: URL when running from sources, so it imports only `node:` builtins, its own modules
 * (bundled) and @libsql/client from the absolute URL in `workerData`.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads"
import type { StorageMutation } from "../Storage.js"
import { sqliteBatchStatements } from "./sqlite-batch.js"

export interface SqliteWorkerData {
  /** `file:` URL of the database (migrated already). */
  readonly url: string
  /** `file:` URL of @libsql/client's entry. */
  readonly libsqlUrl: string
  /** PRAGMAs of every connection to the store (WAL, synchronous, busy timeout). */
  readonly pragmas: ReadonlyArray<string>
}

export type SqlValue = string | number | null

export type SqliteRequest =
  /** The first slices of a large batch; the `write` with the same id brings the last one and commits. */
  | { readonly id: number; readonly op: "append"; readonly batch: ReadonlyArray<StorageMutation> }
  | { readonly id: number; readonly op: "write"; readonly batch: ReadonlyArray<StorageMutation> }
  /** Drops the slices appended under the id (a later slice could not be sent); no answer. */
  | { readonly id: number; readonly op: "discard" }
  | { readonly id: number; readonly op: "query"; readonly sql: string; readonly args: ReadonlyArray<SqlValue> }
  /** Closes the connection after every earlier request, answers, then the thread ends. */
  | { readonly id: number; readonly op: "close" }

/** Requests use ids from 1; id 0 answers the start (the connection is open, or why it is not). */
export type SqliteResponse =
  | { readonly id: number; readonly ok: true; readonly rows?: ReadonlyArray<ReadonlyArray<unknown>> }
  | { readonly id: number; readonly ok: false; readonly message: string; readonly code?: string }

const READY_ID = 0

/** The part of @libsql/client this thread uses. */
interface Client {
  readonly execute: (stmt: string | { sql: string; args: Array<SqlValue> }) => Promise<{ rows: ArrayLike<ArrayLike<unknown>> }>
  readonly batch: (stmts: Array<{ sql: string; args: Array<SqlValue> }>, mode: "write") => Promise<unknown>
  readonly close: () => void
}

const failure = (id: number, e: unknown): SqliteResponse => {
  const inner = (e as { cause?: unknown }).cause
  const message = e instanceof Error
    ? (inner instanceof Error && !e.message.includes(inner.message) ? `${e.message}: ${inner.message}` : e.message)
    : String(e)
  const code = (e as { code?: unknown }).code
  return typeof code === "string" ? { id, ok: false, message, code } : { id, ok: false, message }
}

const main = async (): Promise<void> => {
  const port = parentPort!
  const data = workerData as SqliteWorkerData
  let client: Client
  try {
    const mod = (await import(data.libsqlUrl)) as { createClient?: unknown; default?: { createClient?: unknown } }
    const createClient = (mod.createClient ?? mod.default?.createClient) as (config: object) => Client
    client = createClient({ url: data.url, intMode: "number" })
    for (const pragma of data.pragmas) await client.execute(pragma)
  } catch (e) {
    port.postMessage(failure(READY_ID, e))
    return
  }

  const slices = new Map<number, Array<ReadonlyArray<StorageMutation>>>()
  const handle = async (request: SqliteRequest): Promise<SqliteResponse | undefined> => {
    switch (request.op) {
      case "append": {
        const earlier = slices.get(request.id)
        if (earlier === undefined) slices.set(request.id, [request.batch])
        else earlier.push(request.batch)
        return undefined
      }
      case "discard":
        slices.delete(request.id)
        return undefined
      case "write": {
        const earlier = slices.get(request.id)
        slices.delete(request.id)
        const batch = earlier === undefined ? request.batch : [...earlier, request.batch].flat()
        await client.batch(sqliteBatchStatements(batch), "write")
        return { id: request.id, ok: true }
      }
      case "query": {
        const rs = await client.execute({ sql: request.sql, args: request.args as Array<SqlValue> })
        return { id: request.id, ok: true, rows: Array.from(rs.rows, (row) => Array.from(row)) }
      }
      case "close":
        client.close()
        return { id: request.id, ok: true }
    }
  }

  // One request at a time, in arrival order, whatever the client does between its awaits.
  let queue: Promise<void> = Promise.resolve()
  port.on("message", (request: SqliteRequest) => {
    queue = queue.then(async () => {
      let response: SqliteResponse | undefined
      try {
        response = await handle(request)
      } catch (e) {
        response = failure(request.id, e)
      }
      if (response !== undefined) port.postMessage(response)
      if (request.op === "close") port.close()
    })
  })
  port.postMessage({ id: READY_ID, ok: true } satisfies SqliteResponse)
}

// Only as a worker: importing this module elsewhere (types) must not do anything.
if (!isMainThread && parentPort !== null) void main()
