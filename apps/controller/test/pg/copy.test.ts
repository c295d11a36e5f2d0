import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, expect, test } from "vitest";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { createApp } from "../../src/app";
import { openDb } from "../../src/db/client";
import { copySqliteToPostgres } from "../../src/db/copy";
import { connectPg, type PgSql } from "../../src/db/pg";
import { testConfig } from "../../src/config";
import { parseAppsConfig } from "../../src/services/appsConfig";
import { PgJobState } from "../../src/services/pgJobState";
import { APPS_YAML } from "../appsYaml";
import { newJob } from "./jobFixtures";

describePostgres("db copy from SQLite to PostgreSQL", () => {
  let dir: string;
  let url: string;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    dir = mkdtempSync(join(os.tmpdir(), "deploybot-copy-"));
    const fresh = await freshDatabase();
    url = fresh.url;
    drop = fresh.drop;
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await drop?.();
  });

  test("every row moves with its ids, JSON, booleans and blobs; the next outbox id follows; a second copy is refused", async () => {
    const path = join(dir, "deploybot.db");
    const db = openDb(path, { init: true });
    const config = testConfig();
    const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
    const { services } = createApp({ db, config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: config.secretKey! });
    services.drainer.stop();
    db.$client.prepare("INSERT INTO agents (id, hostname, labels, version, created_at, revoked) VALUES ('agt_1', 'web-1', '[\"linux\"]', '1.0', 5, 1)").run();
    const a = (await services.jobState.queue(newJob({ host: "web-1" }), null)).row;
    await services.jobState.queue(newJob({ labels: ["gpu", "linux"] }), "key-1");
    const held = (await services.jobState.claim({ id: "agt_1", hostname: "web-1", labels: ["linux"] }, 60_000))!;
    await services.jobState.finish(held.id, held.leaseId!, { status: "succeeded", result: { digest: "sha256:abc" } });
    db.$client.prepare("INSERT INTO run_results (job_id, path, content, size, truncated, stored_at) VALUES (?, 'out.json', ?, 3, 0, 9)").run(a.id, Buffer.from([0, 1, 255]));
    db.$client.prepare("INSERT INTO app_logs (host, app, container, ts, stream, line) VALUES ('web-1', 'web', 'c1', 't', 'stdout', 'hello')").run();
    const sqliteJob = (await services.jobState.byId(a.id))!;
    const outboxRows = db.$client.prepare("SELECT count(*) FROM outbox").pluck().get() as number;
    db.$client.close();

    const counts = await copySqliteToPostgres(path, url);
    expect([counts.agents, counts.jobs, counts.outbox, counts.run_results, counts.app_logs]).toEqual([1, 2, outboxRows, 1, 1]);

    const sql: PgSql = connectPg(url, { max: 2 });
    try {
      const state = new PgJobState(sql, { clock: Date.now, logger: pino({ level: "silent" }) });
      const copied = await state.byId(a.id);
      expect({ ...copied }).toEqual({ ...sqliteJob });
      expect(copied?.result).toEqual({ digest: "sha256:abc" });
      const [agent] = await sql`SELECT labels, revoked, created_at FROM agents WHERE id = 'agt_1'`;
      expect([agent?.labels, agent?.revoked, agent?.created_at]).toEqual([["linux"], true, 5]);
      const [blob] = await sql`SELECT content FROM run_results`;
      expect([...(blob!.content as Buffer)]).toEqual([0, 1, 255]);
      // identity columns continue after the copied ids
      await state.queue(newJob({ host: "web-2" }), null);
      const [{ max }] = (await sql`SELECT max(id) AS max FROM outbox`) as unknown as [{ max: number }];
      expect(max).toBe(outboxRows + 1);
      await sql`INSERT INTO app_logs (host, app, container, ts, stream, line) VALUES ('web-1', 'web', 'c1', 't', 'stdout', 'next')`;
      expect((await sql`SELECT id FROM app_logs ORDER BY id`).map((r) => r.id)).toEqual([1, 2]);
    } finally {
      await sql.end();
    }
    await expect(copySqliteToPostgres(path, url)).rejects.toThrow(/already holds agents or jobs/);
  }, 60_000);
});
