/**
 * Host side of the sandbox worker: starts it, calls it synchronously (post, then `Atomics.wait` with a hard
 * deadline) or asynchronously, and terminates it when a call overruns its hard deadline. `terminate()` stops the
 * thread even in the middle of a native like `Array.prototype.sort`, which the QuickJS interrupt handler cannot.
 *
 * Every request is answered in order of arrival by the single worker thread (an async compile may interleave
 * with later requests only at its `await` of a new WASM instance). A synchronous call therefore waits for the
 * asynchronous requests sent before it; its deadline is extended by theirs.
 */
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads"
import { type EngineLimits, READY_ID, type Request, type Response, type WorkerData } from "./protocol.js"
import { resolveWorkerScript } from "../layers/worker-start.js"

/** Why a worker is gone: overran a hard deadline, ran out of (V8) heap, crashed, or was shut down. */
export type Death = "timeout" | "oom" | "crash" | "closed"

/** Distributes a request id into a request (ids are assigned by the link). */
type Build = (id: number) => Request

interface Pending {
  readonly resolve: (response: Response | undefined) => void
  readonly deadline: number
  readonly timer: ReturnType<typeof setTimeout>
}

/** V8 heap of the worker: JSON in/out and QuickJS bookkeeping. WASM memories are outside it (capped per instance). */
const WORKER_RESOURCE_LIMITS = { maxOldGenerationSizeMb: 512, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 }
const STARTUP_TIMEOUT_MS = 30_000

export class WorkerLink {
  private nextId = READY_ID + 1
  private readonly pending = new Map<number, Pending>()
  private alive = true
  private deathCause: Death | undefined

  constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly signal: Int32Array,
    private readonly onDeath: (link: WorkerLink) => void
  ) {
    worker.on("error", (e: unknown) => {
      this.kill((e as { code?: unknown }).code === "ERR_WORKER_OUT_OF_MEMORY" ? "oom" : "crash")
    })
    worker.on("exit", () => this.kill("crash"))
    port.on("message", (response: Response) => this.dispatch(response))
    // Neither keeps the process alive; a pending asynchronous call does, through its timer.
    port.unref()
    worker.unref()
  }

  get isAlive(): boolean {
    return this.alive
  }

  get death(): Death | undefined {
    return this.deathCause
  }

  /** Fire-and-forget request (no response). */
  post(request: Request): void {
    if (this.alive) this.port.postMessage(request)
  }

  /**
   * Blocks the calling thread until the response, at most `hardMs` after the asynchronous requests in flight
   * are due. `undefined` means the worker is gone (killed here on overrun, or earlier).
   */
  callSync(build: Build, hardMs: number): Response | undefined {
    if (!this.alive) return undefined
    const id = this.nextId++
    const deadline = Math.max(performance.now(), this.inflightDeadline()) + hardMs
    this.port.postMessage(build(id))
    for (;;) {
      // Read the counter before polling the port: a response posted after the poll changes it, so the wait
      // below returns at once instead of missing the notify.
      const seen = Atomics.load(this.signal, 0)
      const received = receiveMessageOnPort(this.port)
      if (received !== undefined) {
        const response = received.message as Response
        if (response.id === id) return response
        this.dispatch(response)
        continue
      }
      const remaining = deadline - performance.now()
      if (remaining <= 0) {
        this.kill("timeout")
        return undefined
      }
      Atomics.wait(this.signal, 0, seen, remaining)
    }
  }

  /** Like `callSync` without blocking: the response, or `undefined` if the worker is gone (killed on overrun). */
  callAsync(build: Build, hardMs: number): Promise<Response | undefined> {
    return this.expect(this.alive ? this.nextId++ : -1, hardMs, build)
  }

  /** Terminates the worker (idempotent); pending calls answer `undefined`. */
  kill(cause: Death): void {
    if (!this.alive) return
    this.alive = false
    this.deathCause = cause
    void this.worker.terminate().catch(() => undefined)
    this.port.close()
    const pending = [...this.pending.values()]
    this.pending.clear()
    for (const p of pending) {
      clearTimeout(p.timer)
      p.resolve(undefined)
    }
    this.onDeath(this)
  }

  /** Waits for the worker's "ready" message. */
  ready(): Promise<Response | undefined> {
    return this.expect(READY_ID, STARTUP_TIMEOUT_MS, undefined)
  }

  private expect(id: number, hardMs: number, build: Build | undefined): Promise<Response | undefined> {
    if (!this.alive) return Promise.resolve(undefined)
    return new Promise((resolve) => {
      const now = performance.now()
      const deadline = Math.max(now, this.inflightDeadline()) + hardMs
      const timer = setTimeout(() => this.kill("timeout"), deadline - now)
      this.pending.set(id, { resolve, deadline, timer })
      if (build === undefined) return
      try {
        this.port.postMessage(build(id))
      } catch (e) {
        this.pending.delete(id)
        clearTimeout(timer)
        throw e
      }
    })
  }

  private dispatch(response: Response): void {
    const p = this.pending.get(response.id)
    if (p === undefined) return // answer to a call that already gave up
    this.pending.delete(response.id)
    clearTimeout(p.timer)
    p.resolve(response)
  }

  private inflightDeadline(): number {
    let latest = 0
    for (const p of this.pending.values()) if (p.deadline > latest) latest = p.deadline
    return latest
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Starting the worker

/** Starts a worker and waits until it has loaded QuickJS. Rejects if it cannot start. */
export const startWorker = async (limits: EngineLimits, onDeath: (link: WorkerLink) => void): Promise<WorkerLink> => {
  // Compiled: the worker.js sibling; from TypeScript sources (vitest): worker.ts bundled in memory.
  const script = await resolveWorkerScript(new URL("./worker.ts", import.meta.url))
  const require = createRequire(import.meta.url)
  const { port1, port2 } = new MessageChannel()
  const signal = new Int32Array(new SharedArrayBuffer(4))
  const workerData: WorkerData = {
    port: port2,
    signal,
    limits,
    quickjsUrl: pathToFileURL(require.resolve("quickjs-emscripten")).href,
    wasmPath: require.resolve("@jitl/quickjs-wasmfile-release-sync/wasm")
  }
  const worker = new Worker(script, {
    workerData,
    transferList: [port2],
    resourceLimits: WORKER_RESOURCE_LIMITS,
    stdout: false,
    stderr: false
  })
  const link = new WorkerLink(worker, port1, signal, onDeath)
  const ready = await link.ready()
  if (ready === undefined || !ready.ok) {
    link.kill("closed")
    throw new Error(ready === undefined ? "Sandbox worker did not start" : ready.error.message)
  }
  return link
}
