/**
 * The log, desired-state and redaction services on both engines: the same service code, built
 * on the same drizzle queries, over SQLite and over the test PostgreSQL cluster (pgFacade.ts).
 */
import { eq } from "drizzle-orm";
import pino from "pino";
import { expect, test } from "vitest";
import { testConfig } from "../../src/config";
import type { Db } from "../../src/db/client";
import { agents, appStates, jobLogs, jobs, webhookDeliveries } from "../../src/db/schema";
import { AppLogService } from "../../src/services/appLogs";
import { AppStateService } from "../../src/services/appStates";
import { ControllerMetrics } from "../../src/services/metrics";
import { NotificationService } from "../../src/services/notifications";
import { startReceiver } from "../receiver";
import type { OutboxEvent } from "../../src/services/outbox";
import { IngestRedaction } from "../../src/services/redaction";
import { SecretStore } from "../../src/services/secrets";
import { WebhookService } from "../../src/services/webhooks";
import { parseAppsConfig } from "../../src/services/appsConfig";
import type { Deps } from "../../src/services/deps";
import type { StoredLogLine } from "../../src/services/events";
import { TRUNCATION_MARKER, JobLogService } from "../../src/services/jobLogs";
import { DbJobLeases } from "../../src/services/jobTransitions";
import { LeaseService } from "../../src/services/leases";
import { APPS_YAML } from "../appsYaml";
import { onBothEngines } from "./database";
import { newJob } from "./jobFixtures";

const NOW = 7_000_000;

function depsFor(db: Db, overrides: Record<string, unknown> = {}) {
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  const appended: { lines: StoredLogLine[] }[] = [];
  const outbox: unknown[][] = [];
  const deps = {
    db,
    config: testConfig({ logMaxBytes: 1_000, ...overrides }),
    clock: () => NOW,
    logger: pino({ level: "silent" }),
    apps: () => apps,
    events: { logsAppended: (_id: string, lines: StoredLogLine[]) => appended.push({ lines }) },
    outbox: { append: (...a: unknown[]) => outbox.push(a) },
  } as unknown as Deps;
  return { deps, appended, outbox };
}

/** a job of `agentId` running under lease `lse_1` */
async function runningJob(db: Db, engine: string, suffix: string) {
  const agentId = `agt_${suffix}_${engine}`;
  await db.insert(agents).values({ id: agentId, hostname: `host-${suffix}-${engine}`, version: "1", registeredAt: 1 });
  const job = { ...newJob({ host: `host-${suffix}-${engine}` }), status: "running", agentId, leaseId: "lse_1", leaseExpiresAt: 1_000 };
  await db.insert(jobs).values(job);
  return { agentId, jobId: job.id };
}

function leasesOn(deps: Deps) {
  const state = Object.assign(new DbJobLeases(deps.db), {
    byId: async (id: string) => (await deps.db.select().from(jobs).where(eq(jobs.id, id)))[0],
  });
  return new LeaseService(deps, state as unknown as ConstructorParameters<typeof LeaseService>[1]);
}

const sample = (text: string, name: string) => {
  const line = text.split("\n").find((l) => l.startsWith(name));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
};

