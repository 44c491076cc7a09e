/**
 * A THROWAWAY PostgreSQL cluster for tests: `initdb` in a temp dir, listening on 127.0.0.1 at a free
 * port (plus a unix socket in the same dir), one database, `stop()` kills it and removes the dir.
 *
 * Binaries: `initdb` on PATH, else the newest /usr/lib/postgresql/<v>/bin (Debian). initdb refuses to run
 * as root, so as root every PostgreSQL command runs as the `postgres` user (runuser) in a dir it owns.
 * `findPostgresBin()` returns undefined only when no binaries exist at all: tests then skip with a message.
 */
import { execFile, execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)

export interface TestPostgres {
  readonly url: string
  /** A URL for another, fresh database in the same cluster. */
  readonly createDatabase: (name: string) => Promise<string>
  readonly stop: () => Promise<void>
}

export const NO_POSTGRES_MESSAGE =
  "PostgreSQL binaries not found (no initdb on PATH or in /usr/lib/postgresql/*/bin): skipping PostgreSQL tests. " +
  "Install them with .ci/postgres.sh"

export const findPostgresBin = (): string | undefined => {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const initdb = path.join(dir, "initdb")
    // Resolve links (images may link initdb alone into /usr/local/bin): the other tools sit beside the target.
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

/** Runs a PostgreSQL binary, as the `postgres` user when we are root. */
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

export const startTestPostgres = async (): Promise<TestPostgres> => {
  const bin = findPostgresBin()
  if (bin === undefined) throw new Error(NO_POSTGRES_MESSAGE)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-pg-"))
  const data = path.join(dir, "data")
  fs.mkdirSync(data)
  if (isRoot()) execFileSync("chown", ["-R", "postgres:postgres", dir])
  const port = await freePort()
  await pg(bin, "initdb", ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
  const log = path.join(dir, "server.log")
  await pg(bin, "pg_ctl", [
    "start", "-w", "-t", "60", "-D", data, "-l", log,
    "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`
  ]).catch((e: Error) => {
    const tail = fs.existsSync(log) ? fs.readFileSync(log, "utf8").slice(-2000) : ""
    throw new Error(`${e.message}\n${tail}`)
  })
  const createDatabase = async (name: string): Promise<string> => {
    await pg(bin, "createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", name])
    return `postgresql://postgres@127.0.0.1:${port}/${name}`
  }
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await pg(bin, "pg_ctl", ["stop", "-D", data, "-m", "immediate", "-w"]).catch(() => undefined)
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    const url = await createDatabase("tessera")
    return { url, createDatabase, stop }
  } catch (e) {
    await stop()
    throw e
  }
}
