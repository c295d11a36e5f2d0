import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import pino from "pino";
import { describe, expect, onTestFinished } from "vitest";
import { createApp } from "../src/app";
import { testConfig } from "../src/config";
import { openDb } from "../src/db/client";
import { parseAppsConfig } from "../src/services/appsConfig";
import type { SqliteJobTransitions } from "../src/services/jobTransitions";
import { APPS_YAML, type Harness, test, testEngine } from "./fixture";

/**
 * SQLite's queue deadlines (jobState.ts, jobStore.ts): no index on queue_deadline across pending
 * jobs, an earliest deadline kept in memory, and a look through the claim indexes once it passes.
 * The behaviour on both engines is in test/pg/jobTransitions.test.ts ("queue timeouts").
 */

const state = (h: Harness) => (h.services.jobState as SqliteJobTransitions).state;

/** A pending job row written past the job state (what no controller does: it makes every transition itself). */
function insertPending(client: Database.Database, id: string, target: { host?: string; labels?: string }, queueDeadline: number) {
  client
    .prepare(
      `INSERT INTO jobs (id, kind, app, target_host, target_labels, spec, status, max_attempts, timeout_seconds, queue_deadline, created_at)
       VALUES (?, 'build', 'web', ?, ?, '{"kind":"build","app":"web"}', 'pending', 3, 600, ?, 0)`,
    )
    .run(id, target.host ?? null, target.labels ?? null, queueDeadline);
}

const statusOf = (client: Database.Database, id: string) => client.prepare("SELECT status, error FROM jobs WHERE id = ?").get(id);

describe.runIf(testEngine === "sqlite")("queue deadlines on SQLite", () => {
  test("the reaper does not look at the queue while no pending job can have timed out, and looks once the earliest deadline passed", async ({ h }) => {
    const client = h.db.$client;
    await h.services.leases.sweep(); // nothing pending: no deadline to wait for
    // written behind the job state's back, with a deadline long past: the look is skipped, so it stays
    insertPending(client, "job_unseen", { host: "web-9" }, h.clock.now - 60_000);
    h.clock.advance(1_000);
    await h.services.leases.sweep();
    expect(statusOf(client, "job_unseen")).toEqual({ status: "pending", error: null });
    // a job queued through the state sets the earliest deadline; past it, the look reads every pending job
    const queued = state(h).queue(
      { id: "job_seen", kind: "build", app: "web", targetLabels: ["linux"], spec: { kind: "build", app: "web" }, maxAttempts: 3, timeoutSeconds: 600, queueDeadline: h.clock.now + 2_000, createdAt: h.clock.now },
      null,
    ).row;
    h.clock.advance(2_000);
    await h.services.leases.sweep();
    expect(statusOf(client, "job_unseen")).toEqual({ status: "pending", error: null });
    h.clock.advance(1);
    await h.services.leases.sweep();
    for (const id of ["job_unseen", queued.id]) expect(statusOf(client, id)).toEqual({ status: "timed_out", error: "no agent claimed the job in time" });
  });

  test("a pending job with neither a host nor labels (no claim can take it) still times out", async ({ h }) => {
    const client = h.db.$client;
    insertPending(client, "job_untargeted", {}, h.clock.now + 1_000);
    h.clock.advance(1_001);
    await h.services.leases.sweep(); // the first look of a fresh controller reads the queue
    expect(statusOf(client, "job_untargeted")).toEqual({ status: "timed_out", error: "no agent claimed the job in time" });
  });

  test("the queue-timeout statements read pending jobs through the partial indexes only, the claim indexes without the table", async ({ h }) => {
    const store = state(h).store as unknown as Record<string, Database.Statement>;
    const plan = (statement: Database.Statement, params: Record<string, unknown>) =>
      (h.db.$client.prepare(`EXPLAIN QUERY PLAN ${statement.source}`).all(params) as Array<{ detail: string }>).map((r) => r.detail);
    for (const detail of [plan(store.timeOutQueuedStatement!, { now: 0 }), plan(store.earliestDeadlineStatement!, {})]) {
      expect(detail.filter((d) => /^SCAN jobs\b/.test(d))).toEqual([]);
      expect(detail).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^SEARCH jobs USING COVERING INDEX jobs_claim_host_idx /),
          expect.stringMatching(/^SEARCH jobs USING COVERING INDEX jobs_claim_labels_idx /),
          expect.stringMatching(/^SEARCH jobs USING INDEX jobs_untargeted_pending_idx\b/),
        ]),
      );
    }
    // the update itself finds its rows by primary key
    expect(plan(store.timeOutQueuedStatement!, { now: 0 })[0]).toMatch(/^SEARCH jobs USING INDEX sqlite_autoindex_jobs_1 \(id=\?\)/);
  });
});

