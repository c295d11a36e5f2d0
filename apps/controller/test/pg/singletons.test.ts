/**
 * Singleton work with several controllers on one PostgreSQL database: one runs it, and when that
 * one's database session dies (what kill -9 of its process does) another takes it over.
 */
import { readFileSync } from "node:fs";
import pino from "pino";
import { expect, test } from "vitest";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { connectPg, openPg } from "../../src/db/pg";
import { PgLeader } from "../../src/services/pgCluster";
import { Singleton } from "../../src/singletons";
import { migratedDatabase } from "./database";

const silent = pino({ level: "silent" });

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describePostgres("singleton work on PostgreSQL", () => {
  const db = migratedDatabase();

  test("three controllers, one ticks; when its session is killed another takes over and ticks on", async () => {
    const key = 0x7e57_0002;
    const ticks = [0, 0, 0];
    const gains: number[] = [];
    const lockConnections = [0, 1, 2].map((i) => connectPg(db.url, { max: 1, name: `singleton test ${i}` }));
    const singletons = [0, 1, 2].map(
      (i) =>
        new Singleton(
          {
            name: "reaper",
            gain: () => void gains.push(i),
            tick: () => void ticks[i]!++,
            nextPassIn: () => 50,
          },
          new PgLeader(lockConnections[i]!, key, `controller ${i}`),
          silent,
        ),
    );
    for (const s of singletons) s.start();
    await until("one controller to tick 5 times", () => ticks.some((t) => t >= 5));
    const first = singletons.findIndex((s) => s.leading);
    expect(ticks.filter((t) => t > 0)).toHaveLength(1);
    expect(ticks[first]).toBeGreaterThan(0);

    // what the database sees when a controller dies: its lock session ends
    const [backend] = await lockConnections[first]!<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    await db.sql`SELECT pg_terminate_backend(${backend!.pid})`;
    await until("another controller to take over", () => singletons.some((s, i) => i !== first && s.leading));
    const second = singletons.findIndex((s, i) => i !== first && s.leading);
    const before = ticks[second]!;
    await until("the new holder to tick", () => ticks[second]! >= before + 3);
    // the old holder noticed it lost the lock (its session was reset) and no longer ticks
    await until("the old holder to step down", () => !singletons[first]!.leading);
    const frozen = ticks[first]!;
    await until("the new holder to tick more", () => ticks[second]! >= before + 6);
    expect(ticks[first]).toBe(frozen);
    expect(singletons.filter((s) => s.leading)).toHaveLength(1);
    expect(gains).toEqual([first, second]);

    // a clean stop hands over at once (the lock is released, not left to the session's end)
    await singletons[second]!.stop();
    await until("a third holder", () => singletons.some((s, i) => i !== second && s.leading));
    await Promise.all(singletons.map((s) => s.stop()));
    await Promise.all(lockConnections.map((c) => c.end()));
  }, 120_000);

  test("a holder whose session was reset steps down for a pass before it asks for the lock again", async () => {
    const key = 0x7e57_0003;
    const connection = connectPg(db.url, { max: 1, name: "reset holder" });
    const said: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void said.push(JSON.parse(line).msg) });
    const leader = new PgLeader(connection, key, "reset holder", logger);
    const pidOf = async () => (await connection<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]!.pid;
    try {
      expect(await leader.holds()).toBe(true);
      expect(await leader.holds()).toBe(true); // the same session: still held
      const old = await pidOf();
      await db.sql`SELECT pg_terminate_backend(${old})`;
      await until("the old session to end", async () => (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ${old}`)[0]!.n === 0);
      await new Promise((r) => setTimeout(r, 200)); // the client hears of it: its next query opens a new session
      // The new session's lock is free, yet it is not taken in this pass: a controller whose
      // session held on gets it first.
      expect(await leader.holds()).toBe(false);
      expect(said).toContain("lost singleton work (connection reset)");
      expect(await pidOf()).not.toBe(old);
      const [lock] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = ${key}`;
      expect(lock!.n).toBe(0);
      expect(await leader.holds()).toBe(true); // the next pass asks, and nobody else wanted it
      expect(said).toContain("took over singleton work");
    } finally {
      await leader.release();
      await connection.end();
    }
  });

  test("three controllers starting on an empty database at once migrate it once (advisory lock)", async () => {
    const fresh = await freshDatabase();
    try {
      const opened = await Promise.all([0, 1, 2].map((i) => openPg(fresh.url, { max: 1, name: `starting ${i}` })));
      const [row] = await opened[0]!.$client<{ n: number }[]>`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`;
      const tables = await opened[0]!.$client<{ n: number }[]>`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name = 'jobs'`;
      expect(tables[0]!.n).toBe(1);
      const journal = JSON.parse(readFileSync(new URL("../../drizzle-pg/meta/_journal.json", import.meta.url), "utf8")) as { entries: unknown[] };
      expect(row!.n).toBe(journal.entries.length);
      await Promise.all(opened.map((d) => d.$client.end()));
    } finally {
      await fresh.drop();
    }
  }, 120_000);
});
