/**
 * `pnpm bench:pg`: claim + finish cycles and empty-queue claim polls (the queue part of an idle
 * heartbeat) with 1, 2 and 3 controller processes on PostgreSQL, next to one controller on
 * SQLite, in one run. SQLite runs twice: the synchronous JobState as the services call it today,
 * and the same through the asynchronous JobTransitions interface (one await per transition), so
 * the cost of the interface on the embedded engine is measured, not assumed.
 *
 * PostgreSQL: the cluster of DEPLOYBOT_TEST_POSTGRES_URL (scripts/test-services.sh: fsync off,
 * loopback), a fresh database per pass; each controller process runs BENCH_AGENTS concurrent
 * agent loops on a pool of as many connections. SQLite: a temp file, WAL, synchronous=NORMAL.
 * Passes interleave the systems; medians are reported.
 * Writes bench/results/<date>-pg.{md,json}.
 */
import { fork } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import pino from "pino";
import postgres from "postgres";
import { createApp } from "../apps/controller/src/app";
import { testConfig } from "../apps/controller/src/config";
import { openDb } from "../apps/controller/src/db/client";
import { openPg } from "../apps/controller/src/db/pg";
import { parseAppsConfig } from "../apps/controller/src/services/appsConfig";
import { SqliteJobTransitions } from "../apps/controller/src/services/jobTransitions";
import { APPS_YAML } from "../apps/controller/test/appsYaml";
import { codeVersion, ROOT } from "./child";

const JOBS = Number(process.env.BENCH_JOBS ?? 4000);
const PASSES = Number(process.env.BENCH_PASSES ?? 3);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 8);
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 2000);
const ADMIN_URL = process.env.DEPLOYBOT_TEST_POSTGRES_URL;
if (!ADMIN_URL) throw new Error("DEPLOYBOT_TEST_POSTGRES_URL is not set: run scripts/test-services.sh and source .state/test-services.env");

type Result = { cycles: number; polls: number; heartbeats: number };
const silent = pino({ level: "silent" });
const specOf = (i: number) => ({ kind: "build", app: "web", source: { type: "image", image: `img-${i}` } });
const jobRow = (i: number) => ({
  id: `job_${String(i).padStart(8, "0")}`,
  kind: "build",
  app: "web",
  targetHost: "bench-1",
  spec: specOf(i),
  maxAttempts: 3,
  timeoutSeconds: 600,
  queueDeadline: 9_999_999_999_999,
  createdAt: 0,
});

