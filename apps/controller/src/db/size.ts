import { sql } from "drizzle-orm";
import type { Db } from "./client";

/** The database's size in bytes, as the engine counts it (SQLite: pages without the WAL). */
export async function databaseBytes(db: Db): Promise<number> {
  if (db.engine === "sqlite") return db.$client.prepare("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").pluck().get() as number;
  const rows = (await (db as unknown as { execute(q: unknown): Promise<{ n: number | string }[]> }).execute(sql`SELECT pg_database_size(current_database()) AS n`));
  return Number(rows[0]?.n ?? 0);
}
