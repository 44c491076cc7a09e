/**
 * Versioned schema migrations, run at startup by the SQL layers. Each migration is applied in one
 * transaction together with its row in `tessera_migrations`, so a crash never leaves half a version.
 * Never edit a released migration: append a new one.
 */
import { Effect } from "effect"
import { StorageError } from "./errors.js"
import { type Dialect, T } from "./schema.js"

export interface Migration {
  readonly version: number
  readonly name: string
  readonly sqlite: ReadonlyArray<string>
  readonly postgres: ReadonlyArray<string>
}

/** SQLite: WITHOUT ROWID keeps rows clustered by primary key, which is the order loads read them in. */
export const migrations: ReadonlyArray<Migration> = [
  {
    version: 1,
    name: "records, tombstones, map types, node metadata",
    sqlite: [
      `CREATE TABLE ${T.lww} (
        map_name TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
        ts_millis INTEGER NOT NULL, ts_counter INTEGER NOT NULL, ts_node_id TEXT NOT NULL, ttl_ms INTEGER,
        stored_millis INTEGER NOT NULL, stored_counter INTEGER NOT NULL, stored_node_id TEXT NOT NULL,
        PRIMARY KEY (map_name, key)) WITHOUT ROWID`,
      `CREATE TABLE ${T.orRecords} (
        map_name TEXT NOT NULL, key TEXT NOT NULL, tag TEXT NOT NULL, value TEXT NOT NULL,
        ts_millis INTEGER NOT NULL, ts_counter INTEGER NOT NULL, ts_node_id TEXT NOT NULL, ttl_ms INTEGER,
        stored_millis INTEGER NOT NULL, stored_counter INTEGER NOT NULL, stored_node_id TEXT NOT NULL,
        PRIMARY KEY (map_name, key, tag)) WITHOUT ROWID`,
      `CREATE INDEX ${T.orRecords}_by_tag ON ${T.orRecords} (map_name, tag)`,
      `CREATE TABLE ${T.orTombstones} (
        map_name TEXT NOT NULL, tag TEXT NOT NULL,
        stored_millis INTEGER NOT NULL, stored_counter INTEGER NOT NULL, stored_node_id TEXT NOT NULL,
        PRIMARY KEY (map_name, tag)) WITHOUT ROWID`,
      `CREATE TABLE ${T.maps} (map_name TEXT NOT NULL PRIMARY KEY, map_type TEXT NOT NULL CHECK (map_type IN ('LWW', 'OR')))`,
      `CREATE TABLE ${T.meta} (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)`
    ],
    // Keys and node ids use COLLATE "C": byte order for keyset pagination and for the HLC comparison of
    // merge-aware upserts. Values are JSON text (not JSONB): JSONB reorders object keys and rejects \u0000.
    postgres: [
      `CREATE TABLE ${T.lww} (
        map_name TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, value TEXT,
        ts_millis BIGINT NOT NULL, ts_counter BIGINT NOT NULL, ts_node_id TEXT COLLATE "C" NOT NULL, ttl_ms BIGINT,
        stored_millis BIGINT NOT NULL, stored_counter BIGINT NOT NULL, stored_node_id TEXT COLLATE "C" NOT NULL,
        is_deleted BOOLEAN GENERATED ALWAYS AS (value IS NULL) STORED,
        PRIMARY KEY (map_name, key))`,
      `CREATE TABLE ${T.orRecords} (
        map_name TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, tag TEXT COLLATE "C" NOT NULL, value TEXT NOT NULL,
        ts_millis BIGINT NOT NULL, ts_counter BIGINT NOT NULL, ts_node_id TEXT COLLATE "C" NOT NULL, ttl_ms BIGINT,
        stored_millis BIGINT NOT NULL, stored_counter BIGINT NOT NULL, stored_node_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (map_name, key, tag))`,
      `CREATE INDEX ${T.orRecords}_by_tag ON ${T.orRecords} (map_name, tag)`,
      `CREATE TABLE ${T.orTombstones} (
        map_name TEXT COLLATE "C" NOT NULL, tag TEXT COLLATE "C" NOT NULL,
        stored_millis BIGINT NOT NULL, stored_counter BIGINT NOT NULL, stored_node_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (map_name, tag))`,
      `CREATE TABLE ${T.maps} (map_name TEXT COLLATE "C" NOT NULL PRIMARY KEY, map_type TEXT NOT NULL CHECK (map_type IN ('LWW', 'OR')))`,
      `CREATE TABLE ${T.meta} (key TEXT COLLATE "C" NOT NULL PRIMARY KEY, value TEXT NOT NULL)`
    ]
  }
]

export const latestVersion = migrations.reduce((max, m) => Math.max(max, m.version), 0)

export const migrationsTableSql = (d: Dialect): string =>
  d.name === "sqlite"
    ? `CREATE TABLE IF NOT EXISTS ${T.migrations} (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`
    : `CREATE TABLE IF NOT EXISTS ${T.migrations} (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`

/** What a layer provides to run migrations on its connection. */
export interface MigrationTarget {
  readonly dialect: Dialect
  /** Creates the bookkeeping table if needed and returns the applied versions. */
  readonly appliedVersions: Effect.Effect<ReadonlyArray<number>, StorageError>
  /** Runs the statements and records the version, all in one transaction. */
  readonly apply: (migration: Migration, statements: ReadonlyArray<string>) => Effect.Effect<void, StorageError>
}

/** Applies the missing migrations in version order; refuses a store written by a newer server. */
export const runMigrations = (target: MigrationTarget): Effect.Effect<ReadonlyArray<number>, StorageError> =>
  Effect.gen(function*() {
    const applied = new Set(yield* target.appliedVersions)
    const newest = Math.max(0, ...applied)
    if (newest > latestVersion) {
      return yield* new StorageError({
        message: `The store has schema version ${newest}, newer than this server supports (${latestVersion}); ` +
          `upgrade the server or point it at another store`
      })
    }
    const done: Array<number> = []
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue
      yield* target.apply(m, target.dialect.name === "sqlite" ? m.sqlite : m.postgres)
      done.push(m.version)
    }
    return done
  })
