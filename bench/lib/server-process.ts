/**
 * Servers under test run as child processes so they never share the event loop with the load generator:
 * Tessera (`dist/src/programs/cli.js serve`) and the raw ws + msgpackr baseline (`dist/bench/raw-baseline.js`).
 * Both print `PORT=<n>` on stdout once listening.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { DEV_JWT_SECRET } from "./client.js"

/** Repository root, from dist/bench/lib/server-process.js. */
export const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
export const tesseraCliPath = join(repoRoot, "dist/src/programs/cli.js")
export const baselineServerPath = join(repoRoot, "dist/bench/raw-baseline.js")

export interface ServerHandle {
  readonly name: string
  readonly port: number
  /** Process id of the server (e.g. to read /proc/<pid>/status). */
  readonly pid: number
  /** WebSocket URL on 127.0.0.1. */
  readonly url: string
  /** Last lines the server wrote to stderr (for diagnostics). */
  readonly stderrTail: () => string
  readonly stop: () => Promise<void>
}

export interface SpawnOptions {
  readonly name: string
  readonly script: string
  readonly args: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  readonly startupTimeoutMs?: number
  /** Removed after the server stops. */
  readonly tempDir?: string
}

const running = new Set<ChildProcess>()
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    for (const child of running) child.kill("SIGKILL")
    process.exit(130)
  })
}

/** Spawns `node <script> <args>` and resolves once it printed `PORT=<n>`. */
export const spawnServer = (options: SpawnOptions): Promise<ServerHandle> =>
  new Promise<ServerHandle>((resolve, reject) => {
    // BENCH_NODE_ARGS passes extra node flags to the servers (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
    const nodeArgs = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a.length > 0)
    const child = spawn(process.execPath, [...nodeArgs, options.script, ...options.args], {
      cwd: repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    running.add(child)
    const stderrLines: Array<string> = []
    const stderrTail = () => stderrLines.join("").split("\n").slice(-15).join("\n")
    let stdout = ""
    let port: number | undefined
    const exited = new Promise<void>((done) => child.once("exit", () => done()))

    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM")
        const killTimer = setTimeout(() => child.kill("SIGKILL"), 3000)
        await exited
        clearTimeout(killTimer)
      }
      running.delete(child)
      if (options.tempDir !== undefined) rmSync(options.tempDir, { recursive: true, force: true })
    }

    const timeoutMs = options.startupTimeoutMs ?? 15_000
    const timer = setTimeout(() => {
      void stop()
      reject(new Error(`${options.name}: no PORT= line within ${timeoutMs} ms\n${stderrTail()}`))
    }, timeoutMs)

    child.stderr.on("data", (chunk: Buffer) => {
      stderrLines.push(chunk.toString("utf8"))
      if (stderrLines.length > 50) stderrLines.shift()
    })
    child.stdout.on("data", (chunk: Buffer) => {
      if (port !== undefined) return // keep draining the pipe, ignore later output
      stdout += chunk.toString("utf8")
      const match = /^PORT=(\d+)\s*$/m.exec(stdout)
      if (match === null) return
      port = Number(match[1])
      clearTimeout(timer)
      resolve({ name: options.name, port, pid: child.pid ?? 0, url: `ws://127.0.0.1:${port}/ws`, stderrTail, stop })
    })
    child.once("exit", (code, signal) => {
      running.delete(child)
      if (port === undefined) {
        clearTimeout(timer)
        reject(new Error(`${options.name} exited (${code ?? signal}) before listening\n${stderrTail()}`))
      }
    })
  })

/** A server the scenarios can be run against. */
export interface Target {
  readonly name: "tessera" | "baseline"
  /** Why this target cannot run (e.g. not built), or undefined. */
  readonly unavailable: () => string | undefined
  readonly start: () => Promise<ServerHandle>
  /** Pace for opening connections: Tessera admits 100 new connections per second (behavior.md §3.4). */
  readonly connectRatePerSecond: number
}

export type StorageKind = "memory" | "sqlite"

export interface TesseraTargetOptions {
  readonly storage: StorageKind
  readonly extraArgs?: ReadonlyArray<string>
  readonly connectRatePerSecond?: number
}

export const tesseraTarget = (options: TesseraTargetOptions): Target => ({
  name: "tessera",
  unavailable: () => (existsSync(tesseraCliPath) ? undefined : `server not built (${tesseraCliPath} missing)`),
  start: () => {
    // sqlite gets a fresh data directory per run so runs do not see each other's data.
    const tempDir = options.storage === "sqlite" ? mkdtempSync(join(tmpdir(), "tessera-bench-")) : undefined
    return spawnServer({
      name: "tessera",
      script: tesseraCliPath,
      args: ["serve", "--port", "0", "--storage", options.storage, ...(options.extraArgs ?? [])],
      env: {
        NODE_ENV: "development",
        JWT_SECRET: DEV_JWT_SECRET,
        TOPGUN_BIND_ADDR: "127.0.0.1",
        ...(tempDir !== undefined ? { TESSERA_DATA_DIR: tempDir } : {})
      },
      ...(tempDir !== undefined ? { tempDir } : {})
    })
  },
  connectRatePerSecond: options.connectRatePerSecond ?? 90
})

export const baselineTarget = (): Target => ({
  name: "baseline",
  unavailable: () =>
    existsSync(baselineServerPath) ? undefined : `baseline not built (${baselineServerPath} missing)`,
  start: () => spawnServer({ name: "baseline", script: baselineServerPath, args: ["--port", "0"] }),
  connectRatePerSecond: 1000
})
