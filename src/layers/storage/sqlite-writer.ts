/**
 * Main-thread side of the SQLite worker (sqlite-worker.ts): posts requests (the StorageMutation objects as
 * plain data, structured-cloned at a few µs per mutation) and resolves each with the worker's answer — never
 * blocking the event loop while SQLite works.
 *
 * A worker that dies (crash, out of memory, terminated) fails its pending requests; the next request starts
 * a fresh worker, so the write-behind's retry lands on a working connection. A transaction the dead worker
 * had not committed is rolled back by SQLite (WAL); one it committed just before dying is applied again by
 * the retry, which the merge-aware statements make harmless.
 */
import { type Worker } from "node:worker_threads"
import type { StorageMutation } from "../Storage.js"
import type { SqliteRequest, SqliteResponse, SqliteWorkerData, SqlValue } from "./sqlite-worker.js"
import { packageUrl, startWorker } from "../worker-start.js"

/** A request that failed in (or with) the worker; `code` is SQLite's (e.g. SQLITE_BUSY) when there is one. */
export class SqliteWorkerError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message)
    this.name = "SqliteWorkerError"
  }
}

type Build = (id: number) => SqliteRequest

interface Pending {
  readonly resolve: (response: SqliteResponse & { ok: true }) => void
  readonly reject: (error: Error) => void
}

/** One live worker thread and the requests it still owes an answer to. */
class Thread {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private dead: Error | undefined

  constructor(readonly worker: Worker, private readonly onDeath: () => void) {
    worker.on("message", (response: SqliteResponse) => this.answer(response))
    worker.on("error", (e: Error) => this.die(new SqliteWorkerError(`the SQLite worker failed: ${e.message}`)))
    worker.on("exit", (code) => this.die(new SqliteWorkerError(`the SQLite worker stopped (exit code ${code})`)))
    worker.unref() // referenced only while a request is pending: an idle store never keeps the process alive
  }

  get isDead(): boolean {
    return this.dead !== undefined
  }

  /** The answer with id 0: the connection is open. */
  ready(): Promise<SqliteResponse & { ok: true }> {
    return this.expect(0)
  }

  call(build: Build): Promise<SqliteResponse & { ok: true }> {
    const id = this.nextId++
    const answer = this.expect(id)
    this.post(id, build(id))
    return answer
  }

  /**
   * A request posted as several messages by `send` (which may yield between them); the answer is the one to
   * the last message's id. Messages after the thread died are dropped: the answer is already a failure.
   */
  callInSlices(send: (id: number, post: (request: SqliteRequest) => void) => Promise<void>): Promise<SqliteResponse & { ok: true }> {
    const id = this.nextId++
    const answer = this.expect(id)
    send(id, (request) => this.post(id, request)).catch((e: unknown) =>
      this.answer({ id, ok: false, message: `Cannot send the request to the SQLite worker: ${String(e)}` })
    )
    return answer
  }

  /** Terminates the thread; pending requests fail with `reason`. */
  kill(reason: Error): Promise<void> {
    this.die(reason)
    return this.worker.terminate().then(() => undefined, () => undefined)
  }

  private expect(id: number): Promise<SqliteResponse & { ok: true }> {
    if (this.dead !== undefined) return Promise.reject(this.dead)
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref()
      this.pending.set(id, { resolve, reject })
    })
  }

  /** A message that cannot be cloned (a function in a value, say) fails its request instead of hanging it. */
  private post(id: number, request: SqliteRequest): void {
    if (this.dead !== undefined || !this.pending.has(id)) return // failed already: nothing more of it is sent
    try {
      this.worker.postMessage(request)
    } catch (e) {
      if (request.op === "append") this.worker.postMessage({ id, op: "discard" } satisfies SqliteRequest)
      this.answer({ id, ok: false, message: `Cannot send the request to the SQLite worker: ${(e as Error).message}` })
    }
  }

  private answer(response: SqliteResponse): void {
    const p = this.pending.get(response.id)
    if (p === undefined) return
    this.pending.delete(response.id)
    if (this.pending.size === 0) this.worker.unref()
    if (response.ok) p.resolve(response)
    else p.reject(new SqliteWorkerError(response.message, response.code))
  }

  private die(reason: Error): void {
    if (this.dead !== undefined) return
    this.dead = reason
    const pending = [...this.pending.values()]
    this.pending.clear()
    this.worker.unref()
    for (const p of pending) p.reject(reason)
    this.onDeath()
  }
}

/** Mutations per posted message: ~1 ms of structured cloning. */
const SLICE = 1000