function contract(engine: "sqlite" | "postgres", open: () => Db) {
  test(`${engine}: notifications (NotificationService) — one delivery per change, crash loops, attempts, list, prune`, async () => {
    const receiver = await startReceiver();
    try {
      const db = open();
      const yaml = `${APPS_YAML}
notifications:
  targets:
    - name: ops-${engine}
      type: webhook
      url: ${receiver.url}
      secret: whsec-0123456789abcdef
      events: [deployment.succeeded, app.crash_looping]
      allow_private: true
`;
      const apps = parseAppsConfig(yaml, "apps.yaml");
      let now = NOW;
      const deps = { ...depsFor(db).deps, apps: () => apps, clock: () => now } as Deps;
      const notifications = new NotificationService(deps, { forApp: async () => new (await import("@deploybot/protocol/redact")).Redactor("join-token-value") });
      const deployed = { id: 1, type: "deployment.changed", app: "web", subject: "dpl_1", data: { id: `dpl_${engine}`, status: "succeeded", hosts: ["web-1"], sha: "0123456789abcdef" }, createdAt: NOW } as OutboxEvent;
      await db.write(() => notifications.enqueue(deployed));
      await db.write(() => notifications.enqueue({ ...deployed, id: 2 })); // the same change again: no second delivery
      // three exits within ten minutes is a crash loop
      const host = `host-n-${engine}`;
      const states = new AppStateService(deps, async () => { throw new Error("no job read here"); }, async () => ({}));
      await states.recordEvents({ id: `agt_n_${engine}`, hostname: host }, [1, 2, 3].map((seq) => ({ seq, app: "web", kind: "exited" as const, reason: `exit ${seq}`, at: new Date(NOW - seq * 60_000).toISOString(), exitCode: seq })));
      const exit = { id: 3, type: "app.reconciled", app: "web", subject: host, data: { host, kind: "exited", reason: "exit 1", at: new Date(NOW - 60_000).toISOString() }, createdAt: NOW } as OutboxEvent;
      await db.write(() => notifications.enqueue(exit));
      const pending = await notifications.list({ limit: 10, target: `ops-${engine}` });
      expect(pending.map((d) => [d.event, d.status])).toEqual(expect.arrayContaining([["deployment.succeeded", "pending"], ["app.crash_looping", "pending"]]));
      expect(pending).toHaveLength(2);

      receiver.answer(500, "down");
      await notifications.sendDue();
      const failed = await notifications.list({ limit: 10, target: `ops-${engine}` });
      expect(failed.map((d) => [d.status, d.attempts, d.lastError, d.history.map((a) => [a.attempt, a.statusCode, a.outcome])])).toEqual([
        ["pending", 1, "HTTP 500: down", [[1, 500, "failed"]]],
        ["pending", 1, "HTTP 500: down", [[1, 500, "failed"]]],
      ]);
      receiver.answer(200, "ok");
      now += 3600_000;
      await notifications.sendDue();
      const delivered = await notifications.list({ limit: 10, status: "delivered", apps: ["web"] });
      expect(delivered.filter((d) => d.target === `ops-${engine}`).map((d) => d.history.length)).toEqual([2, 2]);
      expect(await notifications.list({ limit: 10, apps: [] })).toEqual([]);
      expect(await notifications.get(delivered[0]!.id)).toMatchObject({ status: "delivered", attempts: 2 });
      expect(receiver.received.length).toBeGreaterThanOrEqual(4);
      // ended deliveries older than the retention go, with their attempts
      now += 3600_000;
      expect(await notifications.prune(60_000)).toBeGreaterThanOrEqual(2);
      expect(await notifications.list({ limit: 10, target: `ops-${engine}` })).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  test(`${engine}: metrics (ControllerMetrics) — counts from the database, claim latency from job times`, async () => {
    const db = open();
    const metrics = new ControllerMetrics(db, () => NOW, () => 2);
    const pending = { ...newJob({ host: "web-1" }, { kind: "deploy" }), status: "pending", createdAt: NOW - 30_000 };
    const claimed = { ...newJob({ host: "web-1" }, { kind: "deploy" }), status: "assigned", createdAt: NOW - 10_000, assignedAt: NOW - 7_500 };
    await db.insert(jobs).values([pending, claimed]);
    await db.insert(agents).values({ id: `agt_m_${engine}`, hostname: `host-m-${engine}`, version: "1", registeredAt: 1, online: true, lastHeartbeatAt: NOW - 4_000 });
    await metrics.observeJobChange({ data: { id: claimed.id, kind: "deploy", status: "assigned", transition: "claimed" } } as unknown as OutboxEvent);
    // the oldest-job and heartbeat-age gauges are set by the queue and agents gauges' collect,
    // which runs after their own output: they show the previous scrape's values
    await metrics.text();
    const text = await metrics.text();
    expect(sample(text, 'deploybot_jobs{kind="deploy",status="pending"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, "deploybot_queue_depth")).toBeGreaterThanOrEqual(1);
    expect(sample(text, "deploybot_queue_oldest_job_age_seconds")).toBeGreaterThanOrEqual(30);
    expect(sample(text, 'deploybot_agents{state="online"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, "deploybot_agent_heartbeat_age_seconds_max")).toBeGreaterThanOrEqual(4);
    expect(sample(text, "deploybot_sse_subscribers")).toBe(2);
    expect(sample(text, "deploybot_database_size_bytes")).toBeGreaterThan(0);
    expect(sample(text, 'deploybot_job_claim_latency_seconds_sum{kind="deploy"}')).toBe(2.5);
    expect(sample(text, 'deploybot_job_claim_latency_seconds_count{kind="deploy"}')).toBe(1);
  });

  test(`${engine}: app logs (AppLogService) — offsets, retries, gaps, trimming, reads`, async () => {
    const { deps } = depsFor(open(), { appLogLines: 3 });
    const logs = new AppLogService(deps);
    const agentId = `agt_al_${engine}`;
    const agent = { id: agentId, hostname: `host-al-${engine}` };
    await deps.db.insert(agents).values({ id: agentId, hostname: agent.hostname, version: "1", registeredAt: 1 });
    const seen: string[] = [];
    const stop = logs.subscribe("web", agent.hostname, (lines) => seen.push(...lines.map((l) => l.line)));
    const lines = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ app: "web", container: "web-1", ts: `2026-11-27T07:00:0${from + i}Z`, stream: "stdout" as const, line: `l${from + i}` }));
    // the first batch is trimmed to the 3 newest lines at once
    expect(await logs.append(agent, 0, lines(0, 5))).toBe(5);
    expect(await logs.append(agent, 3, lines(3, 3))).toBe(6);
    await expect(logs.append(agent, 9, lines(9, 1))).rejects.toMatchObject({ status: 409, code: "offset_mismatch", details: { offset: 6 } });
    stop();
    expect(seen).toEqual(["l0", "l1", "l2", "l3", "l4", "l5"]);
    const all = await logs.read("web", {});
    expect(all.map((l) => l.line)).toEqual(["l2", "l3", "l4", "l5"]);
    expect(all[0]).toMatchObject({ host: agent.hostname, container: "web-1", stream: "stdout", ts: "2026-11-27T07:00:02.000000000Z" });
    expect((await logs.read("web", { tail: 2 })).map((l) => l.line)).toEqual(["l4", "l5"]);
    expect((await logs.read("web", { after: all[1]!.id, host: agent.hostname })).map((l) => l.line)).toEqual(["l4", "l5"]);
    expect((await logs.read("web", { since: "2026-11-27T07:00:04Z" })).map((l) => l.line)).toEqual(["l4", "l5"]);
    expect(await logs.read("web", { host: "elsewhere" })).toEqual([]);
  });

  test(`${engine}: desired state (AppStateService) — host versions, reconcile events stored once`, async () => {
    const { deps, outbox } = depsFor(open());
    const states = new AppStateService(deps, async () => { throw new Error("no job read here"); }, async () => ({}));
    const host = `host-s-${engine}`;
    expect(await states.versionOf(host)).toBe(0);
    await states.set("web", host, { state: "running", replicas: 2 });
    await states.set("api", host, { state: "stopped" });
    const v = await states.versionOf(host);
    expect(v).toBeGreaterThanOrEqual(2);
    expect(await states.versionOf(`${host}-other`)).toBe(0);
    expect((await states.rows({ host })).map((r) => [r.app, r.state, r.version <= v])).toEqual([["api", "stopped", true], ["web", "running", true]]);
    expect(await states.forAgent(host, v)).toBeUndefined();
    expect((await states.forAgent(host, v - 1))?.apps.map((a) => a.app)).toEqual(["api", "web"]);
    const agent = { id: `agt_s_${engine}`, hostname: host };
    const exited = { seq: 1, app: "web", kind: "exited", reason: "exit 1", at: "2026-11-27T07:00:00.000Z", exitCode: 1 } as const;
    expect(await states.recordEvents(agent, [exited])).toBe(1);
    // a resend stores nothing and streams nothing
    expect(await states.recordEvents(agent, [exited, { ...exited, seq: 2, reason: "exit 2", exitCode: 2 }])).toBe(2);
    expect(outbox.map((a) => a[0])).toEqual(["app.reconciled", "app.reconciled"]);
    expect((await states.events({ host, limit: 10 })).map((e) => [e.reason, e.exitCode, e.at])).toEqual([
      ["exit 2", 2, "2026-11-27T07:00:00.000Z"],
      ["exit 1", 1, "2026-11-27T07:00:00.000Z"],
    ]);
    expect(await deps.db.select({ app: appStates.app }).from(appStates).where(eq(appStates.host, host))).toHaveLength(2);
  });

  test(`${engine}: ingest redaction (IngestRedaction) — a secret set after the first use is redacted too`, async () => {
    const { deps } = depsFor(open());
    const store = new SecretStore(deps, "k".repeat(43));
    const redaction = new IngestRedaction(deps, store);
    const app = "web";
    expect((await redaction.forApp(app)).redact("token hunter2-long-value")).toBe("token hunter2-long-value");
    await store.put(app, "PASSWORD", "hunter2-long-value");
    expect((await redaction.forApp(app)).redact("token hunter2-long-value")).not.toContain("hunter2-long-value");
    const { jobId } = await runningJob(deps.db, engine, "red");
    await deps.db.update(jobs).set({ app }).where(eq(jobs.id, jobId));
    expect((await redaction.statusReport(jobId, { error: "failed with hunter2-long-value" })).error).not.toContain("hunter2-long-value");
  });

  test(`${engine}: webhook deliveries (WebhookService.list) — newest first, by id within a millisecond`, async () => {
    const { deps } = depsFor(open());
    const webhooks = new WebhookService(deps, { create: async () => { throw new Error("no deploy here"); } } as unknown as ConstructorParameters<typeof WebhookService>[1]);
    const row = (id: string, at: number) => ({ deliveryId: `${engine}-${id}`, event: "push", outcome: "ignored", reason: "test", receivedAt: 9_000_000_000_000 + at });
    await deps.db.insert(webhookDeliveries).values([row("a", 1), row("c", 2), row("b", 2), row("d", 0)]);
    expect((await webhooks.list(3)).map((d) => d.deliveryId)).toEqual([`${engine}-c`, `${engine}-b`, `${engine}-a`]);
  });

  test(`${engine}: job logs (JobLogService) — offsets, retries, gaps, the size limit, reads`, async () => {
    const { deps, appended } = depsFor(open());
    const logs = new JobLogService(deps, leasesOn(deps));
    const { agentId, jobId } = await runningJob(deps.db, engine, "logs");
    const entries = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ ts: `2026-11-27T07:00:0${i}Z`, stream: "stdout" as const, line: `line ${from + i}` }));

    expect(await logs.append(agentId, jobId, { leaseId: "lse_1", offset: 0, entries: entries(0, 3) })).toEqual({ offset: 3, truncated: false, cancelRequested: false });
    // a retry overlapping the stored lines stores only its new tail
    expect((await logs.append(agentId, jobId, { leaseId: "lse_1", offset: 2, entries: entries(2, 3) })).offset).toBe(5);
    await expect(logs.append(agentId, jobId, { leaseId: "lse_1", offset: 9, entries: entries(9, 1) })).rejects.toMatchObject({ status: 409, code: "offset_mismatch" });
    await expect(logs.append(agentId, jobId, { leaseId: "lse_old", offset: 5, entries: entries(5, 1) })).rejects.toMatchObject({ status: 409 });
    // the lease was renewed by the append
    const [row] = await deps.db.select().from(jobs).where(eq(jobs.id, jobId));
    expect(row).toMatchObject({ logOffset: 5, logTruncated: false, leaseExpiresAt: NOW + leasesOn(deps).leaseMs });

    // 1,000 bytes: the big line is replaced by the marker, and later lines are dropped
    const big = await logs.append(agentId, jobId, { leaseId: "lse_1", offset: 5, entries: [{ ts: "t", stream: "stderr", line: "x".repeat(2_000) }, ...entries(6, 2)] });
    expect(big).toEqual({ offset: 8, truncated: true, cancelRequested: false });
    expect(appended.map((a) => a.lines.length)).toEqual([3, 2, 1]);

    const read = await logs.read(jobId, 0, 100);
    expect(read.entries.map((e) => [e.seq, e.stream, e.line])).toEqual([
      [1, "stdout", "line 1"],
      [2, "stdout", "line 2"],
      [3, "stdout", "line 3"],
      [4, "stdout", "line 4"],
      [5, "system", TRUNCATION_MARKER],
    ]);
    expect(read).toMatchObject({ next: 5, truncated: true, finished: false });
    expect((await logs.read(jobId, -1, 1)).entries).toEqual([{ seq: 0, ts: "2026-11-27T07:00:00Z", stream: "stdout", line: "line 0" }]);
    expect(await deps.db.select({ seq: jobLogs.seq }).from(jobLogs).where(eq(jobLogs.jobId, jobId))).toHaveLength(6);
  });

  test(`${engine}: job logs in batches of hundreds — full chunks and a remainder, an overlapping retry, every line once and in order`, async () => {
    const { deps, appended } = depsFor(open(), { logMaxBytes: 10_000_000 });
    const logs = new JobLogService(deps, leasesOn(deps));
    const { agentId, jobId } = await runningJob(deps.db, engine, "batches");
    const entries = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({ ts: `2026-11-27T08:00:00.${String(from + i).padStart(3, "0")}Z`, stream: (from + i) % 7 === 0 ? ("stderr" as const) : ("stdout" as const), line: `batch line ${from + i}` }));
    // 250 lines: two full chunks of 100 (SQLite stores each in one statement) and 50 one by one
    expect((await logs.append(agentId, jobId, { leaseId: "lse_1", offset: 0, entries: entries(0, 250) })).offset).toBe(250);
    // a retry from 200 with 150 lines: the 50 already stored are skipped, 100 new ones stored
    expect((await logs.append(agentId, jobId, { leaseId: "lse_1", offset: 200, entries: entries(200, 150) })).offset).toBe(350);
    expect(appended.map((a) => a.lines.length)).toEqual([250, 100]);
    const rows = await deps.db.select().from(jobLogs).where(eq(jobLogs.jobId, jobId)).orderBy(jobLogs.seq);
    expect(rows.map((r) => [r.seq, r.ts, r.stream, r.line])).toEqual(entries(0, 350).map((e, i) => [i, e.ts, e.stream, e.line]));
    const [row] = await deps.db.select().from(jobs).where(eq(jobs.id, jobId));
    expect(row).toMatchObject({ logOffset: 350, logTruncated: false, logBytes: entries(0, 350).reduce((n, e) => n + Buffer.byteLength(e.line), 0) });
  });
}

onBothEngines("log, desired-state and redaction services on PostgreSQL", contract);
