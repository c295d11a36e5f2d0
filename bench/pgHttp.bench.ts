/**
 * `pnpm bench:pg-http`: the controller over HTTP with 1, 2 and 3 controller processes on one
 * PostgreSQL database, next to one controller on its SQLite file, in one run. Per system:
 *   - idle heartbeats (empty queue), closed loop, and open loop at the real rate (1,000 agents
 *     every 10 s = 100/s): rate and p99;
 *   - claim + finish cycles: JOBS jobs queued for label `pool`, claimed by the pool agents'
 *     heartbeats and finished with `succeeded`, every job claimed exactly once.
 * With several controllers each request goes to the next controller in turn (what a round-robin
 * proxy does), over the same number of keep-alive connections in all. PostgreSQL: the test
 * cluster of DEPLOYBOT_TEST_POSTGRES_URL (scripts/test-services.sh: loopback, fsync off), a fresh
 * database per system. Writes bench/results/<date>-pg-http.{md,json}. Env: BENCH_JOBS,
 * BENCH_AGENTS (per group), BENCH_PASSES (systems interleaved, medians shown), BENCH_SYSTEMS (a
 * comma-separated list of words: only the systems whose name contains one, e.g. `SQLite,3`).
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { ADMIN, codeVersion, JOIN, ROOT, startChild, stopChild, waitHealthy } from "./child";
import { Client, processCpuSeconds, Recorder, type Reply, runAtRate, runEach, runFor, type Stats } from "./load";

const CONNECTIONS = 64;
const AGENTS = Number(process.env.BENCH_AGENTS ?? 200);
const JOBS = Number(process.env.BENCH_JOBS ?? 1000);
const PASSES = Number(process.env.BENCH_PASSES ?? 3);
const WARMUP_MS = 1_000;
const DURATION_MS = 5_000;
/** 1,000 agents at the default 10 s heartbeat interval. */
const REAL_HEARTBEATS_PER_SECOND = 100;
const ADMIN_URL = process.env.DEPLOYBOT_TEST_POSTGRES_URL;
if (!ADMIN_URL) throw new Error("DEPLOYBOT_TEST_POSTGRES_URL is not set: run scripts/test-services.sh and source .state/test-services.env");

interface Agent {
  id: string;
  token: string;
}

/** N controllers seen as one: each request to the next one in turn, over CONNECTIONS sockets in all. */
class RoundRobinClient {
  private next = 0;
  constructor(private readonly clients: Client[]) {}
  async request(method: string, path: string, token?: string, body?: unknown): Promise<Reply> {
    const client = this.clients[this.next++ % this.clients.length]!;
    try {
      return await client.request(method, path, token, body);
    } catch (err) {
      // A keep-alive socket left idle past the server's keepAliveTimeout (5 s; the slow windows on
      // PostgreSQL leave some idle that long) can be closed just as a request goes out on it: the
      // server never read that request, so it is sent again once, on a fresh socket.
      if ((err as NodeJS.ErrnoException).code !== "ECONNRESET") throw err;
      return client.request(method, path, token, body);
    }
  }
}

/** Processes whose CPU a window reports: the controllers, and the database's backends (PostgreSQL). */
type Watched = () => Promise<{ controllers: number[]; database: number[] }>;

/** CPU (in cores) of the watched processes over a window, from /proc. */
async function withCpu<T>(watched: Watched, work: () => Promise<T>): Promise<{ result: T; cores: number | null; databaseCores: number | null }> {
  const sum = (pids: number[]) => {
    let total = 0;
    for (const pid of pids) {
      const cpu = processCpuSeconds(pid);
      if (cpu === null) return null;
      total += cpu;
    }
    return total;
  };
  const { controllers, database } = await watched();
  const [c0, d0] = [sum(controllers), sum(database)];
  const t0 = performance.now();
  const result = await work();
  const seconds = (performance.now() - t0) / 1000;
  const [c1, d1] = [sum(controllers), sum(database)];
  const cores = (a: number | null, b: number | null) => (a === null || b === null ? null : (b - a) / seconds);
  return { result, cores: cores(c0, c1), databaseCores: database.length === 0 ? null : cores(d0, d1) };
}

function must(reply: Reply, what: string): void {
  if (reply.status < 200 || reply.status >= 300) throw new Error(`${what}: ${reply.status} ${reply.body.slice(0, 300)}`);
}

