/**
 * Tessera servers with a storage set up by the scenario (a given data dir, a PostgreSQL database), for
 * scenarios that need more than `tesseraTarget` offers: persistence, cold starts, a server per case.
 */
import { existsSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DEV_JWT_SECRET } from "./client.js"
import { spawnServer, tesseraCliPath, type ServerHandle, type Target } from "./server-process.js"

export type TesseraStorage = "memory" | "sqlite" | "postgres"

export interface TesseraStartOptions {
  readonly storage: TesseraStorage
  /** sqlite: use this directory and keep it; absent → a fresh temporary directory removed on stop. */
  readonly dataDir?: string
  /** postgres: the database to use. */
  readonly databaseUrl?: string
  readonly extraArgs?: ReadonlyArray<string>
  readonly startupTimeoutMs?: number
}

export const tesseraMissing = (): string | undefined =>
  existsSync(tesseraCliPath) ? undefined : `server not built (${tesseraCliPath} missing)`

export const startTessera = (options: TesseraStartOptions): Promise<ServerHandle> => {
  const tempDir = options.storage === "sqlite" && options.dataDir === undefined
    ? mkdtempSync(join(tmpdir(), "tessera-bench-"))
    : undefined
  const dataDir = options.dataDir ?? tempDir
  const args = ["serve", "--port", "0", "--storage", options.storage]
  if (options.storage === "postgres") {
    if (options.databaseUrl === undefined) return Promise.reject(new Error("postgres storage needs a database URL"))
    args.push("--database-url", options.databaseUrl)
  }
  return spawnServer({
    name: "tessera",
    script: tesseraCliPath,
    args: [...args, ...(options.extraArgs ?? [])],
    env: {
      NODE_ENV: "development",
      JWT_SECRET: DEV_JWT_SECRET,
      TOPGUN_BIND_ADDR: "127.0.0.1",
      ...(dataDir !== undefined ? { TESSERA_DATA_DIR: dataDir } : {})
    },
    ...(options.startupTimeoutMs !== undefined ? { startupTimeoutMs: options.startupTimeoutMs } : {}),
    ...(tempDir !== undefined ? { tempDir } : {})
  })
}

/** A `Target` (for the shared write loop) whose server is started by `start`. */
export const customTessera = (start: () => Promise<ServerHandle>): Target => ({
  name: "tessera",
  unavailable: tesseraMissing,
  start,
  connectRatePerSecond: 90
})

/** Resident set size and its peak in MiB, from /proc/<pid>/status (Linux); NaN elsewhere. */
/** CPU seconds (user + system) the process has used so far, from /proc/<pid>/stat; NaN if unreadable. */
export const readCpuSeconds = async (pid: number): Promise<number> => {
  const { readFile } = await import("node:fs/promises")
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8")
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (in clock ticks, 100/s).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return Number.NaN
  }
}

export const readRss = async (pid: number): Promise<{ rssMiB: number; peakMiB: number }> => {
  const { readFile } = await import("node:fs/promises")
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8")
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN)
    return { rssMiB: kib("VmRSS") / 1024, peakMiB: kib("VmHWM") / 1024 }
  } catch {
    return { rssMiB: Number.NaN, peakMiB: Number.NaN }
  }
}
