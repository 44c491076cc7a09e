/**
 * A throwaway PostgreSQL cluster for benchmarks (the minimal part of test/support/postgres.ts, which is not
 * compiled into dist/): `initdb` in a temp dir, listening on 127.0.0.1 at a free port, `stop()` shuts it down
 * and removes the dir. As root every PostgreSQL command runs as the `postgres` user (initdb refuses root).
 *
 * Unlike the test cluster it keeps PostgreSQL's durable defaults (fsync, synchronous_commit, full-page
 * writes): PERSISTED figures must price a real commit.
 */
import { execFile, execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)

export interface BenchPostgres {
  /** A URL for a fresh, empty database in the cluster. */
  readonly createDatabase: (name: string) => Promise<string>
  readonly stop: () => Promise<void>
}

/** The directory holding initdb/pg_ctl/createdb, or undefined when PostgreSQL is not installed. */
export const findPostgresBin = (): string | undefined => {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const initdb = path.join(dir, "initdb")
    // Images may link initdb alone into /usr/local/bin: the other tools sit beside the link's target.
    if (dir !== "" && fs.existsSync(initdb)) {
      const real = path.dirname(fs.realpathSync(initdb))
      if (fs.existsSync(path.join(real, "pg_ctl")) && fs.existsSync(path.join(real, "createdb"))) return real
    }
  }
  const root = "/usr/lib/postgresql"
  if (!fs.existsSync(root)) return undefined
  const versions = fs.readdirSync(root)
    .filter((v) => fs.existsSync(path.join(root, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a))
  return versions.length > 0 ? path.join(root, versions[0]!, "bin") : undefined
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0

const pg = async (bin: string, tool: string, args: ReadonlyArray<string>): Promise<string> => {
  const exe = path.join(bin, tool)
  const [cmd, argv] = isRoot() ? ["runuser", ["-u", "postgres", "--", exe, ...args]] : [exe, [...args]]
  try {
    const { stdout } = await run(cmd, argv, { cwd: os.tmpdir(), timeout: 60_000 })
    return stdout
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string }
    throw new Error(`${tool} ${args.join(" ")} failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`)
  }
}

/** Starts the cluster; throws when the binaries are missing or the server does not come up. */
export const startBenchPostgres = async (
  bin: string,
  /** durable: PostgreSQL's defaults (fsync on), so commits cost what they cost in production; tests turn it off. */
  options: { readonly durable: boolean } = { durable: true }
): Promise<BenchPostgres> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-bench-pg-"))
  const data = path.join(dir, "data")
  fs.mkdirSync(data)
  if (isRoot()) execFileSync("chown", ["-R", "postgres:postgres", dir])
  const port = await freePort()
  let started = false
  const stop = async (): Promise<void> => {
    if (started) await pg(bin, "pg_ctl", ["stop", "-D", data, "-m", options.durable ? "fast" : "immediate", "-w"]).catch(() => undefined)
    started = false
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    await pg(bin, "initdb", ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
    const log = path.join(dir, "server.log")
    await pg(bin, "pg_ctl", [
      "start", "-w", "-t", "60", "-D", data, "-l", log,
      "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1${options.durable ? "" : " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"}`
    ]).catch((e: Error) => {
      const tail = fs.existsSync(log) ? fs.readFileSync(log, "utf8").slice(-2000) : ""
      throw new Error(`${e.message}\n${tail}`)
    })
    started = true
  } catch (e) {
    await stop()
    throw e
  }
  const createDatabase = async (name: string): Promise<string> => {
    await pg(bin, "createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", name])
    return `postgresql://postgres@127.0.0.1:${port}/${name}`
  }
  return { createDatabase, stop }
}