async function register(c: RoundRobinClient, prefix: string, labels: string[]): Promise<Agent[]> {
  const agents: Agent[] = [];
  const rec = new Recorder();
  await runEach({
    items: Array.from({ length: AGENTS }, (_, i) => `${prefix}-${String(i).padStart(4, "0")}`),
    connections: CONNECTIONS,
    serverPid: undefined,
    rec,
    send: (hostname) => c.request("POST", "/v1/agents/register", JOIN, { hostname, labels, version: "bench", capabilities: { volumes: true } }),
    onReply: (_, r) => {
      const body = JSON.parse(r.body) as { agent: { id: string }; token: string };
      agents.push({ id: body.agent.id, token: body.token });
    },
  });
  if (agents.length !== AGENTS) throw new Error(`registered ${agents.length} of ${AGENTS} agents: ${rec.stats().firstError}`);
  return agents;
}

interface Measured {
  heartbeat: Stats;
  heartbeatAtRate: Stats;
  /** controller CPU in cores during the saturated heartbeat window (all controller processes), and the database's */
  heartbeatCores: number | null;
  heartbeatDatabaseCores: number | null;
  cyclesPerSecond: number;
  cycleSeconds: number;
  cycleCores: number | null;
  cycleDatabaseCores: number | null;
  claim: Stats;
  finish: Stats;
  exact: boolean;
  check: string;
  errors: number;
}

/** The scenario against running controllers at `ports`. */
async function scenario(ports: number[], watched: Watched): Promise<Measured> {
  const clients = ports.map((p) => new Client("127.0.0.1", p, Math.ceil(CONNECTIONS / ports.length)));
  try {
    for (const client of clients) await waitHealthy(client);
    const c = new RoundRobinClient(clients);
    const idle = await register(c, "hb", []);
    const pool = await register(c, "pool", ["pool"]);

    let i = 0;
    const hb = () => {
      const a = idle[i++ % idle.length]!;
      return c.request("POST", `/v1/agents/${a.id}/heartbeat`, a.token, {});
    };
    const saturated = await withCpu(watched, () => runFor({ connections: CONNECTIONS, warmupMs: WARMUP_MS, durationMs: DURATION_MS, serverPid: undefined, send: hb }));
    const heartbeatAtRate = await runAtRate({ perSecond: REAL_HEARTBEATS_PER_SECOND, durationMs: DURATION_MS, serverPid: undefined, send: hb });

    const submitted = new Set<string>();
    const submitRec = new Recorder();
    await runEach({
      items: Array.from({ length: JOBS }, (_, k) => k),
      connections: CONNECTIONS,
      serverPid: undefined,
      rec: submitRec,
      send: (k) => c.request("POST", "/v1/jobs", ADMIN, { spec: { kind: "build", app: "web", source: { type: "image", image: `img-${k}` } }, target: { labels: ["pool"] } }),
      onReply: (_, r) => submitted.add((JSON.parse(r.body) as { job: { id: string } }).job.id),
    });

    // Rounds: every pool agent heartbeats once (claims), then every agent that got a job reports
    // it succeeded; claims/(claim + finish time) is the cycle rate.
    const claimRec = new Recorder();
    const finishRec = new Recorder();
    const claimed = new Map<string, number>();
    let total = 0;
    const cycles = await withCpu(watched, async () => {
      for (let round = 0; total < JOBS && round < 3 * Math.ceil(JOBS / pool.length); round++) {
        const got: { agent: Agent; jobId: string; leaseId: string }[] = [];
        await runEach({
          items: pool,
          connections: CONNECTIONS,
          serverPid: undefined,
          rec: claimRec,
          send: (a) => c.request("POST", `/v1/agents/${a.id}/heartbeat`, a.token, {}),
          onReply: (agent, r) => {
            const job = (JSON.parse(r.body) as { job: { id: string; leaseId: string } | null }).job;
            if (job) got.push({ agent, jobId: job.id, leaseId: job.leaseId });
          },
        });
        if (got.length === 0) break;
        total += got.length;
        for (const g of got) claimed.set(g.jobId, (claimed.get(g.jobId) ?? 0) + 1);
        await runEach({
          items: got,
          connections: CONNECTIONS,
          serverPid: undefined,
          rec: finishRec,
          send: (g) => c.request("POST", `/v1/jobs/${g.jobId}/status`, g.agent.token, { leaseId: g.leaseId, status: "succeeded" }),
        });
      }
    });
    const claim = claimRec.stats();
    const finish = finishRec.stats();
    const pending = await c.request("GET", "/v1/jobs?status=pending&limit=1", ADMIN);
    must(pending, "list pending jobs");
    const pendingLeft = (JSON.parse(pending.body) as { jobs: unknown[] }).jobs.length;
    const duplicates = [...claimed.values()].filter((n) => n > 1).length;
    const strangers = [...claimed.keys()].filter((id) => !submitted.has(id)).length;
    const exact = claimed.size === JOBS && submitted.size === JOBS && duplicates === 0 && strangers === 0 && pendingLeft === 0;
    const cycleSeconds = claim.seconds + finish.seconds;
    return {
      heartbeat: saturated.result,
      heartbeatAtRate,
      heartbeatCores: saturated.cores,
      heartbeatDatabaseCores: saturated.databaseCores,
      cyclesPerSecond: total / cycleSeconds,
      cycleSeconds,
      cycleCores: cycles.cores,
      cycleDatabaseCores: cycles.databaseCores,
      claim,
      finish,
      exact,
      check: `${claimed.size} distinct of ${submitted.size} submitted, ${total} claims, ${duplicates} duplicates, ${strangers} unknown, ${pendingLeft} pending left`,
      errors: [saturated.result, heartbeatAtRate, submitRec.stats(), claim, finish].reduce((n, s) => n + s.errors, 0),
    };
  } finally {
    for (const client of clients) client.close();
  }
}

