/**
 * Two controllers' cluster wiring on one database (startPgCluster): a job queued through one wakes
 * a long-poll on the other and reaches its signal consumers and event readers; log lines cross;
 * a singleton is held by one and passes to the other when it stops.
 */
import pino from "pino";
import { expect, test } from "vitest";
import { describePostgres } from "../../../../test/support/postgres";
import { connectPg, LOCKS } from "../../src/db/pg";
import { startPgCluster } from "../../src/db/pgWiring";
import { JobEvents, type StoredLogLine } from "../../src/services/events";
import { Notifier } from "../../src/services/notifier";
import type { OutboxEvent } from "../../src/services/outbox";
import { PgJobState } from "../../src/services/pgJobState";
import { migratedDatabase } from "./database";
import { newJob } from "./jobFixtures";

const silent = pino({ level: "silent" });

describePostgres("cluster wiring on PostgreSQL", () => {
  const db = migratedDatabase();

  test("a job queued through A wakes B's long-poll, B's signals and event readers; log lines cross; a singleton moves on stop", async () => {
    const make = async () => {
      const pool = connectPg(db.url, { max: 2 });
      const notifier = new Notifier();
      const events = new JobEvents();
      const signals: OutboxEvent[] = [];
      let appended = 0;
      const cluster = await startPgCluster(
        db.url,
        pool,
        {
          signal: (e) => {
            signals.push(e);
            if (e.type === "job.changed") notifier.jobChanged(e.data as never);
          },
          appended: () => void appended++,
          events,
        },
        silent,
      );
      return { pool, notifier, events, signals, cluster, appended: () => appended };
    };
    const [a, b] = [await make(), await make()];

    const woke = b.notifier.wait({ agentId: "agt_b", hostname: "wire-1", labels: [] }, 600_000); // longer than the test: only a wake-up ends it
    const { row } = await new PgJobState(a.pool, { clock: Date.now, logger: silent }).queue(newJob({ host: "wire-1" }), null);
    await woke;
    expect(b.notifier.waiting).toBe(0);
    expect(b.signals.map((e) => [e.type, e.subject])).toContainEqual(["job.changed", row.id]);
    expect(b.appended()).toBeGreaterThan(0);

    const heard: StoredLogLine[] = [];
    b.events.onLogs((jobId, entries) => jobId === row.id && heard.push(...entries));
    a.events.logsAppended(row.id, [{ seq: 0, ts: "t", stream: "stdout", line: "from A" }]);
    for (let i = 0; i < 600 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(heard.map((l) => l.line)).toEqual(["from A"]);

    const [la, lb] = [a.cluster.leadership(LOCKS.reaper, "reaper"), b.cluster.leadership(LOCKS.reaper, "reaper")];
    expect([await la.holds(), await lb.holds()]).toEqual([true, false]);
    await a.cluster.stop();
    expect(await lb.holds()).toBe(true);

    await b.cluster.stop();
    await Promise.all([a.pool.end(), b.pool.end()]);
  }, 120_000);
});
