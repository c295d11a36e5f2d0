/**
 * The agents' heartbeat path and the job state behind JobTransitions, built by createApp on both
 * engines: the identity lookup, the per-second liveness flush with host.online, host.offline for a
 * silent agent, and (PostgreSQL's PgJobTransitions, SQLite's JobState) a job queued inside the
 * caller's transaction commits or rolls back with it.
 */
import { eq } from "drizzle-orm";
import pino from "pino";
import { expect, test } from "vitest";
import { createApp } from "../../src/app";
import { testConfig } from "../../src/config";
import type { Db } from "../../src/db/client";
import { agents, deployments, jobs } from "../../src/db/schema";
import { parseAppsConfig } from "../../src/services/appsConfig";
import { APPS_YAML } from "../appsYaml";
import { onBothEngines } from "./database";
import { newJob } from "./jobFixtures";

function appOn(db: Db, clock: () => number) {
  const config = testConfig();
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  const built = createApp({ db, config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: config.secretKey!, clock });
  built.services.drainer.stop();
  return built;
}

const idle = { status: "idle" as const, containers: [], routes: [], heldJobIds: [] };

function contract(engine: "sqlite" | "postgres", open: () => Db) {
  test(`${engine}: register, authenticate, heartbeat liveness flushed with host.online, silent agent marked offline`, async () => {
    const db = open();
    let now = 10_000_000;
    const { services, deps } = appOn(db, () => now);
    const start = await deps.outbox.latestId();
    const host = `hb-${engine}`;
    const reg = await services.agents.register(
      { hostname: host, labels: ["b", "a"], version: "1.2.3", capabilities: { volumes: true }, heldJobIds: [] } as never,
      { grant: { kind: "join" } },
    );
    const id = reg.agent.id;
    const caller = await services.agents.authenticate(id, 1);
    expect(caller).toEqual({ id, hostname: host, labels: ["b", "a"], version: "1.2.3", capabilities: { volumes: true }, tokenVersion: 1, revoked: false });
    await expect(services.agents.authenticate(id, 2)).rejects.toMatchObject({ status: 401 });

    // registering brought it online (first)
    const online = (await deps.outbox.after(start, 100)).filter((e) => e.type === "host.online");
    expect(online.map((e) => e.data)).toEqual([{ id, hostname: host, first: true }]);

    // silent for three intervals: offline; the next heartbeat's flush brings it back online
    now += deps.config.heartbeatIntervalSeconds * 3 * 1000 + 1;
    await services.agents.markOffline();
    let row = (await db.select().from(agents).where(eq(agents.id, id)))[0]!;
    expect(row.online).toBe(false);
    now += 1_000;
    const answer = await services.agents.heartbeat(caller, { ...idle, containers: [{ name: "web-1" }] } as never, 0);
    expect(answer).toMatchObject({ acknowledged: true, job: null, cancelJobIds: [] });
    await services.agents.flushLiveness();
    row = (await db.select().from(agents).where(eq(agents.id, id)))[0]!;
    expect(row).toMatchObject({ online: true, lastHeartbeatAt: now, state: "idle", containers: [{ name: "web-1" }] });
    const types = (await deps.outbox.after(start, 100)).filter((e) => e.subject === id).map((e) => e.type);
    expect(types).toEqual(["host.online", "host.offline", "host.online"]);

    // a heartbeat without app status or volumes keeps what an earlier one reported
    await db.update(agents).set({ appStatus: [{ app: "web" }], volumes: [{ name: "data" }] }).where(eq(agents.id, id));
    await services.agents.heartbeat(caller, idle as never, 0);
    await services.agents.flushLiveness();
    row = (await db.select().from(agents).where(eq(agents.id, id)))[0]!;
    expect(row).toMatchObject({ appStatus: [{ app: "web" }], volumes: [{ name: "data" }], containers: [] });

    // a revoked agent's token stops working at once
    await services.agents.revoke(host);
    await expect(services.agents.authenticate(id, 1)).rejects.toMatchObject({ status: 401 });
  });

  test(`${engine}: a job queued inside the caller's transaction commits and rolls back with it (foreign key on the deployment)`, async () => {
    const db = open();
    const { services } = appOn(db, () => 20_000_000);
    const dep = (id: string) => ({ id, app: "web", status: "pending", trigger: "api", hosts: ["web-1"], createdAt: 1 });
    const kept = `dep_${engine}_kept`;
    const job = await db.write(async () => {
      await db.insert(deployments).values(dep(kept) as never);
      return (await services.jobState.queue({ ...newJob({ host: "web-1" }), deploymentId: kept }, null)).row;
    });
    expect((await services.jobState.byId(job.id))?.deploymentId).toBe(kept);

    const gone = `dep_${engine}_gone`;
    let queued = "";
    await expect(
      db.write(async () => {
        await db.insert(deployments).values(dep(gone) as never);
        queued = (await services.jobState.queue({ ...newJob({ host: "web-1" }), deploymentId: gone }, null)).row.id;
        throw new Error("refused");
      }),
    ).rejects.toThrow("refused");
    expect(queued).not.toBe("");
    expect(await services.jobState.byId(queued)).toBeUndefined();
    expect(await db.select().from(jobs).where(eq(jobs.deploymentId, gone))).toEqual([]);
  });
}

onBothEngines("agents and job transitions through createApp on PostgreSQL", contract);
