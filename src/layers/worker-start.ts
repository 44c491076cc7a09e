/**
 * Starts a `worker_threads` Worker from a TypeScript entry module, both from compiled `dist/` and from the
 * sources (vitest). Same approach as the sandbox worker (src/sandbox/worker-link.ts), for any entry:
 * - compiled: the `.js` sibling of the `.ts` URL exists and is started as is;
 * - sources: Node 20 cannot run `.ts` in a worker, so the entry is bundled in memory with esbuild (which vite
 *   ships) and started from a data: URL. A data: URL cannot resolve bare specifiers: the bundle inlines the
 *   entry's own modules, and the entry must load packages from absolute URLs handed over in `workerData`
 *   (see `packageUrl`).
 */
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker, type WorkerOptions } from "node:worker_threads"

/** The subset of esbuild's API used to bundle a worker entry when running from TypeScript sources. */
interface Esbuild {
  readonly build: (options: Record<string, unknown>) => Promise<{ readonly outputFiles: ReadonlyArray<{ readonly text: string }> }>
}

const scripts = new Map<string, Promise<URL>>()

/** The script to start for the entry `tsUrl` (cached per entry; a failed bundle is retried next time). */
export const resolveWorkerScript = (tsUrl: URL): Promise<URL> => {
  const key = tsUrl.href
  let script = scripts.get(key)
  if (script === undefined) {
    script = bundleOrCompiled(tsUrl).catch((e: unknown) => {
      scripts.delete(key)
      throw e
    })
    scripts.set(key, script)
  }
  return script
}

const bundleOrCompiled = async (tsUrl: URL): Promise<URL> => {
  const compiled = new URL(tsUrl.href.replace(/\.ts$/, ".js"))
  if (compiled.href !== tsUrl.href && existsSync(fileURLToPath(compiled))) return compiled
  const esbuildName = "esbuild" // not a dependency of the server: only needed when running from sources
  const esbuild = (await import(esbuildName)) as Esbuild
  const out = await esbuild.build({
    entryPoints: [fileURLToPath(tsUrl)],
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    packages: "external",
    write: false,
    logLevel: "silent"
  })
  return new URL(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0]!.text).toString("base64")}`)
}

/** Starts the worker for the entry `tsUrl` (see the module comment). Rejects if its script cannot be built. */
export const startWorker = async (tsUrl: URL, options: WorkerOptions): Promise<Worker> =>
  new Worker(await resolveWorkerScript(tsUrl), options)

/**
 * Absolute file URL of a package's entry as resolved from `fromUrl`, for a worker entry to `import()` (a
 * data: URL cannot resolve bare specifiers). Node's `require` conditions: a CommonJS entry may come back,
 * whose exports an ESM `import()` offers both as named exports (when detectable) and as `default`.
 */
export const packageUrl = (name: string, fromUrl: string): string => pathToFileURL(createRequire(fromUrl).resolve(name)).href
