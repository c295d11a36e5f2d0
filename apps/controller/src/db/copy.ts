import { getTableColumns, is, sql } from "drizzle-orm";
import { getTableConfig, SQLiteTable } from "drizzle-orm/sqlite-core";
import { openDb } from "./client";
import { openPg } from "./pg";
import { pgTables } from "./pgSchema";
import * as sqliteSchema from "./schema";
import { toPgColumns } from "../services/pgJobState";

const PAGE = 500;
/** the key the copy pages by, selected next to the columns (no column is named so) */
const ROWID = "__rowid";

/** Tables in an order where every foreign key points at a table copied before it. */
function copyOrder(): SQLiteTable[] {
  const tables = (Object.values(sqliteSchema) as unknown[]).filter((v): v is SQLiteTable => is(v, SQLiteTable));
  const done = new Set<string>();
  const ordered: SQLiteTable[] = [];
  while (ordered.length < tables.length) {
    const before = ordered.length;
    for (const t of tables) {
      const cfg = getTableConfig(t);
      if (done.has(cfg.name)) continue;
      const deps = cfg.foreignKeys.map((f) => getTableConfig(f.reference().foreignTable).name).filter((n) => n !== cfg.name);
      if (deps.every((d) => done.has(d))) {
        done.add(cfg.name);
        ordered.push(t);
      }
    }
    if (ordered.length === before) throw new Error("db copy: the schema's foreign keys form a cycle");
  }
  return ordered;
}

/**
 * Moves an installation from its SQLite file to an empty PostgreSQL database: both are migrated
 * to the current schema first, every row of every table is copied in one PostgreSQL transaction
 * (all or nothing), ids kept, and identity sequences moved past the copied ids. A target that
 * already holds agents or jobs is refused, so a second run cannot mix two installations.
 * Stop the controller first: rows it writes during the copy would not be copied.
 */
export async function copySqliteToPostgres(sqlitePath: string, postgresUrl: string): Promise<Record<string, number>> {
  const source = openDb(sqlitePath);
  const target = await openPg(postgresUrl, { max: 1, name: "deploybot db copy" });
  const pg = target.$client;
  try {
    const [{ n }] = (await pg`SELECT (SELECT count(*) FROM agents) + (SELECT count(*) FROM jobs) AS n`) as unknown as [{ n: number }];
    if (n > 0) throw new Error("db copy: the PostgreSQL database already holds agents or jobs; copy into an empty database");
    const counts: Record<string, number> = {};
    await pg.begin(async (tx) => {
      for (const table of copyOrder()) {
        const name = getTableConfig(table).name;
        const pgTable = pgTables[name]!;
        counts[name] = 0;
        // Paged by rowid (every table here has one), each page an index range: LIMIT/OFFSET would
        // read past every earlier row again, quadratic on a large job_logs.
        for (let after = Number.MIN_SAFE_INTEGER; ; ) {
          const rows = source
            .select({ ...getTableColumns(table), [ROWID]: sql<number>`rowid` })
            .from(table)
            .where(sql`rowid > ${after}`)
            .orderBy(sql`rowid`)
            .limit(PAGE)
            .all() as Record<string, unknown>[];
          if (rows.length === 0) break;
          // toPgColumns keeps the table's columns only, so the rowid is not copied
          await tx`INSERT INTO ${tx(name)} ${tx(rows.map((r) => toPgColumns(pgTable, r)))}`;
          counts[name] += rows.length;
          after = rows[rows.length - 1]![ROWID] as number;
          if (rows.length < PAGE) break;
        }
        // identity columns (SQLite rowids): the next id follows the copied ones
        for (const column of Object.values(getTableColumns(pgTable))) {
          if (column.columnType === "PgBigInt53" && column.primary) {
            await tx`SELECT setval(pg_get_serial_sequence(${name}, ${column.name}), coalesce((SELECT max(${tx(column.name)}) FROM ${tx(name)}), 0) + 1, false)`;
          }
        }
      }
    });
    return counts;
  } finally {
    source.$client.close();
    await pg.end({ timeout: 5 });
  }
}
