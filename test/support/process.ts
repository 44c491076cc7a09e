import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { TEST_SECRET } from "./server.js"

export const CLI_PATH = path.resolve(import.meta.dirname, "../../dist/src/programs/cli.js")

export interface ServerProcess {
  readonly port: number
  readonly url: string
  readonly child: ChildProcess
  /** Everything the process wrote to stdout / stderr so far. */
  readonly output: () => { stdout: string; stderr: string }
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * Starts `tessera serve` as a child process (the built CLI in dist/, `npm test` builds first) and waits
 * for its `PORT=<n>` line.
 */
export const spawnServer = (args: ReadonlyArray<string>, env: Record<string, string> = {}, timeoutMs = 30_000): Promise<ServerProcess> => {
  if (!fs.existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run \`npm run build\` first (npm test does)`)
  const child = spawn(process.execPath, [CLI_PATH, "serve", "--port", "0", "--host", "127.0.0.1", ...args], {
    env: { ...process.env, JWT_SECRET: TEST_SECRET, NODE_ENV: "development", TESSERA_LOG_LEVEL: "warning", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal }))
  )
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`server did not print PORT= within ${timeoutMs} ms; stderr: ${stderr}`))
    }, timeoutMs)
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString()
    })
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString()
      const m = /^PORT=(\d+)$/m.exec(stdout)
      if (m !== null) {
        clearTimeout(timer)
        const port = Number(m[1])
        resolve({ port, url: `ws://127.0.0.1:${port}/ws`, child, output: () => ({ stdout, stderr }), exited })
      }
    })
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`server exited before listening (code ${code}, signal ${signal}); stderr: ${stderr}`))
    })
  })
}
