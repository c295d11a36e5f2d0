/**
 * The PostgreSQL schema, derived from the one schema definition (schema.ts, sqlite-core) so the
 * two engines cannot drift: every table, column, default, key, foreign key and index of
 * schema.ts is built here again with pg-core types. `pnpm db:generate` writes the migrations of
 * both dialects from the same edit (drizzle/ and drizzle-pg/).
 *
 * Types: text -> text, JSON text -> jsonb (label sets compare by value, and a claim matches
 * labels with `<@`), boolean -> boolean, integer -> bigint (timestamps are milliseconds since
 * the epoch, past int4), an integer primary key (SQLite's rowid) -> an identity column that
 * still accepts explicit ids (`db copy` keeps them), blob -> bytea.
 */
import { getTableColumns, is, type SQL, sql } from "drizzle-orm";
import {
  type AnyPgColumn,
  bigint,
  boolean,
  customType,
  type IndexBuilder as PgIndexBuilder,
  index,
  jsonb,
  type PgColumnBuilderBase,
  type PgTableWithColumns,
  pgTable,
  primaryKey,
  text,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import { type AnySQLiteColumn, getTableConfig, SQLiteTable } from "drizzle-orm/sqlite-core";
import * as sqlite from "./schema";

/** A derived table: its columns are known at run time (checked by the schema test), not to tsc. */
export type DerivedTable = PgTableWithColumns<{ name: string; schema: undefined; columns: Record<string, AnyPgColumn>; dialect: "pg" }>;

const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => "bytea" });

/** Indexes only PostgreSQL needs, by table (its claim is one statement over host and labels). */
const PG_ONLY: Record<string, (t: Record<string, AnyPgColumn>) => PgIndexBuilder[]> = {
  jobs: (t) => [
    // The claim statement looks at pending jobs in id order and keeps the first one this agent may
    // run (its host, or a label set it carries): one small partial index serves both targets.
    index("jobs_pending_pg_idx").on(t.id!).where(sql`status = 'pending'`),
    // The reaper's queue-timeout look. SQLite dropped this index (a page written by every claim):
    // its one writer keeps the earliest deadline in memory and reads the claim indexes when it
    // passes (jobState.ts). Several controllers write PostgreSQL, so no memory of one is the truth.
    index("jobs_queue_deadline_idx").on(t.queueDeadline!).where(sql`status = 'pending'`),
  ],
};

/**
 * What of schema.ts's indexes only SQLite's reaper reads (jobStore.ts, queue deadlines):
 * PostgreSQL keeps jobs_queue_deadline_idx instead (PG_ONLY), so these indexes are not built
 * there, and these trailing columns are left out of its claim indexes.
 */
export const SQLITE_ONLY_INDEXES = new Set(["jobs_untargeted_pending_idx"]);
const SQLITE_ONLY_COLUMNS: Record<string, string[]> = {
  jobs_claim_host_idx: ["queue_deadline"],
  jobs_claim_labels_idx: ["queue_deadline"],
};

type References = { references: (to: () => AnyPgColumn, actions: { onDelete?: string; onUpdate?: string }) => unknown };

function columnFor(c: AnySQLiteColumn): PgColumnBuilderBase {
  const name = c.name;
  // the builders' types differ per column type; the result is checked by the schema test
  // biome-ignore lint/suspicious/noExplicitAny: one variable for every builder type
  let b: any;
  switch (c.columnType) {
    case "SQLiteText":
      b = text(name);
      break;
    case "SQLiteTextJson":
      b = jsonb(name);
      break;
    case "SQLiteBoolean":
      b = boolean(name);
      break;
    case "SQLiteInteger":
      b = bigint(name, { mode: "number" });
      if (c.primary) b = b.generatedByDefaultAsIdentity();
      break;
    case "SQLiteBlobBuffer":
      b = bytea(name);
      break;
    default:
      throw new Error(`pgSchema: no PostgreSQL type for ${c.columnType} (column ${name})`);
  }
  if (c.primary) b = b.primaryKey();
  else if (c.notNull) b = b.notNull();
  if (c.isUnique) b = b.unique(c.uniqueName);
  if (c.hasDefault && c.default !== undefined) b = b.default(c.default as SQL | string | number | boolean);
  return b as PgColumnBuilderBase;
}

