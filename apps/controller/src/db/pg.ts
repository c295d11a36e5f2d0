import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import * as pgSchema from "./pgSchema";

export type PgSql = postgres.Sql;
export type PgDb = PostgresJsDatabase<typeof pgSchema> & { $client: PgSql };

const migrationsFolder = join(dirname(fileURLToPath(import.meta.url)), "../../drizzle-pg");

/**
 * Advisory lock keys (one 64-bit namespace per database). Singleton work takes its key with
 * `pg_try_advisory_lock` on a connection it keeps; PostgreSQL releases it when that connection
 * ends, so a controller killed with -9 hands the work over as soon as its backend notices.
 */
export const LOCKS = {
  migrate: 0x6462_0001,
  outbox: 0x6462_0002,
  drainer: 0x6462_0003,
  reaper: 0x6462_0004,
  scheduler: 0x6462_0005,
  housekeeping: 0x6462_0006,
  notifications: 0x6462_0007,
} as const;

/** The channel every controller LISTENs on: the payload is the new outbox row's id. */
export const OUTBOX_CHANNEL = "deploybot_outbox";

/** True for a URL that selects PostgreSQL (DEPLOYBOT_DATABASE_URL). */
export const isPostgresUrl = (url: string) => /^postgres(ql)?:\/\//.test(url);

export interface PgOptions {
  /** connections in the pool (default 10) */
  max?: number;
  /** application_name, to tell controllers apart in pg_stat_activity */
  name?: string;
}

/**
 * A pool on the database at `url`. int8 columns (every timestamp and counter) are read as
 * JavaScript numbers: milliseconds since the epoch stay far below 2^53.
 */
export function connectPg(url: string, opts: PgOptions = {}): PgSql {
  const sql = postgres(url, {
    max: opts.max ?? 10,
    onnotice: () => {},
    connection: { application_name: opts.name ?? "deploybot-controller" },
    types: {
      int8: { to: 20, from: [20], serialize: (v: number | bigint) => String(v), parse: (v: string) => Number(v) },
    },
  });
  // json/jsonb parameters are sent as the JSON text the caller made, with or without drizzle on
  // top (drizzle sets the same, as it stringifies values itself): one behaviour for every query.
  const same = (v: unknown) => v;
  sql.options.serializers[114] = same;
  sql.options.serializers[3802] = same;
  return sql;
}

/**
 * Opens PostgreSQL and applies the checked-in migrations (drizzle-pg/). Controllers starting
 * together take turns under an advisory lock, so each migration runs once.
 */
export async function openPg(url: string, opts: PgOptions = {}): Promise<PgDb> {
  const sql = connectPg(url, opts);
  const db = drizzle(sql, { schema: pgSchema }) as PgDb;
  // the lock lives on a connection of its own: the pool may be a single connection
  const lock = connectPg(url, { max: 1, name: `${opts.name ?? "deploybot-controller"} (migrations)` });
  try {
    await lock`SELECT pg_advisory_lock(${LOCKS.migrate})`;
    await migrate(db, { migrationsFolder });
  } catch (err) {
    await sql.end({ timeout: 5 });
    throw err;
  } finally {
    // ending the session releases its advisory lock
    await lock.end({ timeout: 5 });
  }
  return db;
}