/** `count` controllers (child processes) with `env`, the scenario against them, then stopped. */
interface Engine {
  env: Record<string, string>;
  /** the pids of the database's server processes (none for SQLite: it runs in the controller) */
  backends: () => Promise<number[]>;
  done: () => Promise<void>;
}

async function system(count: number, engine: () => Promise<Engine>): Promise<Measured> {
  const dirs = Array.from({ length: count }, () => mkdtempSync(join(os.tmpdir(), "deploybot-bench-pg-http-")));
  const children: ChildProcess[] = [];
  const killAll = () => {
    for (const c of children) c.kill("SIGKILL");
  };
  process.on("exit", killAll);
  const { env: extra, backends, done } = await engine();
  try {
    // the first one migrates a fresh database; the others start together
    const first = await startChild(dirs[0]!, extra);
    children.push(first.child);
    const rest = await Promise.all(dirs.slice(1).map((d) => startChild(d, extra)));
    children.push(...rest.map((r) => r.child));
    const pids = children.map((c) => c.pid!);
    return await scenario([first.port, ...rest.map((r) => r.port)], async () => ({ controllers: pids, database: await backends() }));
  } finally {
    await Promise.all(children.map((c) => stopChild(c)));
    process.off("exit", killAll);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    await done();
  }
}