export function toPg(table: SQLiteTable): DerivedTable {
  const cfg = getTableConfig(table);
  const byKey = getTableColumns(table);
  const keyOf = new Map(Object.entries(byKey).map(([key, col]) => [col.name, key]));
  const columns: Record<string, PgColumnBuilderBase> = {};
  for (const c of cfg.columns) {
    const builder = columnFor(c);
    const fk = cfg.foreignKeys.find((f) => f.reference().columns.length === 1 && f.reference().columns[0]!.name === c.name);
    if (fk) {
      const ref = fk.reference();
      const target = ref.foreignColumns[0]!;
      const targetTable = getTableConfig(ref.foreignTable).name;
      (builder as unknown as References).references(() => derived[targetTable]![columnKey(ref.foreignTable, target.name)]!, {
        onDelete: fk.onDelete,
        onUpdate: fk.onUpdate,
      });
    }
    columns[keyOf.get(c.name)!] = builder;
  }
  return pgTable(cfg.name, columns, (t: Record<string, AnyPgColumn>) => [
    ...cfg.primaryKeys.map((pk) => primaryKey({ name: pk.getName(), columns: pk.columns.map((c) => t[keyOf.get(c.name)!]!) as [AnyPgColumn, ...AnyPgColumn[]] })),
    ...cfg.indexes
      .filter((ix) => !SQLITE_ONLY_INDEXES.has(ix.config.name))
      .map((ix) => {
        const names = ix.config.columns.map((c) => (c as AnySQLiteColumn).name).filter((n) => !SQLITE_ONLY_COLUMNS[ix.config.name]?.includes(n));
        const cols = names.map((n) => t[keyOf.get(n)!]!) as [AnyPgColumn, ...AnyPgColumn[]];
        const built = (ix.config.unique ? uniqueIndex(ix.config.name) : index(ix.config.name)).on(...cols);
        return ix.config.where ? built.where(ix.config.where) : built;
      }),
    ...(PG_ONLY[cfg.name]?.(t) ?? []),
  ]) as DerivedTable;
}

function columnKey(table: SQLiteTable, column: string): string {
  return Object.entries(getTableColumns(table)).find(([, c]) => c.name === column)![0];
}

/** Every table of schema.ts, by its SQL name, in PostgreSQL form. */
const derived: Record<string, DerivedTable> = {};
for (const value of Object.values(sqlite) as unknown[]) {
  if (is(value, SQLiteTable)) derived[getTableConfig(value).name] = toPg(value);
}

export const pgTables = derived;

// Named exports: drizzle-kit reads the tables of this module from its exports. A table added to
// schema.ts is added here too (a test fails until it is).
export const agents = derived.agents!;
export const agentUpdateSlots = derived.agent_update_slots!;
export const jobs = derived.jobs!;
export const jobLogs = derived.job_logs!;
export const apiTokens = derived.api_tokens!;
export const joinTokens = derived.join_tokens!;
export const idempotencyKeys = derived.idempotency_keys!;
export const deployments = derived.deployments!;
export const releases = derived.releases!;
export const webhookDeliveries = derived.webhook_deliveries!;
export const webhookPushes = derived.webhook_pushes!;
export const secrets = derived.secrets!;
export const schedules = derived.schedules!;
export const runs = derived.runs!;
export const runResults = derived.run_results!;
export const images = derived.images!;
export const outbox = derived.outbox!;
export const outboxCursors = derived.outbox_cursors!;
export const outboxRetries = derived.outbox_retries!;
export const appStates = derived.app_states!;
export const appEvents = derived.app_events!;
export const appLogs = derived.app_logs!;
export const notificationDeliveries = derived.notification_deliveries!;
export const notificationAttempts = derived.notification_attempts!;
