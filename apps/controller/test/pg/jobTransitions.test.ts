/**
 * The job transitions, one contract on both engines: the embedded SQLite JobState (through
 * SqliteJobTransitions) and PgJobState on the test PostgreSQL cluster. Then claims raced by
 * several processes on PostgreSQL: every job claimed exactly once, the outbox in commit order.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { describePostgres, freshDatabase } from "../../../../test/support/postgres";
import { createApp } from "../../src/app";
import { openDb } from "../../src/db/client";
import { connectPg, openPg, } from "../../src/db/pg";
import { testConfig } from "../../src/config";
import { parseAppsConfig } from "../../src/services/appsConfig";
import { jobEvent } from "../../src/services/jobState";
import type { JobRow } from "../../src/services/jobStore";
import type { JobTransitions } from "../../src/services/jobTransitions";
import { PgJobState } from "../../src/services/pgJobState";
import { APPS_YAML } from "../appsYaml";
import { migratedDatabase } from "./database";
import { newJob } from "./jobFixtures";

interface Engine {
  state: JobTransitions;
  clock: { now: number };
  addAgent(id: string, hostname: string): Promise<void>;
  /** transitions recorded in the outbox for a job, in outbox order */
  transitions(jobId: string): Promise<string[]>;
  /** the data of the job's newest outbox row */
  lastEvent(jobId: string): Promise<unknown>;
  /** a controller restart: `state` becomes a fresh job state (nothing in memory) on the same database */
  restart(): void;
  close(): Promise<void>;
}

const silent = pino({ level: "silent" });

function sqliteEngine(): Engine {
  const clock = { now: Date.parse("2026-11-22T12:00:00Z") };
  const db = openDb(":memory:");
  const config = testConfig();
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  const start = () => {
    const { services } = createApp({ db, config, logger: silent, apps: () => apps, secretKey: config.secretKey!, clock: () => clock.now });
    services.drainer.stop();
    return services.jobState;
  };
  const engine: Engine = {
    state: start(),
    clock,
    addAgent: async (id, hostname) => {
      db.$client.prepare("INSERT INTO agents (id, hostname, version, created_at) VALUES (?, ?, 'test', 0)").run(id, hostname);
    },
    transitions: async (jobId) =>
      (db.$client.prepare("SELECT data FROM outbox WHERE subject = ? AND type = 'job.changed' ORDER BY id").pluck().all(jobId) as string[]).map(
        (d) => (JSON.parse(d) as { transition: string }).transition,
      ),
    lastEvent: async (jobId) =>
      JSON.parse(db.$client.prepare("SELECT data FROM outbox WHERE subject = ? ORDER BY id DESC LIMIT 1").pluck().get(jobId) as string),
    restart: () => {
      engine.state = start();
    },
    close: async () => {
      db.$client.close();
    },
  };
  return engine;
}

async function pgEngine(): Promise<Engine> {
  const fresh = await freshDatabase();
  const db = await openPg(fresh.url, { max: 4 });
  const sql = db.$client;
  const clock = { now: Date.parse("2026-11-22T12:00:00Z") };
  const engine: Engine = {
    state: new PgJobState(sql, { clock: () => clock.now, logger: silent }),
    clock,
    addAgent: async (id, hostname) => {
      await sql`INSERT INTO agents (id, hostname, version, created_at) VALUES (${id}, ${hostname}, 'test', 0)`;
    },
    transitions: async (jobId) =>
      (await sql<{ data: string }[]>`SELECT data FROM outbox WHERE subject = ${jobId} AND type = 'job.changed' ORDER BY id`).map(
        (r) => (JSON.parse(r.data) as { transition: string }).transition,
      ),
    lastEvent: async (jobId) => {
      const [row] = await sql<{ data: string }[]>`SELECT data FROM outbox WHERE subject = ${jobId} ORDER BY id DESC LIMIT 1`;
      return JSON.parse(row!.data);
    },
    restart: () => {
      engine.state = new PgJobState(sql, { clock: () => clock.now, logger: silent });
    },
    close: async () => {
      await sql.end();
      await fresh.drop();
    },
  };
  return engine;
}

