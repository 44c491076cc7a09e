import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"
import { CLI_PATH } from "../support/process.js"

const run = promisify(execFile)

/** Runs the built CLI and returns its exit code and output (never throws on a non-zero exit). */
const cli = async (args: string[], env: Record<string, string> = {}) => {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI_PATH, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, timeout: 30_000 })
    return { code: 0, stdout, stderr }
  } catch (e: any) {
    return { code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }
  }
}

describe("configuration", () => {
  it("rejects invalid settings at startup with a message naming the setting", async () => {
    const port = await cli(["serve", "--port", "70000", "--storage", "memory"])
    expect(port.code).toBe(2)
    expect(port.stderr).toContain("invalid configuration (port)")
    const node = await cli(["serve", "--node-id", "Bad:Id", "--storage", "memory"])
    expect(node.code).toBe(2)
    expect(node.stderr).toContain("(node-id)")
    const pg = await cli(["serve", "--storage", "postgres"])
    expect(pg.stderr).toContain("(database-url)")
    const size = await cli(["serve", "--storage", "memory"], { TESSERA_MAX_MESSAGE_BYTES: "1000" })
    expect(size.stderr).toContain("(max-message-bytes)")
  }, 60_000)

  it("refuses to start in production without a real JWT secret", async () => {
    const r = await cli(["serve", "--port", "0", "--storage", "memory"], { NODE_ENV: "production" })
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain("JWT_SECRET")
    const short = await cli(["serve", "--port", "0", "--storage", "memory"], { NODE_ENV: "production", JWT_SECRET: "too-short" })
    expect(short.stderr).toContain("at least 32 characters")
  }, 60_000)

  it("prints the effective configuration with secrets redacted; flags win over env, env over the file", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-config-"))
    const file = path.join(dir, "tessera.json")
    fs.writeFileSync(file, JSON.stringify({ port: 1111, maxDriftMs: 1234, securityPolicies: [{ role: "USER", mapNamePattern: "*", actions: ["READ"] }] }))
    const r = await cli(["config", "--config", file, "--port", "2222"], {
      JWT_SECRET: "a-very-secret-value-that-must-not-be-printed",
      DATABASE_URL: "postgres://app:hunter2@db.example:5432/tessera",
      TESSERA_MAX_DRIFT_MS: "4321"
    })
    expect(r.code).toBe(0)
    const printed = JSON.parse(r.stdout)
    expect(printed.port).toBe(2222)
    expect(printed.maxDriftMs).toBe(4321)
    expect(printed.storage).toBe("postgres")
    expect(printed.securityPolicies).toHaveLength(1)
    expect(r.stdout).not.toContain("a-very-secret-value")
    expect(r.stdout).not.toContain("hunter2")
    expect(printed.databaseUrl).toBe("postgres://app:********@db.example:5432/tessera")
    const bad = await cli(["config", "--config", path.join(dir, "missing.json")])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain("(config)")
    fs.writeFileSync(file, JSON.stringify({ prot: 1 }))
    expect((await cli(["config", "--config", file])).stderr).toContain("unknown setting(s): prot")
    fs.rmSync(dir, { recursive: true, force: true })
  }, 60_000)

  it("reports a corrupt store as a one-line startup error (exit 1), never a silent empty start", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-corrupt-"))
    fs.writeFileSync(path.join(dir, "tessera.db"), "this is not a database file, just text")
    const r = await cli(["serve", "--port", "0", "--data-dir", dir])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("tessera: startup failed: Cannot open the SQLite store")
    expect(r.stdout).not.toContain("PORT=")
    fs.rmSync(dir, { recursive: true, force: true })
  }, 60_000)

  it("documents every option in --help", async () => {
    const r = await cli(["serve", "--help"])
    for (const flag of ["--port", "--host", "--node-id", "--storage", "--data-dir", "--database-url", "--timestamp-mode", "--max-drift-ms", "--log-level", "--gc-interval-ms", "--gc-age-ms", "--ttl-sweep-interval-ms", "--config"]) {
      expect(r.stdout).toContain(flag)
    }
  }, 60_000)
})
