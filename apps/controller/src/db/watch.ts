/**
 * In-memory copies of rows, dropped by the statement that changes them (SQLite only).
 *
 * On SQLite one controller owns the file and every write goes through its one connection, so
 * temporary triggers on that connection (not stored in the file, no migration) can call back
 * into this process inside the writing statement itself, whoever made it: a service, the
 * drainer, a raw statement. A write by another process on the same file is not seen, which is
 * why PostgreSQL (several controllers on one database) never keeps such copies.
 *
 * A trigger fires inside the writer's transaction, before it commits or rolls back: dropping a
 * copy then is right either way (a rolled-back write only costs one read). What a keeper must
 * not do is keep a value read inside a transaction, which may yet roll back: see `inTransaction`.
 */

/** The parts of a better-sqlite3 connection the triggers need. */
export type WatchedConnection = {
  function(name: string, fn: (watch: unknown, key: unknown) => null): unknown;
  exec(sql: string): unknown;
  readonly inTransaction: boolean;
};

/** What a watch covers: `table`'s rows, told by their `key` column; `columns`: only updates of these (default any). */
export interface RowWatch {
  /** names the watch (and its triggers); one per table and key */
  name: string;
  table: string;
  key: string;
  columns?: readonly string[];
}

const CHANGED_FUNCTION = "deploybot_rows_changed";
/** per connection, per watch name: everyone told of a changed row (several apps may share one connection in tests) */
const watchers = new WeakMap<WatchedConnection, Map<string, Set<(key: unknown) => void>>>();

/**
 * Calls `changed` with the key of every row that a statement on `sqlite` inserts, deletes or
 * updates (an update: the old and the new key), from inside that statement. Returns whether a
 * transaction is open on the connection now: a value read while one is must not be kept.
 */
export function watchRows(sqlite: WatchedConnection, watch: RowWatch, changed: (key: unknown) => void): () => boolean {
  let byWatch = watchers.get(sqlite);
  if (!byWatch) {
    const all = new Map<string, Set<(key: unknown) => void>>();
    byWatch = all;
    watchers.set(sqlite, all);
    // one function for every watch, told which one by its first argument
    sqlite.function(CHANGED_FUNCTION, (name, key) => {
      const told = typeof name === "string" ? all.get(name) : undefined;
      for (const watcher of told ?? []) watcher(key);
      return null;
    });
  }
  let told = byWatch.get(watch.name);
  if (!told) {
    told = new Set();
    byWatch.set(watch.name, told);
  }
  told.add(changed);
  const call = (row: "OLD" | "NEW") => `SELECT ${CHANGED_FUNCTION}('${watch.name}', ${row}.${watch.key});`;
  const of = watch.columns ? ` OF ${watch.columns.join(", ")}` : "";
  sqlite.exec(`
    CREATE TEMP TRIGGER IF NOT EXISTS ${watch.name}_updated AFTER UPDATE${of} ON main.${watch.table} BEGIN ${call("OLD")} ${call("NEW")} END;
    CREATE TEMP TRIGGER IF NOT EXISTS ${watch.name}_deleted AFTER DELETE ON main.${watch.table} BEGIN ${call("OLD")} END;
    CREATE TEMP TRIGGER IF NOT EXISTS ${watch.name}_inserted AFTER INSERT ON main.${watch.table} BEGIN ${call("NEW")} END;
  `);
  return () => sqlite.inTransaction;
}
