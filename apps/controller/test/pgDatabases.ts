/**
 * Databases of the test PostgreSQL cluster for the controller tests (DEPLOYBOT_TEST_DATABASE=postgres).
 *
 * A harness gets a database of its own, migrated by the checked-in PostgreSQL migrations and
 * empty. Creating and migrating one per harness took 1.1-1.5 s on the CI machine at load 12 (a
 * test of 30 ms became 1.6 s; webhooks.test.ts went from 6 s to 54 s). So the databases are kept
 * for the run: one per worker and slot (`<run>_<worker>_<slot>`; a test holding two harnesses
 * takes two slots), emptied when a harness takes it (every row deleted, identity sequences back to
 * 1: what a fresh migrated database holds), and dropped by the project's global teardown.
 * Without the project's run prefix (the variable set by hand with another project) each harness
 * creates a database and drops it after the test.
 */
import postgres from "postgres";
import { inject } from "vitest";
import { freshDatabase, testPostgresUrl } from "../../../test/support/postgres";
import type { Db } from "../src/db/client";
import { openPgDb } from "../src/db/pgFacade";

declare module "vitest" {
  export interface ProvidedContext {
    /** database name prefix of this run of the controller-pg project (pgGlobalSetup.ts) */
    controllerPgRun: string;
  }
}

export interface TestDb {
  db: Db;
  close(): Promise<void>;
}

// 8: the widest fan-out of one test (8 concurrent requests with one Idempotency-Key)
const POOL = 8;

/** slots of this worker in use by an open harness (module state: per test file) */
const busy: boolean[] = [];
let admin: postgres.Sql | undefined;
let emptying: string | undefined;

export async function openPgTestDb(): Promise<TestDb> {
  if (!testPostgresUrl) throw new Error("DEPLOYBOT_TEST_DATABASE=postgres needs DEPLOYBOT_TEST_POSTGRES_URL (run: sudo bash scripts/test-services.sh)");
  let run: string | undefined;
  try {
    run = inject("controllerPgRun");
  } catch {
    run = undefined;
  }
  return run ? openSlot(run) : openOnce();
}

async function openOnce(): Promise<TestDb> {
  const fresh = await freshDatabase("deploybot_ctl");
  try {
    const db = await openPgDb(fresh.url, { max: POOL });
    return { db: db as unknown as Db, close: once(() => db.close().then(fresh.drop)) };
  } catch (err) {
    await fresh.drop();
    throw err;
  }
}

async function openSlot(run: string): Promise<TestDb> {
  let slot = busy.indexOf(false);
  if (slot < 0) slot = busy.length;
  busy[slot] = true;
  try {
    const name = `${run}_${process.env.VITEST_POOL_ID ?? "0"}_${slot}`;
    // idle_timeout: the worker ends its file without a connection left open
    admin ??= postgres(testPostgresUrl, { max: 1, idle_timeout: 1, onnotice: () => {} });
    const [exists] = await admin`SELECT 1 FROM pg_database WHERE datname = ${name}`;
    if (!exists) await admin.unsafe(`CREATE DATABASE ${name}`);
    const url = new URL(testPostgresUrl);
    url.pathname = `/${name}`;
    // a kept database was migrated when this run created it
    const db = await openPgDb(url.toString(), { max: POOL, migrate: !exists });
    if (exists) await empty(db.$pg);
    return {
      db: db as unknown as Db,
      close: once(async () => {
        await db.close();
        busy[slot] = false;
      }),
    };
  } catch (err) {
    busy[slot] = false;
    throw err;
  }
}

/** Every row of the public tables deleted and identity sequences restarted, in one transaction. */
async function empty(sql: postgres.Sql) {
  if (!emptying) {
    const tables = await sql<{ name: string }[]>`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'`;
    const sequences = await sql<{ name: string }[]>`SELECT sequencename AS name FROM pg_sequences WHERE schemaname = 'public'`;
    // DELETE, not TRUNCATE: TRUNCATE of the 23 tables took 300-500 ms at load 12 (new files for
    // every table and index); the rows a test leaves are few. Foreign keys are not checked while
    // every table is emptied (replica role: no FK triggers fire).
    emptying = [
      "SET LOCAL session_replication_role = replica",
      ...tables.map((t) => `DELETE FROM "${t.name}"`),
      ...sequences.map((s) => `ALTER SEQUENCE "${s.name}" RESTART`),
    ].join(";\n");
  }
  const statements = emptying;
  await sql.begin((tx) => tx.unsafe(statements));
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => {
    done ??= fn();
    return done;
  };
}
