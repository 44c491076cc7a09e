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
  },
  {
    version: 2,
    name: "cluster: change feed, membership, leader epoch, locks, merged counters",
    // The embedded file is single-node: nothing to add (the version is recorded all the same).
    sqlite: [],
    postgres: [
      // Gap-free sequence per partition (0..270 for keys, 271 for node-to-node messages), taken under the
      // row lock of the partition's counter in the transaction that writes the change rows.
      `CREATE TABLE ${T.changeSeq} (partition_id INT NOT NULL PRIMARY KEY, seq BIGINT NOT NULL)`,
      `INSERT INTO ${T.changeSeq} (partition_id, seq) SELECT g, 0 FROM generate_series(0, 271) AS g`,
      `CREATE TABLE ${T.changes} (
        partition_id INT NOT NULL, seq BIGINT NOT NULL, node_id TEXT COLLATE "C" NOT NULL, target TEXT COLLATE "C",
        payload BYTEA NOT NULL, created_at BIGINT NOT NULL,
        PRIMARY KEY (partition_id, seq))`,
      `CREATE TABLE ${T.clusterNodes} (
        node_id TEXT COLLATE "C" NOT NULL PRIMARY KEY, url TEXT NOT NULL, started_at BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL, cursors BIGINT[] NOT NULL DEFAULT '{}')`,
      `CREATE TABLE ${T.clusterLeader} (
        id INT NOT NULL PRIMARY KEY CHECK (id = 1), node_id TEXT COLLATE "C", epoch BIGINT NOT NULL, since BIGINT NOT NULL,
        members_version BIGINT NOT NULL DEFAULT 0, members TEXT NOT NULL DEFAULT '')`,
      `INSERT INTO ${T.clusterLeader} (id, node_id, epoch, since) VALUES (1, NULL, 0, 0)`,
      `CREATE SEQUENCE tessera_lock_fence`,
      `CREATE TABLE ${T.locks} (
        name TEXT COLLATE "C" NOT NULL PRIMARY KEY, owner_node TEXT NOT NULL, owner_conn TEXT NOT NULL,
        fencing_token BIGINT NOT NULL, expires_at BIGINT NOT NULL)`,
      `CREATE TABLE ${T.lockQueue} (
        id BIGSERIAL PRIMARY KEY, name TEXT COLLATE "C" NOT NULL, node_id TEXT NOT NULL, conn_id TEXT NOT NULL,
        request_id TEXT NOT NULL, ttl_ms BIGINT NOT NULL, enqueued_at BIGINT NOT NULL)`,
      `CREATE INDEX ${T.lockQueue}_by_name ON ${T.lockQueue} (name, id)`,
      `CREATE INDEX ${T.lockQueue}_by_conn ON ${T.lockQueue} (node_id, conn_id)`,
      // PN counter states {p, n} merged by per-entry max, so counter rows written by several nodes converge.
      // An unreadable state never blocks the write queue: the incoming one is kept.
      `CREATE OR REPLACE FUNCTION tessera_merge_pn(a TEXT, b TEXT) RETURNS TEXT LANGUAGE plpgsql IMMUTABLE AS $fn$
      DECLARE ja JSONB; jb JSONB; mp JSONB; mn JSONB;
      BEGIN
        ja := a::jsonb; jb := b::jsonb;
        SELECT coalesce(jsonb_object_agg(k, v), '{}'::jsonb) INTO mp FROM (
          SELECT k, max(v) AS v FROM (
            SELECT key AS k, value::numeric AS v FROM jsonb_each_text(coalesce(ja->'p', '{}'::jsonb))
            UNION ALL SELECT key, value::numeric FROM jsonb_each_text(coalesce(jb->'p', '{}'::jsonb))) x GROUP BY k) y;
        SELECT coalesce(jsonb_object_agg(k, v), '{}'::jsonb) INTO mn FROM (
          SELECT k, max(v) AS v FROM (
            SELECT key AS k, value::numeric AS v FROM jsonb_each_text(coalesce(ja->'n', '{}'::jsonb))
            UNION ALL SELECT key, value::numeric FROM jsonb_each_text(coalesce(jb->'n', '{}'::jsonb))) x GROUP BY k) y;
        RETURN jsonb_build_object('p', mp, 'n', mn)::text;
      EXCEPTION WHEN others THEN
        RETURN b;
      END
      $fn$`
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