async function sqlite(async: boolean): Promise<Result> {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-bench-pg-"));
  try {
    const db = openDb(join(dir, "bench.db"));
    const config = testConfig();
    const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
    const { services } = createApp({ db, config, logger: silent, apps: () => apps, secretKey: config.secretKey! });
    services.drainer.stop();
    db.$client.prepare("INSERT INTO agents (id, hostname, version, created_at) VALUES ('agt_bench', 'bench-1', 'bench', 0)").run();
    const state = services.jobState.state;
    db.$client.transaction(() => {
      for (let i = 0; i < JOBS; i++) state.queue(jobRow(i), null);
    })();
    db.$client.exec("ANALYZE");
    const t = new SqliteJobTransitions(state);
    const agent = { id: "agt_bench", hostname: "bench-1", labels: [] as string[], capabilities: { volumes: true } };
    const idle = { id: "agt_bench", hostname: "idle-host", labels: ["idle"], capabilities: { volumes: true } };
    let started = performance.now();
    for (let i = 0; i < JOBS; i++) {
      const job = async ? await t.claim(agent, 60_000) : state.claim(agent, 60_000);
      if (!job) throw new Error(`sqlite: nothing to claim at ${i}`);
      if (async) await t.finish(job.id, job.leaseId!, { status: "succeeded" });
      else state.finish(job.id, job.leaseId!, { status: "succeeded" });
    }
    const cycles = JOBS / ((performance.now() - started) / 1000);
    let polls = 0;
    started = performance.now();
    while (performance.now() - started < POLL_MS) {
      for (let k = 0; k < 100; k++) if (async ? await t.claim(idle, 60_000) : state.claim(idle, 60_000)) throw new Error("idle claimed");
      polls += 100;
    }
    const pollRate = polls / ((performance.now() - started) / 1000);
    // an idle heartbeat's database work, through the services a heartbeat calls
    let heartbeats = 0;
    started = performance.now();
    while (performance.now() - started < POLL_MS) {
      for (let k = 0; k < 100; k++) {
        const caller = await services.agents.authenticate("agt_bench", 1);
        await services.leases.reconcile(caller.id, []);
        if (await services.leases.claimNextJob(idle)) throw new Error("idle heartbeat claimed");
      }
      heartbeats += 100;
    }
    const heartbeatRate = heartbeats / ((performance.now() - started) / 1000);
    db.$client.close();
    return { cycles, polls: pollRate, heartbeats: heartbeatRate };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function pg(controllers: number): Promise<Result> {
  const name = `deploybot_bench_${process.pid}_${controllers}_${Date.now().toString(36)}`;
  const admin = postgres(ADMIN_URL!, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL!);
  url.pathname = `/${name}`;
  try {
    const db = await openPg(url.toString(), { max: 2 });
    const sql = db.$client;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < AGENTS; i++) await sql`INSERT INTO agents (id, hostname, version, created_at) VALUES (${`agt_${c}_${i}`}, ${`h_${c}_${i}`}, 'bench', 0)`;
    }
    await sql`
      INSERT INTO jobs (id, kind, app, target_host, spec, status, max_attempts, timeout_seconds, queue_deadline, created_at)
      SELECT 'job_' || lpad(i::text, 8, '0'), 'build', 'web', 'bench-1',
        jsonb_build_object('kind', 'build', 'app', 'web', 'source', jsonb_build_object('type', 'image', 'image', 'img-' || i)),
        'pending', 3, 600, 9999999999999, 0
      FROM generate_series(0, ${JOBS - 1}) AS i`;
    await sql`ANALYZE`;
    await sql.end();
    const children = Array.from({ length: controllers }, (_, index) =>
      fork(join(ROOT, "bench/pgController.ts"), [], {
        execArgv: ["--import", "tsx"],
        env: { ...process.env, BENCH_PG_URL: url.toString(), BENCH_INDEX: String(index), BENCH_AGENTS: String(AGENTS), BENCH_POLL_MS: String(POLL_MS) },
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      }),
    );
    await Promise.all(children.map((c) => new Promise((resolve) => c.once("message", resolve))));
    const results = children.map(
      (c) =>
        new Promise<{ cycles: number; cyclesMs: number; polls: number; pollMs: number; heartbeats: number; heartbeatMs: number }>((resolve, reject) => {
          c.once("message", (m) => resolve(m as never));
          c.once("exit", (code) => code !== 0 && reject(new Error(`bench controller exited with ${code}`)));
        }),
    );
    for (const c of children) c.send("go");
    const r = await Promise.all(results);
    const cycles = r.reduce((s, x) => s + x.cycles, 0);
    if (cycles !== JOBS) throw new Error(`pg: ${cycles} of ${JOBS} jobs cycled`);
    return {
      cycles: cycles / (Math.max(...r.map((x) => x.cyclesMs)) / 1000),
      polls: r.reduce((s, x) => s + x.polls / (x.pollMs / 1000), 0),
      heartbeats: r.reduce((s, x) => s + x.heartbeats / (x.heartbeatMs / 1000), 0),
    };
  } finally {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

const systems = {
  "SQLite, 1 controller (JobState, synchronous)": () => sqlite(false),
  "SQLite, 1 controller (JobTransitions, one await per transition)": () => sqlite(true),
  "PostgreSQL, 1 controller": () => pg(1),
  "PostgreSQL, 2 controllers": () => pg(2),
  "PostgreSQL, 3 controllers": () => pg(3),
};
type Name = keyof typeof systems;
const runs = Object.fromEntries(Object.keys(systems).map((k) => [k, [] as Result[]])) as Record<Name, Result[]>;
const loadBefore = os.loadavg()[0]!;
for (let pass = 0; pass < PASSES; pass++) {
  for (const name of Object.keys(systems) as Name[]) {
    console.error(`pass ${pass + 1}/${PASSES}: ${name} ...`);
    runs[name].push(await systems[name]());
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rate = (v: number) => Math.round(v).toLocaleString("en-US");
const m = Object.fromEntries(
  (Object.keys(systems) as Name[]).map((k) => [
    k,
    { cycles: median(runs[k].map((r) => r.cycles)), polls: median(runs[k].map((r) => r.polls)), heartbeats: median(runs[k].map((r) => r.heartbeats)) },
  ]),
) as Record<Name, Result>;
const date = new Date();
const cpus = os.cpus();
const base = m["SQLite, 1 controller (JobState, synchronous)"];
const md = [
  `# Job queue on SQLite and PostgreSQL, ${date.toISOString()}`,
  "",
  `Machine: ${cpus[0]?.model ?? "unknown"} x ${cpus.length}, Node ${process.version}; 1-min load average before the run ${loadBefore.toFixed(2)}, after ${os.loadavg()[0]!.toFixed(2)}. Code: ${codeVersion()}.`,
  `${JOBS.toLocaleString("en-US")} jobs per pass, ${PASSES} passes interleaved, median shown. PostgreSQL ${"15"} on loopback (test cluster, fsync off), ${AGENTS} agent loops per controller process, each controller a pool of ${AGENTS} connections; SQLite: one process, WAL, synchronous=NORMAL. A cycle is claim + finish (two transactions with their outbox rows); a poll is a claim on an empty queue; an idle heartbeat is its database work (the agent's identity row, the jobs it holds, an empty claim; on PostgreSQL the same statements as the SQLite services run, the liveness write batched per second). In process, not over HTTP: the services do not run on PostgreSQL yet.`,
  "",
  "| system | claim+finish cycles/s | of SQLite | empty-queue claims/s | idle heartbeats/s | of SQLite | cycles/s per pass |",
  "|---|---:|---:|---:|---:|---:|---|",
  ...(Object.keys(systems) as Name[]).map(
    (k) =>
      `| ${k} | ${rate(m[k].cycles)} | ${((m[k].cycles / base.cycles) * 100).toFixed(0)}% | ${rate(m[k].polls)} | ${rate(m[k].heartbeats)} | ${((m[k].heartbeats / base.heartbeats) * 100).toFixed(0)}% | ${runs[k].map((r) => rate(r.cycles)).join(", ")} |`,
  ),
  "",
].join("\n");
console.log(md);
const resultsDir = join(ROOT, "bench/results");
mkdirSync(resultsDir, { recursive: true });
const out = join(resultsDir, `${date.toISOString().slice(0, 10)}-pg`);
writeFileSync(`${out}.md`, md);
writeFileSync(`${out}.json`, `${JSON.stringify({ date: date.toISOString(), jobs: JOBS, passes: PASSES, agents: AGENTS, runs, median: m }, null, 2)}\n`);
console.error(`wrote ${out}.md and ${out}.json`);
