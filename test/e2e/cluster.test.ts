/**
 * Controllers behind a round-robin proxy (HAProxy), 20 agents racing for 300 jobs, one controller
 * killed with -9 mid-run. Each job is handed out once and succeeds once, every log line arrives
 * once, every schedule tick is decided once, and a webhook delivered to every controller deploys once.
 *
 * Two engines: one SQLite controller, killed and restarted (ticks of the gap are recorded missed,
 * as designed for a single controller); three controllers on one PostgreSQL database, one killed
 * for good while the other two carry on (its singleton work moves within seconds: no tick missed).
 *
 * The agents are protocol-level (test/support/protocolAgent.ts), not agent processes: 20 real
 * agents are 20 Node processes plus a container per job, which two shared cores cannot carry in
 * CI time; what is under test is the controllers' side of the protocol, which they speak in full
 * (register, long-poll heartbeats with held jobs, fenced status, offset-addressed logs, retries).
 */
import { createHmac, randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCKS } from "../../apps/controller/src/db/pg";
import { ADMIN, type ControllerProcess, controllerProcess, JOIN, waitFor } from "../harness/processes";
import { describePostgres, freshDatabase } from "../support/postgres";
import { type Handed, ProtocolAgent } from "../support/protocolAgent";
import { type RoundRobin, startRoundRobin } from "../support/roundRobin";

const AGENTS = 20;
const JOBS = 300;
const LINES = 10;
const WEBHOOK_SECRET = "cluster-webhook-secret";

/** Seconds between schedule ticks: a pass delayed by more than this (load) would record a tick missed. */
const TICK_SECONDS = 3;

interface Setup {
  /** what every controller gets on top of the test's own settings */
  env: Record<string, string>;
  /** True when a controller other than a killed one holds the scheduler (PostgreSQL: its advisory lock is held) */
  schedulerHeld?: () => Promise<boolean>;
  teardown: () => Promise<void>;
}

interface Engine {
  name: string;
  controllers: number;
  setup: () => Promise<Setup>;
  /** what the killed controller's loss means here: restarted (the only one), or gone for good (others carry on) */
  restartKilled: boolean;
}

const sqlite: Engine = {
  name: "SQLite: one controller behind the proxy, killed with -9 and restarted",
  controllers: 1,
  setup: async () => ({ env: {}, teardown: async () => {} }),
  restartKilled: true,
};

const postgresCluster: Engine = {
  name: "PostgreSQL: three controllers behind the proxy, one killed with -9 for good",
  controllers: 3,
  setup: async () => {
    const database = await freshDatabase("deploybot_cluster");
    const sql = postgres(database.url, { max: 1, onnotice: () => {} });
    return {
      env: { DEPLOYBOT_DATABASE_URL: database.url, DEPLOYBOT_SECRET_KEY: randomBytes(32).toString("base64url") },
      // a session-level advisory lock on a bigint key below 2^32: classid 0, objid the key, objsubid 1
      schedulerHeld: async () => {
        const [row] = await sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = ${LOCKS.scheduler} AND objsubid = 1
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
        return row!.n === 1;
      },
      teardown: async () => {
        await sql.end({ timeout: 5 });
        await database.drop();
      },
    };
  },
  restartKilled: false,
};