const onSqlite = async (): Promise<Engine> => ({ env: {}, backends: async () => [], done: async () => {} });
const onPostgres = async (): Promise<Engine> => {
  const name = `deploybot_bench_http_${randomBytes(5).toString("hex")}`;
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    // bench/child.ts gives every controller the same DEPLOYBOT_SECRET_KEY
    env: { DEPLOYBOT_DATABASE_URL: url.toString() },
    // the controllers' connections to this database, open once they registered the agents (pools stay warm)
    backends: async () => (await admin<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE datname = ${name}`).map((r) => r.pid),
    done: async () => {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
};

const only = process.env.BENCH_SYSTEMS?.split(",").map((w) => w.trim());
const systems: Record<string, () => Promise<Measured>> = Object.fromEntries(
  Object.entries({
    "SQLite, 1 controller": () => system(1, onSqlite),
    "PostgreSQL, 1 controller": () => system(1, onPostgres),
    "PostgreSQL, 2 controllers": () => system(2, onPostgres),
    "PostgreSQL, 3 controllers": () => system(3, onPostgres),
  }).filter(([name]) => !only || only.some((w) => name.includes(w))),
);

async function main() {
  process.on("SIGINT", () => process.exit(130));
  const code = codeVersion();
  const loadBefore = os.loadavg()[0]!;
  const runs: Record<string, Measured[]> = Object.fromEntries(Object.keys(systems).map((k) => [k, []]));
  for (let pass = 0; pass < PASSES; pass++) {
    for (const [name, run] of Object.entries(systems)) {
      console.error(`pass ${pass + 1}/${PASSES}: ${name} ...`);
      runs[name]!.push(await run());
    }
  }
  // the pass with the median cycle rate stands for the system
  const median = (xs: Measured[]) => [...xs].sort((a, b) => a.cyclesPerSecond - b.cyclesPerSecond)[Math.floor(xs.length / 2)]!;
  const m = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  const base = m["SQLite, 1 controller"] ?? Object.values(m)[0]!;
  const rate = (v: number) => Math.round(v).toLocaleString("en-US");
  const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "-");
  const cores = (v: number | null) => (v === null ? "-" : v.toFixed(2));
  const pct = (a: number, b: number) => `${Math.round((a / b) * 100)}%`;
  const date = new Date();
  const cpus = os.cpus();
  const md = [
    `# Controllers over HTTP on SQLite and PostgreSQL, ${date.toISOString()}`,
    "",
    `Machine: ${cpus[0]?.model ?? "unknown"} x ${cpus.length}, Node ${process.version}; 1-min load average before the run ${loadBefore.toFixed(2)}, after ${os.loadavg()[0]!.toFixed(2)}. Code: ${code}.`,
    `Controllers: child processes (bench/controllerProcess.ts), log level silent; SQLite: a temp file (WAL); PostgreSQL 15 on loopback (test cluster, fsync off), a fresh database per system, every controller on it. Load: one node:http client, ${CONNECTIONS} keep-alive connections in all, each request to the next controller in turn (as a round-robin proxy would, without its hop). ${rate(AGENTS)} idle agents + ${rate(AGENTS)} pool agents; ${rate(JOBS)} jobs. ${PASSES} pass(es), systems interleaved, the median pass by cycle rate shown.`,
    "A cycle is two requests: a heartbeat that claims a job, then `POST /v1/jobs/{id}/status` succeeded. CPU cores = CPU time of all controller processes, then of the PostgreSQL backends serving the database, per second of the window (from /proc). Two shared cores: more processes add contention, not capacity.",
    "",
    "| system | claim+finish cycles/s | of SQLite | CPU cores: controllers + PostgreSQL | idle heartbeats/s (closed loop) | of SQLite | p99 ms | CPU cores: controllers + PostgreSQL | heartbeat p99 ms at 100/s | exactly once |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ...Object.entries(m).map(
      ([k, r]) =>
        `| ${k} | ${rate(r.cyclesPerSecond)} | ${pct(r.cyclesPerSecond, base.cyclesPerSecond)} | ${cores(r.cycleCores)} + ${cores(r.cycleDatabaseCores)} | ${rate(r.heartbeat.perSecond)} | ${pct(r.heartbeat.perSecond, base.heartbeat.perSecond)} | ${ms(r.heartbeat.p99)} | ${cores(r.heartbeatCores)} + ${cores(r.heartbeatDatabaseCores)} | ${ms(r.heartbeatAtRate.p99)} | ${r.exact && r.errors === 0 ? "ok" : `**FAILED** (${r.check}; ${r.errors} errors)`} |`,
    ),
    "",
    ...(PASSES > 1 ? ["Cycles/s per pass:", "", ...Object.entries(runs).map(([k, v]) => `- ${k}: ${v.map((r) => rate(r.cyclesPerSecond)).join(", ")}`), ""] : []),
  ].join("\n");
  console.log(md);
  const resultsDir = join(ROOT, "bench/results");
  mkdirSync(resultsDir, { recursive: true });
  const out = join(resultsDir, `${date.toISOString().slice(0, 10)}-pg-http`);
  writeFileSync(`${out}.md`, md);
  writeFileSync(`${out}.json`, `${JSON.stringify({ date: date.toISOString(), code, connections: CONNECTIONS, agents: AGENTS, jobs: JOBS, passes: PASSES, runs }, null, 2)}\n`);
  console.error(`wrote ${out}.md and ${out}.json`);
  // slow numbers are findings; a job claimed twice or a failed request is a broken controller
  if (Object.values(runs).some((v) => v.some((r) => !r.exact || r.errors > 0))) process.exitCode = 1;
}

await main();