const WORKER_ENTRY = new URL("./sqlite-worker.ts", import.meta.url)
/** Time the worker gets to finish its requests and close the connection at shutdown before it is terminated. */
const CLOSE_TIMEOUT_MS = 30_000

/**
 * The SQLite worker of one store. Requests restart a dead worker on demand.
 */
export class SqliteWorkerClient {
  private thread: Promise<Thread> | undefined
  private closed = false
  /** Requests not answered yet: closing waits for them (a sliced write may still be posting its slices). */
  private readonly inflight = new Set<Promise<unknown>>()

  private constructor(private readonly data: SqliteWorkerData) {}

  /**
   * Starts the worker in the background: the first request waits for it (a worker that cannot start fails
   * that request, and the next one tries again). Server startup need not wait for the worker's own start.
   */
  static open(opts: { readonly url: string; readonly pragmas: ReadonlyArray<string> }): SqliteWorkerClient {
    const client = new SqliteWorkerClient({ ...opts, libsqlUrl: packageUrl("@libsql/client", import.meta.url) })
    client.live().catch(() => undefined)
    return client
  }

  /** Starts the worker and waits until its connection is open. */
  static async start(opts: { readonly url: string; readonly pragmas: ReadonlyArray<string> }): Promise<SqliteWorkerClient> {
    const client = SqliteWorkerClient.open(opts)
    await client.live()
    return client
  }

  /**
   * Applies `batch` in one transaction, in order. A large batch is posted in slices with a macrotask turn
   * between them, so cloning it never holds the event loop for long; the worker commits after the last.
   */
  write(batch: ReadonlyArray<StorageMutation>): Promise<void> {
    return this.track(this.writeNow(batch))
  }

  /** Runs one statement; its rows as arrays of column values. */
  query(sql: string, args: ReadonlyArray<SqlValue>): Promise<ReadonlyArray<ReadonlyArray<unknown>>> {
    return this.track(this.live().then((thread) => thread.call((id) => ({ id, op: "query", sql, args })))).then((r) => r.rows ?? [])
  }

  private async writeNow(batch: ReadonlyArray<StorageMutation>): Promise<void> {
    const thread = await this.live()
    if (batch.length <= SLICE) {
      await thread.call((id) => ({ id, op: "write", batch }))
      return
    }
    await thread.callInSlices(async (id, post) => {
      for (let from = 0; from + SLICE < batch.length; from += SLICE) {
        post({ id, op: "append", batch: batch.slice(from, from + SLICE) })
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
      const last = Math.floor((batch.length - 1) / SLICE) * SLICE
      post({ id, op: "write", batch: batch.slice(last) })
    })
  }

  /** Kills the current worker as a crash would (tests): its pending requests fail, the next one restarts it. */
  async crashForTest(): Promise<void> {
    const thread = this.thread === undefined ? undefined : await this.thread.catch(() => undefined)
    await thread?.kill(new SqliteWorkerError("the SQLite worker was killed"))
  }

  /** After every request made before: closes the connection and ends the thread. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.allSettled([...this.inflight])
    const thread = this.thread === undefined ? undefined : await this.thread.catch(() => undefined)
    if (thread === undefined || thread.isDead) return
    let timer: ReturnType<typeof setTimeout> | undefined
    const overdue = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)
    })
    await Promise.race([thread.call((id) => ({ id, op: "close" })).catch(() => undefined), overdue])
    clearTimeout(timer)
    await thread.kill(new SqliteWorkerError("the SQLite store is closed"))
  }

  private track<A>(request: Promise<A>): Promise<A> {
    this.inflight.add(request)
    const done = () => this.inflight.delete(request)
    request.then(done, done)
    return request
  }

  private live(): Promise<Thread> {
    if (this.closed) return Promise.reject(new SqliteWorkerError("the SQLite store is closed"))
    return (this.thread ??= this.spawn())
  }

  private spawn(): Promise<Thread> {
    const started: Promise<Thread> = (async () => {
      const worker = await startWorker(WORKER_ENTRY, { workerData: this.data })
      // Once dead, a later request starts a fresh worker (unless this one was already replaced).
      const thread = new Thread(worker, () => this.forget(started))
      try {
        await thread.ready()
      } catch (e) {
        await thread.kill(e as Error)
        throw e
      }
      return thread
    })()
    started.catch(() => this.forget(started))
    return started
  }

  private forget(thread: Promise<Thread>): void {
    if (this.thread === thread) this.thread = undefined
  }
}
