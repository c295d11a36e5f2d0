import { AsyncLocalStorage } from "node:async_hooks";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type postgres from "postgres";
import type { Db } from "./client";
import type { Tx, WriteFacade } from "./facade";
import { connectPg, openPg, type PgOptions } from "./pg";

type PgDrizzle = PostgresJsDatabase<Record<string, never>>;

const DEADLOCK_RETRIES = 3;

/** 40P01: deadlock_detected, on the error or the driver error drizzle wraps. */
function isDeadlock(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (e.code === "40P01") return true;
  }
  return false;
}

export type PgFacadeDb = Db & {
  /** the pool, for statements written for postgres.js (PgJobState) */
  $pg: postgres.Sql;
  /** the postgres.js connection of the `write` body running now (its transaction or savepoint), if any */
  $pgOpen(): postgres.TransactionSql | undefined;
  close(): Promise<void>;
};

/**
 * The services' database on PostgreSQL: the same `Db` shape they use on SQLite.
 *
 * Tables: the services build queries from schema.ts (sqlite-core tables); drizzle's PostgreSQL
 * dialect renders them by table and column name, which pgSchema.ts keeps identical, and encodes
 * values with the same column codecs. For those codecs to read what PostgreSQL returns, this pool
 * hands json/jsonb columns back as their JSON text (the SQLite shape, parsed by the column), int8
 * as numbers (pg.ts) and booleans as booleans (the SQLite boolean column maps them back as it
 * maps 1/0). One query code path for both engines, no table lookup per query.
 *
 * Transactions: `write(body)` runs the body in a drizzle transaction on one pooled connection.
 * Services call `this.deps.db` inside a body as they do outside; an AsyncLocalStorage carries
 * the body's transaction, so those calls run on its connection (not on another one of the pool,
 * which would wait behind the body's own row locks). A body that PostgreSQL rolled back to break
 * a deadlock runs again (up to 3 times): bodies hold database work only, so a second run does
 * what the first would have.
 */
export async function openPgDb(url: string, opts: PgOptions & { migrate?: boolean } = {}): Promise<PgFacadeDb> {
  // migrations first (under the advisory lock), on their own pool. `migrate: false` (tests that
  // reopen a database they migrated) saves that pool and lock: 120-180 ms of a 200 ms open at load 15.
  if (opts.migrate !== false) {
    const migrated = await openPg(url, opts);
    await migrated.$client.end({ timeout: 5 });
  }
  const sql = connectPg(url, opts);
  const asText = (v: string) => v;
  sql.options.parsers[114] = asText;
  sql.options.parsers[3802] = asText;
  // SQLite's boolean column writes 1 / 0; postgres.js would serialize any non-`true` as false
  sql.options.serializers[16] = (v: unknown) => (v === true || v === 1 || v === "1" || v === "t" ? "t" : "f");
  const root = drizzle(sql) as unknown as PgDrizzle;
  // the open transaction (or savepoint) of the running body, and what waits for its commit
  const current = new AsyncLocalStorage<{ tx: PgDrizzle; committed: Array<() => void> }>();
  const builder = (): PgDrizzle => current.getStore()?.tx ?? root;

  const facade: WriteFacade = {
    engine: "postgres",
    async write<T>(body: (tx: Tx) => Promise<T>): Promise<T> {
      const open = current.getStore();
      // a body that calls another service's write joins its transaction (PostgreSQL can wait)
      if (open) return body(open.tx as unknown as Tx);
      for (let attempt = 1; ; attempt++) {
        const committed: Array<() => void> = [];
        try {
          const result = await root.transaction((tx) => current.run({ tx: tx as unknown as PgDrizzle, committed }, () => body(tx as unknown as Tx)));
          for (const fn of committed) fn();
          return result;
        } catch (err) {
          // PostgreSQL broke a deadlock by rolling this transaction back (two transactions that
          // append to the outbox, each waiting for a row the other one locked): nothing of it
          // committed, so the body runs again, a few times, before the caller sees the error
          if (attempt >= DEADLOCK_RETRIES || !isDeadlock(err)) throw err;
        }
      }
    },
    async savepoint<T>(body: () => Promise<T>): Promise<T> {
      const open = current.getStore();
      if (!open) throw new Error("savepoint outside a transaction");
      // drizzle's nested transaction is a savepoint
      const outer = open.tx as unknown as { transaction<R>(fn: (tx: PgDrizzle) => Promise<R>): Promise<R> };
      return outer.transaction((sp) => current.run({ tx: sp, committed: open.committed }, body));
    },
    afterCommit(fn: () => void): void {
      const open = current.getStore();
      if (open) open.committed.push(fn);
      else setImmediate(fn);
    },
  };

  // Every query builder entry point goes to the open transaction, if any, else to the pool.
  const entry = new Set(["select", "selectDistinct", "insert", "update", "delete", "execute", "with", "$count"]);
  const db = new Proxy(facade as object, {
    get(target, prop) {
      if (prop in target) return (target as Record<PropertyKey, unknown>)[prop];
      if (prop === "$pg") return sql;
      if (prop === "$pgOpen") return () => (current.getStore()?.tx as unknown as { session?: { client?: postgres.TransactionSql } } | undefined)?.session?.client;
      if (prop === "close") return () => sql.end({ timeout: 5 });
      if (typeof prop === "string" && entry.has(prop)) {
        const b = builder() as unknown as Record<string, (...a: unknown[]) => unknown>;
        return b[prop]!.bind(b);
      }
      return (root as unknown as Record<PropertyKey, unknown>)[prop];
    },
  });
  return db as PgFacadeDb;
}
