import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { type BetterSQLite3Database, drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { sqliteWriteFacade, type WriteFacade } from "./facade";
import * as schema from "./schema";

/** The drizzle query builder (awaited) plus the one transaction facade, `write`. */
export type Db = BetterSQLite3Database<typeof schema> & { $client: Database.Database } & WriteFacade;

const migrationsFolder = join(dirname(fileURLToPath(import.meta.url)), "../../drizzle");

/** Files a controller leaves in its data dir: any of them means a database was here before. */
const INSTALLATION_MARKERS = ["secret.key", "controller.pid"];

/**
 * Opens (creating if needed) the database, sets the pragmas once and applies the migrations.
 * A missing database file in a data dir that shows an existing installation (its secret.key,
 * backups, WAL leftovers) is refused unless `init`: creating a fresh empty database there would
 * silently drop every token, secret, release and agent identity.
 */
export function openDb(path: string, opts: { init?: boolean; onMigrated?: (m: Migrated) => void } = {}): Db {
  if (path !== ":memory:") {
    mkdirSync(dirname(path), { recursive: true });
    if (!existsSync(path) && !opts.init) {
      const dir = dirname(path);
      const signs = readdirSync(dir).filter((f) => INSTALLATION_MARKERS.includes(f) || f.endsWith(".db-wal") || f.endsWith(".db-shm") || f.startsWith("backup-"));
      if (signs.length > 0) {
        throw new Error(
          `the database ${path} is missing, but ${dir} holds an existing installation (${signs.join(", ")}). ` +
            "Restore the database from a backup, or start with --init to create an empty one on purpose.",
        );
      }
    }
  }
  let sqlite: Database.Database;
  try {
    sqlite = new Database(path);
    sqlite.pragma("journal_mode = WAL");
  } catch (err) {
    throw corruptOr(err, path);
  }
  sqlite.pragma("journal_mode = WAL");
  // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the
  // last transactions, which is the usual trade for a queue this busy.
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  // Checkpoint every ~40 MB of WAL, not SQLite's 4 MB: a checkpoint syncs the database file, and
  // every job transition writes its outbox page too, so checkpoints came twice as often as the
  // same loop without an outbox. Measured (pnpm bench:jobs, same machine, interleaved): claim +
  // finish cycles 780-815/s -> 1,220-1,358/s; the bare statement loop was unchanged (2,800-3,400/s).
  sqlite.pragma("wal_autocheckpoint = 10000");
  const db = drizzle(sqlite, { schema });
  try {
    const journal = (JSON.parse(readFileSync(join(migrationsFolder, "meta/_journal.json"), "utf8")) as { entries: JournalEntry[] }).entries;
    const before = refuseNewerDatabase(sqlite, path, journal);
    migrate(db, { migrationsFolder });
    const after = appliedMigrations(sqlite).n;
    // an upgrade says what it applied, once: a restart on a migrated database says nothing
    if (after > before) opts.onMigrated?.({ from: before, to: after, applied: journal.slice(before, after).map((e) => e.tag) });
  } catch (err) {
    throw corruptOr(err, path);
  }
  return Object.assign(db, sqliteWriteFacade(db, sqlite)) as Db;
}

/**
 * A database an upgrade already migrated past this version (a controller rolled back, a backup of
 * a newer version restored) is refused: drizzle would apply nothing and start, and this version
 * would then leave the newer tables and columns it does not know to go stale under the next one
 * (a deploy made here is missing from the desired state the newer controller hands to agents).
 */
function refuseNewerDatabase(sqlite: Database.Database, path: string, journal: JournalEntry[]): number {
  const applied = appliedMigrations(sqlite);
  const newest = journal[journal.length - 1]!;
  if (applied.n > journal.length || (applied.at ?? 0) > newest.when) {
    throw new Error(
      `the database ${path} was migrated by a newer deploybot controller: ${applied.n} migrations, this version knows ${journal.length} (the newest ${newest.tag}). ` +
        "Start that version again, or restore a backup taken before the upgrade (README: Backups and restore).",
    );
  }
  return applied.n;
}

type JournalEntry = { when: number; tag: string };

/** What an upgrade applied at start, for the log. */
export type Migrated = { from: number; to: number; applied: string[] };

/** Migrations recorded in the database (none yet: a new file). */
function appliedMigrations(sqlite: Database.Database): { n: number; at: number | null } {
  const table = sqlite.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '__drizzle_migrations'").get();
  if (!table) return { n: 0, at: null };
  return sqlite.prepare("SELECT count(*) AS n, max(created_at) AS at FROM __drizzle_migrations").get() as { n: number; at: number | null };
}

/** SQLite's own words for a damaged file, turned into one clear message. */
export function isCorruption(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? "";
  return code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB";
}

function corruptOr(err: unknown, path: string): Error {
  return isCorruption(err) ? new Error(`the database ${path} is corrupt (${(err as Error).message}); restore it from a backup`) : (err as Error);
}

/** Identity of a database file (device and inode), to notice it was deleted or replaced under us. */
export function fileIdentity(path: string): string | null {
  if (path === ":memory:") return "memory";
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}
