import type Database from "better-sqlite3";
import type { BetterSQLite3Database } from "drizzle-orm/better-sqlite3";
import type * as schema from "./schema";

/**
 * What a service writes through inside a transaction: the drizzle query builder, awaited. On
 * SQLite it is the connection itself (the transaction is the connection's); on PostgreSQL it is
 * the connection the transaction holds.
 */
export type Tx = BetterSQLite3Database<typeof schema>;

export type Engine = "sqlite" | "postgres";

/** The one way a service opens a transaction, whatever the engine. */
export interface WriteFacade {
  readonly engine: Engine;
  /**
   * Runs `body` in one transaction: committed when it resolves, rolled back when it throws.
   * SQLite: between BEGIN IMMEDIATE and COMMIT, and the body may await only database calls
   * (which resolve at once there), so it ends inside one macrotask and no other request
   * interleaves — the guarantee the services relied on when transactions were synchronous. A body
   * that awaits anything else (a timer, a socket, a file) fails the transaction.
   * PostgreSQL: the body holds one pooled connection for its duration.
   */
  write<T>(body: (tx: Tx) => Promise<T>): Promise<T>;
  /**
   * Inside a `write` body: runs `body` in a savepoint, so a throw undoes only its writes (and
   * is rethrown) while the enclosing transaction goes on.
   */
  savepoint<T>(body: () => Promise<T>): Promise<T>;
  /**
   * Runs `fn` once the transaction open around the caller has committed (dropped if it rolls
   * back), or soon when none is open: local wake-ups for what the transaction wrote.
   */
  afterCommit(fn: () => void): void;
}

export class TransactionYieldedError extends Error {
  constructor() {
    super(
      "a database transaction awaited something other than the database (a timer, a socket, a file); " +
        "on SQLite a transaction must finish without yielding to the event loop, so it was rolled back",
    );
  }
}

/**
 * The SQLite facade over one better-sqlite3 connection (one connection: statements of every
 * request share it, so a transaction must never be open while another request runs one).
 *
 * A body starts in a callback of its own (setImmediate), where no other promise chain has work
 * queued: while it awaits database calls, which resolve at once, only its own continuations
 * run, and it commits before the event loop moves on — as exclusive as the synchronous
 * transactions it replaces. Started inline instead, a body would interleave with the other
 * chains of the same turn (concurrent requests resumed together): their statements would land
 * in this transaction and be rolled back with it. Writes queue in the order they were asked for.
 * A body still pending when the next turn begins awaited something else (a timer, a socket, a
 * file, or a nested `write`, which waits for this one): it is rolled back at that point and
 * fails with TransactionYieldedError. Code inside a body calls other services' transaction-free
 * methods directly; better-sqlite3's own nested `transaction()` wrappers become savepoints.
 */
export function sqliteWriteFacade(db: Tx, client: Database.Database): WriteFacade {
  const begin = client.prepare("BEGIN IMMEDIATE");
  const commit = client.prepare("COMMIT");
  const rollback = client.prepare("ROLLBACK");
  const savepoint = client.prepare("SAVEPOINT facade");
  const release = client.prepare("RELEASE facade");
  const rollbackTo = client.prepare("ROLLBACK TO facade");

  function run<T>(body: (tx: Tx) => Promise<T>, resolve: (v: T) => void, reject: (e: unknown) => void): void {
    try {
      begin.run();
    } catch (err) {
      reject(err);
      return;
    }
    let expired = false;
    let settled = false;
    const guard = setImmediate(() => {
      if (settled) return;
      expired = true;
      if (client.inTransaction) rollback.run();
    });
    const finish = (ok: boolean, value: unknown) => {
      settled = true;
      clearImmediate(guard);
      if (expired) {
        reject(Object.assign(new TransactionYieldedError(), ok ? {} : { cause: value }));
        return;
      }
      if (!ok) {
        if (client.inTransaction) rollback.run();
        reject(value);
        return;
      }
      try {
        commit.run();
        resolve(value as T);
      } catch (err) {
        if (client.inTransaction) rollback.run();
        reject(err);
      }
    };
    let pending: Promise<T>;
    try {
      pending = body(db);
    } catch (err) {
      finish(false, err);
      return;
    }
    pending.then(
      (v) => finish(true, v),
      (e) => finish(false, e),
    );
  }

  return {
    engine: "sqlite",
    write<T>(body: (tx: Tx) => Promise<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        setImmediate(() => run(body, resolve, reject));
      });
    },
    // a body ends (commits or rolls back) within the turn it began in: the next turn is after it
    afterCommit(fn: () => void): void {
      setImmediate(fn);
    },
    async savepoint<T>(body: () => Promise<T>): Promise<T> {
      if (!client.inTransaction) throw new Error("savepoint outside a transaction");
      savepoint.run();
      try {
        const result = await body();
        release.run();
        return result;
      } catch (err) {
        if (client.inTransaction) {
          rollbackTo.run();
          release.run();
        }
        throw err;
      }
    },
  };
}
