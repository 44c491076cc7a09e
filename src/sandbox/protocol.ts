/**
 * Messages between the sandbox host (src/layers/Sandbox.ts, main thread) and the sandbox worker
 * (src/sandbox/worker.ts). Plain data only: they cross a MessagePort by structured clone, and the worker
 * bundle must not depend on `effect`, so errors travel as `{ tag, message }` and become tagged errors on the host.
 */
export type CodeKind = "processor" | "resolver"

export type SandboxErrorTag = "SandboxTimeout" | "SandboxMemory" | "SandboxSyntax" | "SandboxRuntime" | "SandboxForbidden"

export interface WireError {
  readonly tag: SandboxErrorTag
  readonly message: string
}

/** Limits the worker enforces itself (the host adds the hard wall-clock deadline on top). */
export interface EngineLimits {
  readonly memoryLimitBytes: number
  readonly timeLimitMs: number
  readonly maxStackBytes: number
}

export interface WorkerData {
  /** Requests arrive and responses leave on this port. */
  readonly port: unknown
  /** `Int32Array` over a SharedArrayBuffer; slot 0 counts responses posted (the host `Atomics.wait`s on it). */
  readonly signal: Int32Array
  readonly limits: EngineLimits
  /** Absolute URL of the `quickjs-emscripten` entry (the worker may run from a data: URL, without resolution). */
  readonly quickjsUrl: string
  /** Absolute path of the QuickJS release-sync WASM file. */
  readonly wasmPath: string
}

export type Request =
  | { readonly op: "compile"; readonly id: number; readonly handle: number; readonly kind: CodeKind; readonly code: string }
  | {
    readonly op: "invoke"
    readonly id: number
    readonly handle: number
    readonly kind: CodeKind
    readonly args: ReadonlyArray<string | undefined>
  }
  | { readonly op: "check"; readonly id: number; readonly kind: CodeKind; readonly code: string }
  /** Fire-and-forget: no response. */
  | { readonly op: "dispose"; readonly handle: number }

/** id 0 is the worker's "ready" message. */
export const READY_ID = 0

/**
 * For `invoke`, `value` is the function's JSON text, or 0 for "did not return an object"; when the context could
 * not be kept (limit hit, globals not resettable, instance aborted) the worker has already disposed it and says
 * so with `dropped`.
 */
export type Response =
  | { readonly id: number; readonly ok: true; readonly value?: string | 0; readonly dropped?: boolean }
  | { readonly id: number; readonly ok: false; readonly error: WireError; readonly dropped?: boolean }
