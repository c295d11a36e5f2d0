/**
 * The log, desired-state and redaction services on both engines: the same service code, built
 * on the same drizzle queries, over SQLite and over the test PostgreSQL cluster (pgFacade.ts).
 */
import { eq } from "drizzle-orm";
import pino from "pino";
import { afterAll, beforeAll, expect, test } from "vitest";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { testConfig } from "../../src/config";
import type { Db } from "../../src/db/client";
import { openDb } from "../../src/db/client";
import { openPgDb } from "../../src/db/pgFacade";
import { agents, jobLogs, jobs } from "../../src/db/schema";
import { parseAppsConfig } from "../../src/services/appsConfig";
import type { Deps } from "../../src/services/deps";
import type { StoredLogLine } from "../../src/services/events";
import { TRUNCATION_MARKER, JobLogService } from "../../src/services/jobLogs";
import { DbJobLeases } from "../../src/services/jobTransitions";
import { LeaseService } from "../../src/services/leases";
import { APPS_YAML } from "../appsYaml";
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

function contract(engine: "sqlite" | "postgres", open: () => Db) {
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
}

const sqliteDb = openDb(":memory:");
contract("sqlite", () => sqliteDb);

describePostgres("log, desired-state and redaction services on PostgreSQL", () => {
  let pg: Awaited<ReturnType<typeof openPgDb>>;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    const fresh = await freshDatabase();
    drop = fresh.drop;
    pg = await openPgDb(fresh.url, { max: 4 });
  });
  afterAll(async () => {
    await pg?.close();
    await drop?.();
  });
  contract("postgres", () => pg);
});
