/**
 * Live log lines across controllers: lines stored through one controller reach the log streams
 * of another (NOTIFY), small batches in the notice itself, large ones read back from job_logs.
 */
import pino from "pino";
import { expect, test } from "vitest";
import { describePostgres } from "../../../../test/support/postgres";
import { connectPg } from "../../src/db/pg";
import { JobEvents, type StoredLogLine } from "../../src/services/events";
import { PgLogRelay } from "../../src/services/pgCluster";
import { PgJobState } from "../../src/services/pgJobState";
import { migratedDatabase } from "./database";
import { newJob } from "./jobFixtures";

const silent = pino({ level: "silent" });

describePostgres("log lines across controllers on PostgreSQL", () => {
  const db = migratedDatabase();

  test("lines appended on controller A reach a stream on controller B, once, small and large batches alike", async () => {
    const [a, b] = [connectPg(db.url, { max: 2 }), connectPg(db.url, { max: 2 })];
    const eventsA = new JobEvents();
    const eventsB = new JobEvents();
    const relays = [new PgLogRelay(a, eventsA, silent), new PgLogRelay(b, eventsB, silent)];
    await Promise.all(relays.map((r) => r.start()));
    const { row: job } = await new PgJobState(a, { clock: Date.now, logger: silent }).queue(newJob({ host: "web-1" }), null);

    const heardOnB: StoredLogLine[] = [];
    const heardOnA: StoredLogLine[] = [];
    eventsB.onLogs((jobId, entries) => jobId === job.id && heardOnB.push(...entries));
    eventsA.onLogs((jobId, entries) => jobId === job.id && heardOnA.push(...entries));

    // controller A stores lines (as jobLogs does, then tells its own streams)
    const line = (seq: number, text: string): StoredLogLine => ({ seq, ts: new Date().toISOString(), stream: "stdout", line: text });
    const small = [line(0, "hello"), line(1, "world")];
    const large = Array.from({ length: 40 }, (_, i) => line(2 + i, `${"x".repeat(400)} ${i}`));
    for (const batch of [small, large]) {
      for (const l of batch) await a`INSERT INTO job_logs (job_id, seq, ts, stream, line) VALUES (${job.id}, ${l.seq}, ${l.ts}, ${l.stream}, ${l.line})`;
      eventsA.logsAppended(job.id, batch);
    }

    const deadline = Date.now() + 60_000;
    while (heardOnB.length < small.length + large.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(heardOnB.map((l) => l.seq)).toEqual([...small, ...large].map((l) => l.seq));
    expect(heardOnB.at(-1)).toEqual(large.at(-1));
    // A's own streams heard each line once (its own notices are not relayed back)
    await new Promise((r) => setTimeout(r, 300));
    expect(heardOnA.map((l) => l.seq)).toEqual([...small, ...large].map((l) => l.seq));

    await Promise.all(relays.map((r) => r.stop()));
    await Promise.all([a.end(), b.end()]);
  }, 120_000);
});
