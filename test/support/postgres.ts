/**
 * A THROWAWAY PostgreSQL cluster for tests: `initdb` in a temp dir, listening on 127.0.0.1 at a free
 * port (plus a unix socket in the same dir), one database, `stop()` kills it and removes the dir.
 *
 * Binaries: `initdb` on PATH, else the newest /usr/lib/postgresql/<v>/bin (Debian). initdb refuses to run
 * as root, so as root every PostgreSQL command runs as the `postgres` user (runuser) in a dir it owns.
 * `findPostgresBin()` returns undefined only when no binaries exist at all: tests then skip with a message.
 */
import { findPostgresBin, startBenchPostgres } from "../../bench/lib/postgres.js"

export { findPostgresBin }

export interface TestPostgres {
  readonly url: string
  /** A URL for another, fresh database in the same cluster. */
  readonly createDatabase: (name: string) => Promise<string>
  readonly stop: () => Promise<void>
}

export const NO_POSTGRES_MESSAGE =
  "PostgreSQL binaries not found (no initdb on PATH or in /usr/lib/postgresql/*/bin): skipping PostgreSQL tests. " +
  "Install them with .ci/postgres.sh"

/** A throwaway cluster without fsync (tests need speed, not durability of the test database) and one database. */
export const startTestPostgres = async (): Promise<TestPostgres> => {
  const bin = findPostgresBin()
  if (bin === undefined) throw new Error(NO_POSTGRES_MESSAGE)
  const cluster = await startBenchPostgres(bin, { durable: false })
  try {
    const url = await cluster.createDatabase("tessera")
    return { url, createDatabase: cluster.createDatabase, stop: cluster.stop }
  } catch (e) {
    await cluster.stop()
    throw e
  }
}
