import { afterAll, beforeAll } from "vitest";
import { freshDatabase } from "../../../../test/support/postgres";
import { openPg, type PgSql } from "../../src/db/pg";

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
