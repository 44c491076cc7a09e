import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { Storage } from "../../src/layers/Storage.js"
import { migrations } from "../../src/layers/storage/migrations.js"
import { SQLITE_FILE_NAME } from "../../src/layers/storage/sqlite.js"
import { storageConformance } from "./conformance.js"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-sqlite-"))
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))
let n = 0
const freshDir = () => path.join(root, `store-${n++}`)

storageConformance("sqlite", async () => ({ layer: Storage.layerSqlite({ dataDir: freshDir() }) }), { durable: true })

const startupError = (dataDir: string) =>
  Effect.flip(Effect.scoped(Layer.build(Storage.layerSqlite({ dataDir }))))

describe("sqlite startup", () => {
  it.live("creates a missing data directory and the file inside it", () =>
    Effect.gen(function*() {
      const dir = path.join(freshDir(), "nested", "dätä 😀")
      yield* Effect.scoped(Layer.build(Storage.layerSqlite({ dataDir: dir })))
      expect(fs.existsSync(path.join(dir, SQLITE_FILE_NAME))).toBe(true)
    }))

  it.live("refuses a corrupt file with a clear StorageError", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      fs.mkdirSync(dir, { recursive: true })
      const file = path.join(dir, SQLITE_FILE_NAME)
      fs.writeFileSync(file, Buffer.from("this is not a database ".repeat(500)))
      const error = yield* startupError(dir)
      expect(error._tag).toBe("StorageError")
      expect(error.message).toContain(file)
      expect(error.message).toMatch(/not a database/)
      // The garbage is left for the operator to inspect, never overwritten.
      expect(fs.readFileSync(file, "utf8").startsWith("this is not a database")).toBe(true)
    }))

  it.live("refuses a data directory that is a file", () =>
    Effect.gen(function*() {
      const file = path.join(root, `plain-file-${n++}`)
      fs.writeFileSync(file, "x")
      const error = yield* startupError(file)
      expect(error.message).toContain("Cannot create the data directory")
    }))

  it.live("refuses a store written by a newer schema version", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const layer = Storage.layerSqlite({ dataDir: dir })
      yield* Effect.scoped(Layer.build(layer))
      const { createClient } = yield* Effect.promise(() => import("@libsql/client"))
      const client = createClient({ url: `file:${path.join(dir, SQLITE_FILE_NAME)}` })
      yield* Effect.promise(() => client.execute("INSERT INTO tessera_migrations (version, name, applied_at) VALUES (999, 'future', 0)"))
      client.close()
      const error = yield* startupError(dir)
      expect(error.message).toMatch(/schema version 999, newer than this server supports/)
    }))

  it.live("migrates once: reopening keeps the applied versions", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const layer = Storage.layerSqlite({ dataDir: dir })
      const first = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
      const second = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
      expect(Exit.isSuccess(first) && Exit.isSuccess(second)).toBe(true)
      const { createClient } = yield* Effect.promise(() => import("@libsql/client"))
      const client = createClient({ url: `file:${path.join(dir, SQLITE_FILE_NAME)}` })
      const rs = yield* Effect.promise(() => client.execute("SELECT version FROM tessera_migrations"))
      client.close()
      expect(rs.rows.map((r) => Number(r[0])).sort()).toEqual(migrations.map((m) => m.version))
    }))
})
