/**
 * Sandbox worker entry (started by src/sandbox/worker-link.ts). Owns every QuickJS instance; the host may
 * `terminate()` this thread at any moment (hard time limit), so nothing here needs cleanup on exit.
 *
 * Requests arrive on `workerData.port`; each response is posted on the same port, then the shared response
 * counter is bumped and `Atomics.notify`ed so a host blocked in `Atomics.wait` wakes up.
 */
import { readFile } from "node:fs/promises"
import type { MessagePort } from "node:worker_threads"
import { isMainThread, workerData as rawWorkerData } from "node:worker_threads"
import type { QuickJSWASMModule } from "quickjs-emscripten"
import { type Compiled, hostMessage, makeEngine, maxPagesFor, WASM_MIN_PAGES } from "./engine.js"
import { READY_ID, type Request, type Response, type WorkerData } from "./protocol.js"

type QuickJS = typeof import("quickjs-emscripten")

/** The few WebAssembly APIs used here (the project's `lib` has no WebAssembly typings). */
interface WasmApi {
  readonly compile: (bytes: Uint8Array) => Promise<object>
  readonly Memory: new (descriptor: { initial: number; maximum: number }) => object
}
const wasmApi = (globalThis as unknown as { readonly WebAssembly: WasmApi }).WebAssembly

const data = rawWorkerData as WorkerData | null

const reply = (response: Response): void => {
  const port = data!.port as MessagePort
  port.postMessage(response)
  Atomics.add(data!.signal, 0, 1)
  Atomics.notify(data!.signal, 0)
}

const start = async (): Promise<void> => {
  const { limits, quickjsUrl, wasmPath } = data!
  const port = data!.port as MessagePort
  const quickjs = (await import(quickjsUrl)) as QuickJS
  // Compile the WebAssembly module once; every instance reuses it with its own capped memory.
  const wasmModule = await wasmApi.compile(await readFile(wasmPath))
  const maxPages = maxPagesFor(limits.memoryLimitBytes)
  const variant = quickjs.newVariant(quickjs.RELEASE_SYNC, {
    wasmModule: wasmModule as never,
    wasmMemory: (() => new wasmApi.Memory({ initial: WASM_MIN_PAGES, maximum: maxPages })) as never
  })
  const newInstance = (): Promise<QuickJSWASMModule> => quickjs.newQuickJSWASMModule(variant)
  const engine = makeEngine(limits)
  const compiled = new Map<number, Compiled>()
  // Syntax checks parse only (nothing runs), so they share one instance, replaced if it ever fails.
  let validator: QuickJSWASMModule | undefined = await newInstance()

  const handle = async (request: Request): Promise<void> => {
    switch (request.op) {
      case "dispose": {
        const c = compiled.get(request.handle)
        if (c !== undefined) {
          compiled.delete(request.handle)
          engine.dispose(c)
        }
        return
      }
      case "compile": {
        const outcome = engine.compile(await newInstance(), request.kind, request.code)
        if (outcome.ok) {
          compiled.set(request.handle, outcome.value)
          return reply({ id: request.id, ok: true })
        }
        return reply({ id: request.id, ok: false, error: outcome.error })
      }
      case "invoke": {
        const c = compiled.get(request.handle)
        if (c === undefined) {
          return reply({ id: request.id, ok: false, error: { tag: "SandboxRuntime", message: "Sandbox failure: not compiled" } })
        }
        const run = engine.invoke(c, request.args, request.kind)
        const dropped = !run.reusable
        if (dropped) {
          compiled.delete(request.handle)
          engine.dispose(c)
        }
        const o = run.outcome
        return reply(o.ok ? { id: request.id, ok: true, value: o.value, dropped } : { id: request.id, ok: false, error: o.error, dropped })
      }
      case "check": {
        try {
          validator ??= await newInstance()
          const outcome = engine.checkSyntax(validator, request.kind, request.code)
          return reply(outcome.ok ? { id: request.id, ok: true } : { id: request.id, ok: false, error: outcome.error })
        } catch (e) {
          validator = undefined
          return reply({ id: request.id, ok: false, error: { tag: "SandboxSyntax", message: `Sandbox failure: ${hostMessage(e)}` } })
        }
      }
    }
  }

  port.on("message", (request: Request) => {
    handle(request).catch((e: unknown) => {
      if (request.op !== "dispose") {
        reply({ id: request.id, ok: false, error: { tag: "SandboxRuntime", message: `Sandbox failure: ${hostMessage(e)}` } })
      }
    })
  })
  reply({ id: READY_ID, ok: true })
}

// Only as a sandbox worker (importing this module anywhere else does nothing).
if (!isMainThread && typeof data === "object" && data !== null && data.port !== undefined) {
  start().catch((e: unknown) => {
    reply({ id: READY_ID, ok: false, error: { tag: "SandboxRuntime", message: `Sandbox worker failed to start: ${hostMessage(e)}` } })
  })
}
