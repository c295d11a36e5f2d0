import { afterAll, beforeAll } from "vitest";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { type Db, openDb } from "../../src/db/client";
import { openPg, type PgSql } from "../../src/db/pg";
import { openPgDb } from "../../src/db/pgFacade";

/** A fresh, migrated database for the enclosing describe: `url` and `sql` are set once beforeAll ran. */
export function migratedDatabase(): { url: string; sql: PgSql } {
  const ctx = {} as { url: string; sql: PgSql; drop?: () => Promise<void> };
  beforeAll(async () => {
    const fresh = await freshDatabase();
    ctx.url = fresh.url;
    ctx.drop = fresh.drop;
    ctx.sql = (await openPg(fresh.url, { max: 2 })).$client;
  });
  afterAll(async () => {
    await ctx.sql?.end();
    await ctx.drop?.();
  });
  return ctx;
}

type PgDb = Awaited<ReturnType<typeof openPgDb>>;

/**
 * Runs one contract unchanged on both engines: on an in-memory SQLite database, and (when the test
 * cluster runs) on a fresh migrated PostgreSQL database. `more` adds PostgreSQL-only tests.
 */
export function onBothEngines(title: string, contract: (engine: "sqlite" | "postgres", open: () => Db) => void, more?: (pg: () => PgDb) => void) {
  const sqlite = openDb(":memory:");
  contract("sqlite", () => sqlite);
  describePostgres(title, () => {
    let pg: PgDb;
    let drop: () => Promise<void>;
    beforeAll(async () => {
      const fresh = await freshDatabase();
      drop = fresh.drop;
      pg = await openPgDb(fresh.url, { max: 4 });
    });
    afterAll(async () => {
      await pg?.close();
      await drop?.();
    });
    contract("postgres", () => pg);
    more?.(() => pg);
  });
}