function contract(name: string, make: () => Engine | Promise<Engine>) {
  describe(`job transitions on ${name}`, () => {
    let e: Engine;
    const web1 = { id: "agt_web1", hostname: "web-1", labels: ["linux"] };
    const gpu = { id: "agt_gpu", hostname: "gpu-1", labels: ["gpu", "linux"] };
    beforeAll(async () => {
      e = await make();
      await e.addAgent(web1.id, web1.hostname);
      await e.addAgent(gpu.id, gpu.hostname);
    });
    afterAll(async () => e?.close());

    test("a host target goes to that host, a label target to an agent carrying every label, oldest first", async () => {
      const forGpu = (await e.state.queue(newJob({ labels: ["gpu", "linux"] }), null)).row;
      const forWeb = (await e.state.queue(newJob({ host: "web-1" }), null)).row;
      const anyLinux = (await e.state.queue(newJob({ labels: ["linux"] }), null)).row;
      expect(forGpu.targetLabels).toEqual(["gpu", "linux"]);
      const a = await e.state.claim(web1, 60_000);
      expect(a?.id).toBe(forWeb.id); // the gpu job is older, but web-1 lacks the label
      const b = await e.state.claim(gpu, 60_000);
      expect(b?.id).toBe(forGpu.id);
      const c = await e.state.claim(web1, 60_000);
      expect(c?.id).toBe(anyLinux.id);
      expect(await e.state.claim(web1, 60_000)).toBeNull();
      expect([a, b, c].map((j) => [j?.status, j?.attempts, j?.leaseId?.startsWith("lse_")])).toEqual([
        ["assigned", 1, true],
        ["assigned", 1, true],
        ["assigned", 1, true],
      ]);
      for (const j of [a, b, c] as JobRow[]) await e.state.finish(j.id, j.leaseId!, { status: "succeeded" });
    });

    test("an agent without the volumes capability is not handed a job with volumes, stop_first or a purge; a current one is", async () => {
      const volumes = (await e.state.queue(newJob({ host: "web-1" }, { spec: { kind: "deploy", app: "web", run: { volumes: ["data:/data"] } } }), null)).row;
      const stopFirst = (await e.state.queue(newJob({ labels: ["linux"] }, { spec: { kind: "deploy", app: "web", run: { stop_first: true } } }), null)).row;
      const purge = (await e.state.queue(newJob({ host: "web-1" }, { spec: { kind: "remove", app: "web", purgeVolumes: true } }), null)).row;
      const plain = (await e.state.queue(newJob({ host: "web-1" }), null)).row;
      const old = await e.state.claim(web1, 60_000);
      expect(old?.id).toBe(plain.id);
      expect(await e.state.claim(web1, 60_000)).toBeNull();
      const current = { ...web1, capabilities: { volumes: true } };
      const taken: JobRow[] = [];
      for (let i = 0; i < 3; i++) taken.push((await e.state.claim(current, 60_000))!);
      expect(taken.map((j) => j?.id)).toEqual([volumes.id, stopFirst.id, purge.id]);
      for (const j of [old!, ...taken]) await e.state.finish(j.id, j.leaseId!, { status: "succeeded" });
    });

    test("start and finish are fenced by the lease; a repeated finish changes nothing", async () => {
      const job = (await e.state.queue(newJob({ host: "web-1" }), null)).row;
      const held = (await e.state.claim(web1, 60_000))!;
      expect(held.id).toBe(job.id);
      expect(await e.state.start(job.id, "lse_someone-else", 60_000)).toBeUndefined();
      expect((await e.state.start(job.id, held.leaseId!, 60_000))?.status).toBe("running");
      const done = await e.state.finish(job.id, held.leaseId!, { status: "failed", error: "exit 1", result: { code: 1 }, logLines: 7 });
      expect([done?.status, done?.error, done?.result, done?.expectedLogLines]).toEqual(["failed", "exit 1", { code: 1 }, 7]);
      expect(await e.state.finish(job.id, held.leaseId!, { status: "succeeded" })).toBeUndefined();
      expect(await e.transitions(job.id)).toEqual(["queued", "claimed", "started", "finished"]);
      // the event is jobEvent() of the row as it was written, on either engine
      expect(await e.lastEvent(job.id)).toEqual(jobEvent((await e.state.byId(job.id))!, "finished"));
    });

    test("a dedupe key returns the active job instead of a second one", async () => {
      const first = await e.state.queue(newJob({ host: "nobody" }), "acme/web|main|nobody");
      const again = await e.state.queue(newJob({ host: "nobody" }), "acme/web|main|nobody");
      expect(first.created).toBe(true);
      expect([again.created, again.row.id]).toEqual([false, first.row.id]);
      await e.state.cancel(first.row.id);
    });

    test("cancel: a pending job at once, a held one asks its agent; supersede cancels a pending one", async () => {
      const pending = (await e.state.queue(newJob({ host: "nobody" }), null)).row;
      expect((await e.state.cancel(pending.id))?.status).toBe("cancelled");
      const held = (await e.state.queue(newJob({ host: "web-1" }), null)).row;
      await e.state.claim(web1, 60_000);
      const asked = await e.state.cancel(held.id);
      expect([asked?.status, asked?.cancelRequested]).toEqual(["assigned", true]);
      expect(await e.lastEvent(held.id)).toEqual(jobEvent(asked!, "cancel_requested"));
      expect((await e.state.cancel(held.id))?.cancelRequested).toBe(true); // a second ask is no new event
      expect(await e.transitions(held.id)).toEqual(["queued", "claimed", "cancel_requested"]);
      const requeued = await e.state.requeue((await e.state.byId(held.id))!, "agent went away");
      expect([requeued?.status, requeued?.error]).toEqual(["cancelled", "cancelled before it started"]);
      const old = (await e.state.queue(newJob({ host: "nobody" }), null)).row;
      expect((await e.state.supersede(old.id, "dep_new"))?.error).toBe("superseded by dep_new");
      expect(await e.state.cancel("job_missing")).toBeNull();
    });

    test("the sweep hands back unstarted jobs, loses silent running ones, and times out the rest", async () => {
      const lease = 10_000;
      const unstarted = (await e.state.queue(newJob({ host: "web-1" }), null)).row;
      const u = (await e.state.claim(web1, lease))!;
      expect(u.id).toBe(unstarted.id);
      const silentJob = (await e.state.queue(newJob({ host: "gpu-1" }), null)).row;
      const s = (await e.state.claim(gpu, lease))!;
      await e.state.start(s.id, s.leaseId!, lease);
      const stale = (await e.state.queue(newJob({ host: "nobody" }, { queueDeadline: e.clock.now + 5_000 }), null)).row;
      e.clock.now += lease + 1;
      await e.state.sweep();
      const [a, b, c] = await Promise.all([unstarted.id, silentJob.id, stale.id].map((id) => e.state.byId(id)));
      expect([a?.status, a?.attempts, a?.agentId]).toEqual(["pending", 1, null]);
      expect([b?.status, b?.error]).toEqual(["lost", "the agent stopped renewing its lease"]);
      expect([c?.status, c?.error]).toEqual(["timed_out", "no agent claimed the job in time"]);
      const again = (await e.state.claim(web1, lease))!;
      expect([again.id, again.attempts]).toEqual([unstarted.id, 2]);
      expect(await e.transitions(unstarted.id)).toEqual(["queued", "claimed", "requeued", "claimed"]);
      await e.state.finish(again.id, again.leaseId!, { status: "succeeded" });
    });

    // SQLite keeps the earliest queue deadline of its pending jobs in memory and looks for queue
    // timeouts only once it passed (jobState.ts); PostgreSQL looks every time. Deadlines here are
    // relative to the engine's clock, and each test aims at hosts of its own.
    describe("queue timeouts", () => {
      const NO_CLAIM = "no agent claimed the job in time";
      const queueFor = async (host: string, inMs: number) =>
        (await e.state.queue(newJob({ host }, { queueDeadline: e.clock.now + inMs }), null)).row;
      const statusOf = async (id: string) => {
        const row = await e.state.byId(id);
        return [row?.status, row?.error];
      };

      test("a pending job is timed out by the reaper once its deadline has passed, not before, with the reason", async () => {
        const job = await queueFor("qt-nobody-1", 10_000);
        await e.state.sweep();
        e.clock.now += 10_000; // at the deadline: still in time
        await e.state.sweep();
        expect(await statusOf(job.id)).toEqual(["pending", null]);
        e.clock.now += 1;
        await e.state.sweep();
        expect(await statusOf(job.id)).toEqual(["timed_out", NO_CLAIM]);
        expect(await e.transitions(job.id)).toEqual(["queued", "timed_out"]);
      });

      test("a job queued after the reaper's last look, with a shorter queue timeout than the jobs before it, times out at its own deadline", async () => {
        const long = await queueFor("qt-nobody-2", 60_000);
        await e.state.sweep(); // the earliest deadline is now the long job's
        const short = await queueFor("qt-nobody-2", 5_000);
        e.clock.now += 5_001;
        await e.state.sweep();
        expect([await statusOf(short.id), await statusOf(long.id)]).toEqual([
          ["timed_out", NO_CLAIM],
          ["pending", null],
        ]);
        e.clock.now += 55_000;
        await e.state.sweep();
        expect(await statusOf(long.id)).toEqual(["timed_out", NO_CLAIM]);
      });

      test("a job handed back after its queue deadline (its lease expired before it started) times out", async () => {
        const agent = { id: "agt_qt3", hostname: "qt-host-3", labels: [] };
        await e.addAgent(agent.id, agent.hostname);
        const job = await queueFor(agent.hostname, 5_000);
        expect((await e.state.claim(agent, 60_000))?.id).toBe(job.id);
        e.clock.now += 10_000; // past the deadline while assigned: nothing pending to time out
        await e.state.sweep();
        expect(await statusOf(job.id)).toEqual(["assigned", null]);
        e.clock.now += 60_000;
        await e.state.sweep(); // the lease expired: back to pending, then its old deadline ends it
        expect(await statusOf(job.id)).toEqual(["timed_out", NO_CLAIM]);
        expect(await e.transitions(job.id)).toEqual(["queued", "claimed", "requeued", "timed_out"]);
      });

      test("after a controller restart, a job queued before it times out at its deadline", async () => {
        await e.state.sweep();
        const job = await queueFor("qt-nobody-4", 5_000);
        e.restart();
        e.clock.now += 5_001;
        await e.state.sweep();
        expect(await statusOf(job.id)).toEqual(["timed_out", NO_CLAIM]);
      });
    });
  });
}