function cluster(engine: Engine) {
  const suffix = randomBytes(3).toString("hex");
  const app = `cl${suffix}`;
  const controllers: ControllerProcess[] = [];
  let proxy: RoundRobin;
  const agents: ProtocolAgent[] = [];
  const handed: Handed[] = [];
  const jobIds: string[] = [];
  let runs: Promise<void>[] = [];
  let killedAt = 0;
  let setup: Setup | undefined;

  /** An admin call, retried through the outage (HAProxy answers 503 while no controller is up) for 2 minutes. */
  const api = async (base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      let failure: string;
      try {
        const res = await fetch(base + path, {
          method,
          headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json", ...headers },
          body: typeof body === "string" ? body : body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.text();
        if (res.status < 500) return { status: res.status, body: JSON.parse(text) };
        failure = `${res.status} ${text.slice(0, 200)}`;
      } catch (err) {
        failure = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`${method} ${base}${path}: no answer for 2 minutes (last: ${failure})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  beforeAll(async () => {
    setup = await engine.setup();
    const env = {
      ...setup.env,
      DEPLOYBOT_WEBHOOK_SECRET: WEBHOOK_SECRET,
      DEPLOYBOT_LOG_LEVEL: "warn",
      DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "2",
    };
    const appsYaml = `apps:
- name: ${app}
  repo: acme/${app}
  url: https://git.example.test/acme/${app}.git
  branch: main
  deploy_on_push: true
  hosts: [${app}-agent-00]
  build: { dockerfile: Dockerfile, context: . }
  run: {}
  schedules:
    - name: tick
      cron: "*/${TICK_SECONDS} * * * * *"
      command: ["true"]
      concurrency: allow
`;
    // The first controller starts alone and takes the singleton work (on PostgreSQL its advisory
    // locks), so the one killed below is the one running the scheduler: the tick check then shows
    // the handover, not a scheduler that never moved. The others start together (migrations run
    // under a lock, the first one did them).
    controllers.push(await controllerProcess(appsYaml, env));
    const { schedulerHeld } = setup;
    if (schedulerHeld) await waitFor("the first controller to take the scheduler", async () => ((await schedulerHeld()) ? true : undefined), 60_000, 50);
    controllers.push(...(await Promise.all(Array.from({ length: engine.controllers - 1 }, () => controllerProcess(appsYaml, env)))));
    proxy = await startRoundRobin(controllers.map((c) => c.url));
    for (let i = 0; i < AGENTS; i++) {
      const agent = new ProtocolAgent(proxy.url, `${app}-agent-${String(i).padStart(2, "0")}`, {
        joinToken: JOIN,
        labels: ["pool"],
        linesPerJob: LINES,
        // the job's "work" between its two log uploads: the run lasts long enough to be cut in the middle
        workMs: 200,
        handed,
      });
      await agent.register();
      agents.push(agent);
    }
  }, 300_000);

  afterAll(async () => {
    for (const a of agents) a.stopped = true;
    await Promise.allSettled(runs);
    await proxy?.stop();
    await Promise.all(controllers.map((c) => c.stop("SIGKILL")));
    await setup?.teardown();
  }, 120_000);

  it("300 jobs through the proxy, a controller killed with -9 mid-run: each job handed out once, succeeded once, every log line once", async () => {
    const startedAt = Date.now();
    runs = agents.map((a) => a.run());
    // queued through the proxy (so every controller takes some) while the agents already work;
    // a retry after a lost answer carries the same Idempotency-Key, so it queues nothing twice
    // four submitters: one at a time, queueing (not the agents) would set the pace on PostgreSQL
    let next = 0;
    const queueing = Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = next++; i < JOBS; i = next++) {
          const r = await api(
          proxy.url,
          "POST",
          "/v1/jobs",
          { spec: { kind: "build", app, source: { type: "image", image: `img-${suffix}-${i}` } }, target: { labels: ["pool"] } },
          { "idempotency-key": `${app}-job-${i}` },
        );
          expect(r.status, JSON.stringify(r.body)).toBe(201);
          jobIds.push(r.body.job.id);
        }
      }),
    );
    queueing.catch(() => {}); // awaited below; a failure then fails the test, not the run
    await waitFor("a third of the jobs to be handed out", async () => (handed.length >= JOBS / 3 ? true : undefined), 300_000, 50);
    // the tick check below wants ticks on both sides of the kill
    await waitFor("a schedule tick to be decided", async () => ((await api(proxy.url, "GET", `/v1/runs?app=${app}&schedule=tick&limit=1`)).body.runs?.length > 0 ? true : undefined), 60_000, 200);
    const victim = controllers[0]!;
    const handedBeforeKill = handed.length;
    killedAt = Date.now();
    await victim.stop("SIGKILL");
    if (engine.restartKilled) await victim.start();
    else if (setup?.schedulerHeld) {
      // the dead controller's session ends with its socket; another controller takes the lock at its next pass
      const { schedulerHeld } = setup;
      await waitFor("another controller to take the scheduler", async () => ((await schedulerHeld()) ? true : undefined), 60_000, 20);
      console.log(`${engine.name}: the scheduler moved to another controller ${((Date.now() - killedAt) / 1000).toFixed(2)} s after the kill`);
    }
    await queueing;

    const ours = new Set(jobIds);
    await waitFor(
      "every job to succeed",
      async () => (new Set(handed.filter((h) => h.finished && ours.has(h.jobId)).map((h) => h.jobId)).size === JOBS ? true : undefined),
      600_000,
      200,
    );

    console.log(`${engine.name}: ${handedBeforeKill} jobs handed out in the ${((killedAt - startedAt) / 1000).toFixed(1)} s before the kill, all ${JOBS} succeeded ${((Date.now() - killedAt) / 1000).toFixed(1)} s after it`);
    const perJob = new Map<string, number>();
    for (const h of handed) if (ours.has(h.jobId)) perJob.set(h.jobId, (perJob.get(h.jobId) ?? 0) + 1);
    expect([...perJob.values()].filter((n) => n !== 1)).toEqual([]);
    expect(perJob.size).toBe(JOBS);
    // read back from the controllers left (through the proxy: every one of them answers some), 8 at a time
    const checkedAt = Date.now();
    const pending = [...jobIds];
    const statuses = new Map<string, string>();
    const lines = new Map<string, string[]>();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let id = pending.shift(); id !== undefined; id = pending.shift()) {
          statuses.set(id, (await api(proxy.url, "GET", `/v1/jobs/${id}`)).body.job?.status);
          lines.set(id, (await api(proxy.url, "GET", `/v1/jobs/${id}/logs?limit=1000`)).body.entries?.map((e: { line: string }) => e.line));
        }
      }),
    );
    expect(jobIds.filter((id) => statuses.get(id) !== "succeeded")).toEqual([]);
    for (const id of jobIds) expect(lines.get(id)).toEqual(Array.from({ length: LINES }, (_, i) => `${id} line ${i}`));
    console.log(`${engine.name}: every job's status and log lines read back in ${((Date.now() - checkedAt) / 1000).toFixed(1)} s`);
  }, 900_000);

  it(engine.restartKilled ? "schedule ticks across the kill: every tick decided once (the restart gap's recorded missed)" : "schedule ticks across the kill: every tick decided once, none missed", async () => {
    // the ticks after the kill have come and gone
    await new Promise((r) => setTimeout(r, Math.max(0, killedAt + 3 * TICK_SECONDS * 1000 - Date.now())));
    const { body } = await api(controllers.at(-1)!.url, "GET", `/v1/runs?app=${app}&schedule=tick&limit=200`);
    expect(body.runs, JSON.stringify(body)).toBeDefined();
    const runs = body.runs as { tickAt: string; status: string; reason?: string | null }[];
    const ticks = runs.map((r) => Date.parse(r.tickAt)).sort((a, b) => a - b);
    expect(ticks.length).toBeGreaterThan(0);
    // none doubled
    expect(ticks.length).toBe(new Set(ticks).size);
    // none lost: from the first tick to the newest, every tick has its run (or, SQLite, its recorded miss)
    const gaps = ticks.slice(1).flatMap((t, i) => (t - ticks[i]! === TICK_SECONDS * 1000 ? [] : [`${new Date(ticks[i]!).toISOString()} -> ${new Date(t).toISOString()}`]));
    expect(gaps).toEqual([]);
    // and they span the kill
    expect(ticks[0]!).toBeLessThan(killedAt);
    expect(ticks.at(-1)!).toBeGreaterThan(killedAt + TICK_SECONDS * 1000);
    // with controllers left alive, the scheduler moved before the next tick was due: nothing missed
    if (!engine.restartKilled) expect(runs.filter((r) => r.status === "missed")).toEqual([]);
  }, 120_000);

  it("the same push delivered to every controller (and redelivered through the proxy) deploys once", async () => {
    const sha = randomBytes(20).toString("hex");
    const delivery = `cluster-${suffix}`;
    const raw = JSON.stringify({ ref: "refs/heads/main", after: sha, deleted: false, repository: { full_name: `acme/${app}` }, head_commit: { id: sha, message: "cluster" } });
    const headers = {
      "x-github-event": "push",
      "x-github-delivery": delivery,
      "x-hub-signature-256": `sha256=${createHmac("sha256", WEBHOOK_SECRET).update(raw).digest("hex")}`,
    };
    const targets = [...controllers.filter((_c, i) => i > 0 || engine.restartKilled).map((c) => c.url), proxy.url];
    const answers = await Promise.all(targets.map((base) => api(base, "POST", "/v1/webhooks/github", raw, headers)));
    for (const a of answers) expect(a.status, JSON.stringify(a.body)).toBeLessThan(300);
    const { body } = await api(proxy.url, "GET", `/v1/deployments?app=${app}&limit=100`);
    expect((body.deployments as { sha: string | null }[]).filter((d) => d.sha === sha)).toHaveLength(1);
  }, 120_000);
}

describe(sqlite.name, () => cluster(sqlite));
describePostgres(postgresCluster.name, () => cluster(postgresCluster));
