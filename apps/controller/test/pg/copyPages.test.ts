import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { openDb } from "../../src/db/client";
import { copySqliteToPostgres } from "../../src/db/copy";
import { connectPg } from "../../src/db/pg";
import { jobs } from "../../src/db/schema";
import { newJob } from "./jobFixtures";

describePostgres("db copy pages", () => {
  test("a table of several pages (1,234 log lines, rowids with gaps) arrives whole, in order, once", async () => {
    const dir = mkdtempSync(join(os.tmpdir(), "deploybot-copy-pages-"));
    const fresh = await freshDatabase();
    try {
      const path = join(dir, "deploybot.db");
      const db = openDb(path, { init: true });
      const job = newJob({ host: "web-1" });
      db.insert(jobs).values({ ...job, status: "succeeded" }).run();
      const insert = db.$client.prepare("INSERT INTO job_logs (job_id, seq, ts, stream, line) VALUES (?, ?, 't', 'stdout', ?)");
      db.$client.transaction(() => {
        for (let seq = 0; seq < 1_300; seq++) insert.run(job.id, seq, `line ${seq}`);
      })();
      // holes in the rowids, as deletes leave them: pages follow the key, not a count
      db.$client.prepare("DELETE FROM job_logs WHERE seq >= 400 AND seq < 466").run();
      db.$client.close();

      const counts = await copySqliteToPostgres(path, fresh.url);
      expect(counts.job_logs).toBe(1_234);
      const sql = connectPg(fresh.url, { max: 1 });
      try {
        const rows = await sql<{ seq: number; line: string }[]>`SELECT seq, line FROM job_logs WHERE job_id = ${job.id} ORDER BY seq`;
        const expected = Array.from({ length: 1_300 }, (_, seq) => seq).filter((seq) => seq < 400 || seq >= 466);
        expect(rows.map((r) => r.seq)).toEqual(expected);
        expect(rows.every((r) => r.line === `line ${r.seq}`)).toBe(true);
      } finally {
        await sql.end();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await fresh.drop();
    }
  }, 60_000);
});
