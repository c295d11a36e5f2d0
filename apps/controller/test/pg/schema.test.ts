import { getTableConfig, SQLiteTable } from "drizzle-orm/sqlite-core";
import { is } from "drizzle-orm";
import { afterAll, beforeAll, expect, test } from "vitest";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { openPg, type PgDb } from "../../src/db/pg";
import * as pgSchema from "../../src/db/pgSchema";
import * as sqliteSchema from "../../src/db/schema";

const sqliteTables = (Object.values(sqliteSchema) as unknown[]).filter((v): v is SQLiteTable => is(v, SQLiteTable)).map((t) => getTableConfig(t));

const expectedType: Record<string, string> = {
  SQLiteText: "text",
  SQLiteTextJson: "jsonb",
  SQLiteBoolean: "boolean",
  SQLiteInteger: "bigint",
  SQLiteBlobBuffer: "bytea",
};

test("every table of schema.ts has its PostgreSQL form exported by pgSchema.ts (drizzle-kit reads the exports)", () => {
  const exported = new Set(Object.values(pgSchema.pgTables).map((t) => t));
  for (const cfg of sqliteTables) {
    const pg = pgSchema.pgTables[cfg.name];
    expect(pg, cfg.name).toBeDefined();
    expect(Object.values(pgSchema).includes(pg as never), `add "export const <name> = derived.${cfg.name}!;" to src/db/pgSchema.ts, then pnpm db:generate`).toBe(true);
  }
  expect(exported.size).toBe(sqliteTables.length);
});

describePostgres("PostgreSQL migrations", () => {
  let db: PgDb;
  let drop: () => Promise<void>;
  let url: string;
  beforeAll(async () => {
    const fresh = await freshDatabase();
    drop = fresh.drop;
    url = fresh.url;
    db = await openPg(url, { max: 2 });
  });
  afterAll(async () => {
    await db?.$client.end();
    await drop?.();
  });

  test("drizzle-pg/ builds every table, column, nullability and index of schema.ts (run pnpm db:generate after a schema change)", async () => {
    const sql = db.$client;
    const columns = await sql<{ table_name: string; column_name: string; data_type: string; is_nullable: string }[]>`
      SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public'`;
    const indexes = new Set((await sql<{ indexname: string }[]>`SELECT indexname FROM pg_indexes WHERE schemaname = 'public'`).map((r) => r.indexname));
    for (const cfg of sqliteTables) {
      const actual = columns.filter((c) => c.table_name === cfg.name);
      expect(actual.map((c) => c.column_name).sort(), cfg.name).toEqual(cfg.columns.map((c) => c.name).sort());
      for (const c of cfg.columns) {
        const a = actual.find((x) => x.column_name === c.name)!;
        expect(`${cfg.name}.${c.name} ${a.data_type} ${a.is_nullable}`).toBe(
          `${cfg.name}.${c.name} ${expectedType[c.columnType]} ${c.notNull || c.primary ? "NO" : "YES"}`,
        );
      }
      for (const ix of cfg.indexes) {
        // SQLite's reaper reads these; PostgreSQL keeps jobs_queue_deadline_idx (pgSchema.ts)
        if (pgSchema.SQLITE_ONLY_INDEXES.has(ix.config.name)) expect(indexes.has(ix.config.name), `index ${ix.config.name}`).toBe(false);
        else expect(indexes.has(ix.config.name), `index ${ix.config.name}`).toBe(true);
      }
      if (cfg.name === "jobs") expect(indexes.has("jobs_queue_deadline_idx")).toBe(true);
    }
  });

  test("a second open applies nothing and keeps the data", async () => {
    await db.$client`INSERT INTO outbox_cursors (name, last_id, updated_at) VALUES ('probe', 1, 0)`;
    const again = await openPg(url, { max: 1 });
    const rows = await again.$client`SELECT last_id FROM outbox_cursors WHERE name = 'probe'`;
    await again.$client.end();
    expect(rows[0]?.last_id).toBe(1);
  });
});