describe.runIf(testEngine === "sqlite")("upgrading a database in place", () => {
  test("a database from before this change keeps its pending jobs claimable and timed out by the reaper", async () => {
    const dir = mkdtempSync(join(os.tmpdir(), "deploybot-deadlines-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    // the migrations as they were before 0014: the same files, the journal cut there
    const migrations = join(dir, "drizzle");
    cpSync(join(dirname(fileURLToPath(import.meta.url)), "../drizzle"), migrations, { recursive: true });
    const journalPath = join(migrations, "meta/_journal.json");
    const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: Array<{ idx: number; tag: string }> };
    const before = journal.entries.findIndex((e) => e.tag === "0014_queue_deadlines_in_claim_indexes");
    expect(before).toBeGreaterThan(0);
    writeFileSync(journalPath, JSON.stringify({ ...journal, entries: journal.entries.slice(0, before) }));
    const file = join(dir, "deploybot.db");
    const old = new Database(file);
    migrate(drizzle(old), { migrationsFolder: migrations });
    const indexes = (client: Database.Database) =>
      client.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' AND name LIKE 'jobs_%' ORDER BY name").pluck().all();
    expect(indexes(old)).toContain("jobs_queue_deadline_idx");
    const now = Date.parse("2026-11-22T12:00:00Z");
    insertPending(old, "job_late", { host: "web-1" }, now + 1_000);
    insertPending(old, "job_later", { host: "web-1" }, now + 60_000);
    insertPending(old, "job_labelled", { labels: '["linux"]' }, now + 1_000);
    old.close();

    const db = openDb(file);
    onTestFinished(() => {
      db.$client.close();
    });
    expect(indexes(db.$client)).toEqual([
      "jobs_active_dedupe_idx",
      "jobs_app_idx",
      "jobs_claim_host_idx",
      "jobs_claim_labels_idx",
      "jobs_held_idx",
      "jobs_untargeted_pending_idx",
    ]);
    const columns = (index: string) => db.$client.prepare(`SELECT name FROM pragma_index_info('${index}') ORDER BY seqno`).pluck().all();
    expect(columns("jobs_claim_host_idx")).toEqual(["target_host", "id", "queue_deadline"]);
    expect(columns("jobs_claim_labels_idx")).toEqual(["target_labels", "id", "queue_deadline"]);
    // the old rows are in the rebuilt indexes: the reaper of a fresh controller times out the late ones
    const clock = { now: now + 1_001 };
    const config = testConfig();
    const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
    const { services } = createApp({ db, config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: config.secretKey!, clock: () => clock.now });
    services.drainer.stop();
    await services.leases.sweep();
    expect(["job_late", "job_labelled", "job_later"].map((id) => (statusOf(db.$client, id) as { status: string }).status)).toEqual(["timed_out", "timed_out", "pending"]);
    // and the claim still finds the one left
    const js = (services.jobState as SqliteJobTransitions).state;
    db.$client.prepare("INSERT INTO agents (id, hostname, version, created_at) VALUES ('agt_up', 'web-1', 'test', 0)").run();
    expect(js.claim({ id: "agt_up", hostname: "web-1", labels: [], capabilities: { volumes: true } }, 60_000)?.id).toBe("job_later");
  });
});
