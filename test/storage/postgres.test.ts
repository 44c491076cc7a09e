import { describe, expect, it } from "@effect/vitest"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Layer, Redacted } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Storage } from "../../src/layers/Storage.js"
import { migrations } from "../../src/layers/storage/migrations.js"
import { findPostgresBin, NO_POSTGRES_MESSAGE, startTestPostgres, type TestPostgres } from "../support/postgres.js"
import { storageConformance } from "./conformance.js"

const available = findPostgresBin() !== undefined
if (!available) console.warn(NO_POSTGRES_MESSAGE)

// One throwaway cluster for the whole file; every test gets its own fresh database in it.
let cluster: TestPostgres | undefined
beforeAll(async () => {
  if (available) cluster = await startTestPostgres()
}, 120_000)
afterAll(async () => {
  await cluster?.stop()
})

let n = 0
const freshUrl = () => cluster!.createDatabase(`t${n++}`)

describe.skipIf(!available)("postgres", () => {
  storageConformance("postgres", async () => ({ layer: Storage.layerPostgres({ url: await freshUrl() }) }), { durable: true })

  const startupError = (url: string) => Effect.flip(Effect.scoped(Layer.build(Storage.layerPostgres({ url }))))

  it.live("an unreachable server is a clear StorageError without the password", () =>
    Effect.gen(function*() {
      const error = yield* startupError("postgresql://tessera:s3cret@127.0.0.1:1/tessera")
      expect(error._tag).toBe("StorageError")
      expect(error.message).toMatch(/^Cannot connect to PostgreSQL at postgresql:\/\/tessera:\*\*\*@127\.0\.0\.1:1\/tessera/)
      expect(error.message).not.toContain("s3cret")
    }))

  it.live("a missing database is a clear StorageError", () =>
    Effect.gen(function*() {
      const url = cluster!.url.replace(/\/tessera$/, "/does_not_exist")
      const error = yield* startupError(url)
      expect(error.message).toMatch(/does_not_exist/)
    }))

  it.live("nodes starting together on one database migrate once", () =>
    Effect.gen(function*() {
      const url = yield* Effect.promise(freshUrl)
      const layer = Storage.layerPostgres({ url })
      yield* Effect.all([0, 1, 2].map(() => Effect.scoped(Layer.build(layer))), { concurrency: "unbounded" })
      const versions = yield* Effect.scoped(
        Effect.gen(function*() {
          const sql = yield* PgClient.make({ url: Redacted.make(url) }).pipe(Effect.provide(Reactivity.layer))
          return yield* sql<{ version: number }>`SELECT version FROM tessera_migrations`
        })
      ).pipe(Effect.orDie)
      expect(versions.map((r) => Number(r.version)).sort()).toEqual(migrations.map((m) => m.version))
    }))
})