contract("SQLite", sqliteEngine);

describePostgres("PostgreSQL", () => {
  contract("PostgreSQL", pgEngine);

  describe("claims raced by several processes", () => {
    const db = migratedDatabase();

    test("4 processes x 5 agents take 300 jobs: each claimed exactly once, outbox ids visible in order", async () => {
      const { url, sql } = db;
      const PROCESSES = 4;
      const PER = 5;
      const agents = Array.from({ length: PROCESSES * PER }, (_, i) => ({
        id: `agt_${i}`,
        hostname: `host-${i}`,
        labels: i % 2 === 0 ? ["gpu", "linux"] : ["linux"],
      }));
      for (const a of agents) await sql`INSERT INTO agents (id, hostname, version, created_at) VALUES (${a.id}, ${a.hostname}, 'test', 0)`;
      const state = new PgJobState(sql, { clock: Date.now, logger: silent });
      const ids: string[] = [];
      for (let i = 0; i < 300; i++) {
        const target = i % 3 === 0 ? { host: `host-${i % agents.length}` } : i % 3 === 1 ? { labels: ["gpu"] } : { labels: ["linux"] };
        ids.push((await state.queue(newJob(target), null)).row.id);
      }
      await sql`ANALYZE jobs`;
      const [{ start }] = (await sql`SELECT coalesce(max(id), 0)::bigint AS start FROM outbox`) as unknown as [{ start: number }];

      // A reader following the outbox by id while the claims commit: it must never see an id
      // before a smaller one (it would skip that one for good).
      const follower = connectPg(url, { max: 1 });
      let last = start;
      let following = true;
      const gaps: string[] = [];
      const follow = (async () => {
        while (following) {
          const rows = await follower<{ id: number }[]>`SELECT id FROM outbox WHERE id > ${last} ORDER BY id LIMIT 500`;
          for (const r of rows) {
            if (r.id !== last + 1) gaps.push(`${last} -> ${r.id}`);
            last = r.id;
          }
          if (rows.length === 0) await new Promise((r) => setTimeout(r, 2));
        }
      })();

      const racer = fileURLToPath(new URL("./claimRacer.ts", import.meta.url));
      const outputs = await Promise.all(
        Array.from(
          { length: PROCESSES },
          (_, p) =>
            new Promise<string[]>((resolve, reject) => {
              execFile(
                process.execPath,
                ["--import", "tsx", racer, url, JSON.stringify(agents.slice(p * PER, (p + 1) * PER))],
                { timeout: 240_000, maxBuffer: 1 << 20 },
                (err, stdout, stderr) => (err ? reject(new Error(`racer ${p}: ${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as string[])),
              );
            }),
        ),
      );
      following = false;
      await follow;
      await follower`SELECT 1`; // the follower reads the tail once more below
      const tail = await follower<{ id: number }[]>`SELECT id FROM outbox WHERE id > ${last} ORDER BY id`;
      for (const r of tail) {
        if (r.id !== last + 1) gaps.push(`${last} -> ${r.id}`);
        last = r.id;
      }
      await follower.end();

      const claimed = outputs.flat();
      expect(outputs.every((o) => o.length > 0)).toBe(true); // every process took part
      expect(claimed.length).toBe(300);
      expect(new Set(claimed).size).toBe(300);
      expect(new Set(claimed)).toEqual(new Set(ids));
      const rows = await sql<{ status: string; attempts: number; n: number }[]>`
        SELECT status, attempts, count(*)::int AS n FROM jobs GROUP BY status, attempts`;
      expect(rows.map((r) => [r.status, r.attempts, r.n])).toEqual([["succeeded", 1, 300]]);
      const claims = await sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM outbox WHERE type = 'job.changed' AND data::jsonb ->> 'transition' = 'claimed' GROUP BY subject HAVING count(*) <> 1`;
      expect(claims).toEqual([]);
      expect(gaps).toEqual([]);
      expect(last - start).toBe(900); // claimed, started, finished per job
    }, 300_000);
  });
});
