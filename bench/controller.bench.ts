/**
 * `pnpm bench`: load on a real controller (child process, file database, loopback only).
 *   1. 1,000 agents heartbeat round-robin over 64 keep-alive connections, against /healthz as
 *      the framework's ceiling; the same agents open-loop at their real rate (100/s); then
 *      saturated again with 10,000 jobs pending for a label they lack.
 *   2. 10,000 jobs queued for label `pool`, claimed by 1,000 `pool` agents through heartbeats
 *      and finished with `succeeded`; every job must be claimed exactly once.
 * Runs twice, group commit off then on (DEPLOYBOT_GROUP_COMMIT), each on a fresh controller.
 * Writes bench/results/<date>-controller.{md,json}. Env: BENCH_CPU_PROF=<dir> profiles the child;
 * BENCH_GROUP_COMMIT=1 runs the default (on) only.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { ADMIN, codeVersion, JOIN, ROOT, startChild, stopChild, waitHealthy } from "./child";
import { Client, Recorder, type Reply, runAtRate, runEach, runFor, type Stats } from "./load";

const CONNECTIONS = 64;
const AGENTS = 1_000;
const JOBS = 10_000;
const WARMUP_MS = 1_000;
const DURATION_MS = 5_000;
/** 1,000 agents at the default 10 s heartbeat interval. */
const REAL_HEARTBEATS_PER_SECOND = 100;
const TARGET = { heartbeatShareOfHealthz: 0.4, heartbeatP99Ms: 20, claimsPerSecond: 2_000, cyclesShareOfHealthz: 0.3 };
/** The run before the job-state module and its outbox (git log: e357b1c), for "no worse than before". */
const BEFORE = { heartbeatP99Ms: 18.83, heartbeatAtRateP99Ms: 1.29, heartbeatCpuUs: 157, cyclesShareOfHealthz: 0.122 };

interface AgentCreds {
  id: string;
  token: string;
}

function must(reply: Reply, what: string): void {
  if (reply.status < 200 || reply.status >= 300) throw new Error(`${what}: ${reply.status} ${reply.body.slice(0, 300)}`);
}

async function registerAgents(client: Client, pid: number | undefined, prefix: string, labels: string[], rec: Recorder): Promise<AgentCreds[]> {
  const agents: AgentCreds[] = [];
  const names = Array.from({ length: AGENTS }, (_, i) => `${prefix}-${String(i).padStart(4, "0")}`);
  await runEach({
    items: names,
    connections: CONNECTIONS,
    serverPid: pid,
    rec,
    send: (hostname) => client.request("POST", "/v1/agents/register", JOIN, { hostname, labels, version: "bench", capabilities: { volumes: true } }),
    onReply: (_, r) => {
      const body = JSON.parse(r.body) as { agent: { id: string }; token: string };
      agents.push({ id: body.agent.id, token: body.token });
    },
  });
  if (agents.length !== AGENTS) throw new Error(`registered ${agents.length} of ${AGENTS} agents: ${JSON.stringify(rec.stats().firstError)}`);
  return agents;
}

/** Round-robin over all agents from every connection, so each request carries a different JWT. */
function heartbeatLoad(client: Client, agents: AgentCreds[], pid: number | undefined): Promise<Stats> {
  let i = 0;
  return runFor({
    connections: CONNECTIONS,
    warmupMs: WARMUP_MS,
    durationMs: DURATION_MS,
    serverPid: pid,
    send: () => {
      const a = agents[i++ % agents.length]!;
      return client.request("POST", `/v1/agents/${a.id}/heartbeat`, a.token, {});
    },
  });
}

interface Claim {
  agent: AgentCreds;
  jobId: string;
  leaseId: string;
}

/**
 * Rounds: every pool agent heartbeats once (claim-only window), then every agent that got a job
 * reports it succeeded (finish window). Timing the two windows apart gives an honest claim-only
 * rate; their sum is the full claim+finish cycle rate.
 */
async function claimAll(client: Client, pool: AgentCreds[], pid: number | undefined) {
  const claimRec = new Recorder();
  const finishRec = new Recorder();
  const claimed = new Map<string, number>();
  let rounds = 0;
  let totalClaims = 0;
  // Stops once every job was claimed, so no empty round dilutes the claim rate; the caller then
  // checks that nothing is left pending.
  while (totalClaims < JOBS && rounds < 3 * Math.ceil(JOBS / pool.length)) {
    rounds++;
    const got: Claim[] = [];
    await runEach({
      items: pool,
      connections: CONNECTIONS,
      serverPid: pid,
      rec: claimRec,
      send: (a) => client.request("POST", `/v1/agents/${a.id}/heartbeat`, a.token, {}),
      onReply: (agent, r) => {
        const job = (JSON.parse(r.body) as { job: { id: string; leaseId: string } | null }).job;
        if (job) got.push({ agent, jobId: job.id, leaseId: job.leaseId });
      },
    });
    if (got.length === 0) break; // nothing claimable although jobs are missing: the checks report it
    totalClaims += got.length;
    for (const c of got) claimed.set(c.jobId, (claimed.get(c.jobId) ?? 0) + 1);
    await runEach({
      items: got,
      connections: CONNECTIONS,
      serverPid: pid,
      rec: finishRec,
      send: (c) => client.request("POST", `/v1/jobs/${c.jobId}/status`, c.agent.token, { leaseId: c.leaseId, status: "succeeded" }),
    });
  }
  return { claim: claimRec.stats(), finish: finishRec.stats(), claimed, totalClaims, rounds };
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "-");
const rate = (v: number) => Math.round(v).toLocaleString("en-US");
const pct = (v: number | null) => (v === null ? "-" : `${Math.round(v * 100)}%`);

function row(name: string, s: Stats, perSecondLabel = rate(s.perSecond)): string {
  // CPU time per request holds steady when other processes steal the cores; req/s does not.
  const cpuPerRequest = s.serverCpu === null ? "-" : Math.round((s.serverCpu * s.seconds * 1e6) / s.requests).toLocaleString("en-US");
  return `| ${name} | ${s.requests.toLocaleString("en-US")} | ${s.errors} | ${perSecondLabel} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.max)} | ${pct(s.serverCpu)} | ${cpuPerRequest} | ${pct(s.clientCpu)} |`;
}

/** One controller (a child process) under the whole scenario; `env` is added to its environment. */
async function measureController(env: Record<string, string>) {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-bench-"));
  let child: ChildProcess | undefined;
  // Last resort if this throws past its finally or the user hits ^C: no orphan controller.
  const killChild = () => child?.kill("SIGKILL");
  process.on("exit", killChild);
  let client: Client | undefined;
  try {
    const started = await startChild(dir, env);
    child = started.child;
    const pid = child.pid;
    client = new Client("127.0.0.1", started.port, CONNECTIONS);
    await waitHealthy(client);
    const c = client;
    const loadBefore = os.loadavg()[0]!;

    console.error("registering 2 x 1,000 agents ...");
    const registerRec = new Recorder();
    const hbAgents = await registerAgents(c, pid, "hb", [], registerRec);
    const poolAgents = await registerAgents(c, pid, "pool", ["pool"], registerRec);
    const register = registerRec.stats();

    console.error("GET /healthz ...");
    const healthz = await runFor({
      connections: CONNECTIONS,
      warmupMs: WARMUP_MS,
      durationMs: DURATION_MS,
      serverPid: pid,
      send: () => c.request("GET", "/healthz"),
    });
    console.error("heartbeats, empty queue ...");
    const heartbeat = await heartbeatLoad(c, hbAgents, pid);

    console.error(`heartbeats at ${REAL_HEARTBEATS_PER_SECOND}/s, open loop ...`);
    let next = 0;
    const heartbeatAtRate = await runAtRate({
      perSecond: REAL_HEARTBEATS_PER_SECOND,
      durationMs: DURATION_MS,
      serverPid: pid,
      send: () => {
        const a = hbAgents[next++ % hbAgents.length]!;
        return c.request("POST", `/v1/agents/${a.id}/heartbeat`, a.token, {});
      },
    });

    console.error(`submitting ${JOBS.toLocaleString("en-US")} jobs ...`);
    const submitted = new Set<string>();
    const submitRec = new Recorder();
    await runEach({
      items: Array.from({ length: JOBS }, (_, i) => i),
      connections: CONNECTIONS,
      serverPid: pid,
      rec: submitRec,
      send: (i) =>
        c.request("POST", "/v1/jobs", ADMIN, {
          spec: { kind: "build", app: "web", source: { type: "image", image: `img-${i}` } },
          target: { labels: ["pool"] },
        }),
      onReply: (_, r) => submitted.add((JSON.parse(r.body) as { job: { id: string } }).job.id),
    });
    const submit = submitRec.stats();

    // Agents without the label still run the claim query on every heartbeat: does a backlog they
    // cannot take slow them down?
    console.error("heartbeats, 10,000 jobs pending for a label these agents lack ...");
    const heartbeatBacklog = await heartbeatLoad(c, hbAgents, pid);

    console.error("claiming ...");
    const claims = await claimAll(c, poolAgents, pid);
    const cycleSeconds = claims.claim.seconds + claims.finish.seconds;
    const cyclesPerSecond = claims.totalClaims / cycleSeconds;
    const claimsPerSecond = claims.totalClaims / claims.claim.seconds;

    const finalCheck = await c.request("GET", "/v1/jobs?status=pending&limit=1", ADMIN);
    must(finalCheck, "list pending jobs");
    const pendingLeft = (JSON.parse(finalCheck.body) as { jobs: unknown[] }).jobs.length;
    const duplicates = [...claims.claimed.values()].filter((n) => n > 1).length;
    const strangers = [...claims.claimed.keys()].filter((id) => !submitted.has(id)).length;
    const exact = claims.claimed.size === JOBS && submitted.size === JOBS && duplicates === 0 && strangers === 0 && pendingLeft === 0;
    const errors = [register, healthz, heartbeat, heartbeatAtRate, submit, heartbeatBacklog, claims.claim, claims.finish].reduce((n, s) => n + s.errors, 0);
    // Server CPU per cycle against per /healthz: the steady form of the cycles/healthz ratio when
    // other processes take the cores unevenly between windows.
    const cycleCpuUs = cpuUs(claims.claim) + cpuUs(claims.finish);
    const cpuShareOfHealthz = cycleCpuUs > 0 ? cpuUs(healthz) / cycleCpuUs : null;
    return {
      loadBefore,
      register,
      healthz,
      heartbeat,
      heartbeatAtRate,
      submit,
      heartbeatBacklog,
      claims,
      submitted,
      cycleSeconds,
      cyclesPerSecond,
      claimsPerSecond,
      cycleCpuUs,
      cpuShareOfHealthz,
      pendingLeft,
      duplicates,
      strangers,
      exact,
      errors,
    };
  } finally {
    client?.close();
    if (child) await stopChild(child);
    process.off("exit", killChild);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Server CPU µs per request in a window (NaN without /proc). */
const cpuUs = (s: Stats) => (s.serverCpu === null ? Number.NaN : (s.serverCpu * s.seconds * 1e6) / s.requests);

async function main() {
  process.on("SIGINT", () => process.exit(130));
  const code = codeVersion(); // read before a child loads the code it will run
  // Group commit off, then on (the default), each on a fresh controller: what it buys, measured
  // in the same run. BENCH_GROUP_COMMIT=1 measures the default only.
  const settings = process.env.BENCH_GROUP_COMMIT === "1" ? ["1"] : ["0", "1"];
  const runs: Array<{ groupCommit: boolean; r: Awaited<ReturnType<typeof measureController>> }> = [];
  for (const g of settings) {
    console.error(`controller with DEPLOYBOT_GROUP_COMMIT=${g} ...`);
    runs.push({ groupCommit: g === "1", r: await measureController({ DEPLOYBOT_GROUP_COMMIT: g }) });
  }
  const main = runs[runs.length - 1]!.r;
  const off = runs.find((x) => !x.groupCommit)?.r;
  const { healthz, heartbeat, heartbeatAtRate, cyclesPerSecond, claimsPerSecond } = main;
  const ratio = heartbeat.perSecond / healthz.perSecond;
  const exact = runs.every((x) => x.r.exact);
  const errors = runs.reduce((n, x) => n + x.r.errors, 0);
  const cpus = os.cpus();
  const date = new Date();
  const machine = {
    cpu: `${cpus[0]?.model ?? "unknown"} x ${cpus.length}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverageBefore: main.loadBefore.toFixed(2),
    code,
  };
  const check = (ok: boolean) => (ok ? "met" : "**MISSED**");
  const us = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "-");
  const table = (r: typeof main, label: string) => [
    `| scenario (${label}) | requests | errors | req/s | p50 ms | p99 ms | max ms | server CPU | server CPU µs/req | client CPU |`,
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    row("register (2 x 1,000 agents)", r.register),
    row("GET /healthz (framework ceiling)", r.healthz),
    row("heartbeat, 1,000 agents, empty queue", r.heartbeat),
    row(`heartbeat, open loop at ${REAL_HEARTBEATS_PER_SECOND}/s (1,000 agents every 10 s)`, r.heartbeatAtRate),
    row("submit job (POST /v1/jobs)", r.submit),
    row("heartbeat, 1,000 agents, 10k jobs pending for another label", r.heartbeatBacklog),
    row(`claim-only heartbeats (${r.claims.rounds} rounds of 1,000 pool agents)`, r.claims.claim),
    row("finish (POST /v1/jobs/{id}/status succeeded)", r.claims.finish),
  ];
  const compare = off
    ? [
        `Group commit, same run, each on a fresh controller (off first, then on), ${CONNECTIONS} connections:`,
        "",
        "| DEPLOYBOT_GROUP_COMMIT | cycles/s | of /healthz req/s | server CPU µs per cycle (claim + finish) | /healthz CPU µs/req | of /healthz by CPU | heartbeat p99 saturated / at 100/s |",
        "|---|---:|---:|---:|---:|---:|---|",
        ...runs.map(
          ({ groupCommit, r }) =>
            `| ${groupCommit ? "1 (default)" : "0"} | ${rate(r.cyclesPerSecond)} | ${pct(r.cyclesPerSecond / r.healthz.perSecond)} | ${us(r.cycleCpuUs)} | ${us(cpuUs(r.healthz))} | ${pct(r.cpuShareOfHealthz)} | ${ms(r.heartbeat.p99)} / ${ms(r.heartbeatAtRate.p99)} ms |`,
        ),
        "",
      ]
    : [];

  const md = [
    `# Controller benchmark, ${date.toISOString()}`,
    "",
    `Machine: ${machine.cpu}, ${machine.memory}, Node ${machine.node}, ${machine.os}; 1-min load average before the run ${machine.loadAverageBefore}. Code: ${machine.code}.`,
    `Controller: child process, SQLite file (WAL) in a temp dir, log level silent. Load: one node:http client, ${CONNECTIONS} keep-alive connections on 127.0.0.1, closed loop; timed runs are ${WARMUP_MS / 1000} s warm-up + ${DURATION_MS / 1000} s.`,
    "Server/client CPU = share of one core used by the controller / by the load generator during the window (~100% server = the controller's one event loop is the limit). The machine may be shared: compare CPU µs/req across runs, not only req/s.",
    "A cycle is two requests: a heartbeat that claims a job, then `POST /v1/jobs/{id}/status` succeeded.",
    "",
    ...table(main, "group commit on, the default"),
    "",
    ...compare,
    "| target | measured | |",
    "|---|---:|---|",
    `| heartbeat rate >= ${TARGET.heartbeatShareOfHealthz * 100}% of /healthz | ${(ratio * 100).toFixed(1)}% | ${check(ratio >= TARGET.heartbeatShareOfHealthz)} |`,
    // A closed loop's latency is connections / throughput (Little's law), so both are shown.
    `| heartbeat p99 <= ${TARGET.heartbeatP99Ms} ms at 1,000 agents, saturated (${CONNECTIONS} connections, closed loop) | ${ms(heartbeat.p99)} ms | ${check(heartbeat.p99 <= TARGET.heartbeatP99Ms)} |`,
    `| heartbeat p99 <= ${TARGET.heartbeatP99Ms} ms at 1,000 agents, real rate (${REAL_HEARTBEATS_PER_SECOND}/s open loop) | ${ms(heartbeatAtRate.p99)} ms | ${check(heartbeatAtRate.p99 <= TARGET.heartbeatP99Ms)} |`,
    `| claims/s >= ${rate(TARGET.claimsPerSecond)} (claim-only heartbeats: claims / time in claim windows) | ${rate(claimsPerSecond)} | ${check(claimsPerSecond >= TARGET.claimsPerSecond)} |`,
    `| full claim+finish cycles/s (claims / time in claim + finish windows) | ${rate(cyclesPerSecond)} | ${check(cyclesPerSecond >= TARGET.claimsPerSecond)} |`,
    `| claim+finish cycles/s >= ${TARGET.cyclesShareOfHealthz * 100}% of /healthz req/s (before: ${(BEFORE.cyclesShareOfHealthz * 100).toFixed(1)}%) | ${((cyclesPerSecond / healthz.perSecond) * 100).toFixed(1)}% | ${check(cyclesPerSecond / healthz.perSecond >= TARGET.cyclesShareOfHealthz)} |`,
    `| the same by server CPU (µs per /healthz / µs per cycle) | ${pct(main.cpuShareOfHealthz)} | ${check((main.cpuShareOfHealthz ?? 0) >= TARGET.cyclesShareOfHealthz)} |`,
    `| heartbeat p99 no worse than before (saturated ${BEFORE.heartbeatP99Ms} ms, real rate ${BEFORE.heartbeatAtRateP99Ms} ms; CPU ${BEFORE.heartbeatCpuUs} µs/req) | ${ms(heartbeat.p99)} ms, ${ms(heartbeatAtRate.p99)} ms; ${us(cpuUs(heartbeat))} µs/req | ${check(heartbeat.p99 <= BEFORE.heartbeatP99Ms * 1.1 && heartbeatAtRate.p99 <= BEFORE.heartbeatAtRateP99Ms * 1.5)} |`,
    ...(off
      ? [
          `| heartbeat p99 no worse than group commit off, same run (${ms(off.heartbeat.p99)} / ${ms(off.heartbeatAtRate.p99)} ms) | ${ms(heartbeat.p99)} / ${ms(heartbeatAtRate.p99)} ms | ${check(heartbeat.p99 <= off.heartbeat.p99 * 1.1 && heartbeatAtRate.p99 <= off.heartbeatAtRate.p99 * 1.5)} |`,
        ]
      : []),
    ...runs.map(
      ({ groupCommit, r }) =>
        `| every job claimed exactly once (group commit ${groupCommit ? "on" : "off"}) | ${r.claims.claimed.size.toLocaleString("en-US")} distinct of ${r.submitted.size.toLocaleString("en-US")} submitted, ${r.claims.totalClaims.toLocaleString("en-US")} claims, ${r.duplicates} duplicates, ${r.strangers} unknown, ${r.pendingLeft} pending left | ${r.exact ? "ok" : "**FAILED**"} |`,
    ),
    `| non-2xx answers | ${errors} | ${errors === 0 ? "ok" : "**FAILED**"} |`,
    "",
    ...(off ? ["Group commit off:", "", ...table(off, "group commit off"), ""] : []),
  ].join("\n");
  console.log(md);

  const resultsDir = join(ROOT, "bench/results");
  mkdirSync(resultsDir, { recursive: true });
  const base = join(resultsDir, `${date.toISOString().slice(0, 10)}-controller`);
  writeFileSync(`${base}.md`, md);
  const json = (r: typeof main) => ({
    register: r.register,
    healthz: r.healthz,
    heartbeat: r.heartbeat,
    heartbeatShareOfHealthz: r.heartbeat.perSecond / r.healthz.perSecond,
    heartbeatAtRate: r.heartbeatAtRate,
    submit: r.submit,
    heartbeatBacklog: r.heartbeatBacklog,
    claimOnly: { ...r.claims.claim, claimsPerSecond: r.claimsPerSecond },
    finish: r.claims.finish,
    cycles: {
      claims: r.claims.totalClaims,
      distinct: r.claims.claimed.size,
      rounds: r.claims.rounds,
      seconds: r.cycleSeconds,
      cyclesPerSecond: r.cyclesPerSecond,
      serverCpuUsPerCycle: r.cycleCpuUs,
      cpuShareOfHealthz: r.cpuShareOfHealthz,
    },
    exact: r.exact,
    errors: r.errors,
  });
  writeFileSync(
    `${base}.json`,
    `${JSON.stringify(
      {
        date: date.toISOString(),
        machine,
        settings: { connections: CONNECTIONS, agents: AGENTS, jobs: JOBS, warmupMs: WARMUP_MS, durationMs: DURATION_MS },
        ...json(main),
        ...(off ? { groupCommitOff: json(off) } : {}),
        targets: TARGET,
      },
      null,
      2,
    )}\n`,
  );
  console.error(`wrote ${base}.md and ${base}.json`);
  // Slow numbers are findings; a wrong count or a failed request is a broken controller.
  if (!exact || errors > 0) process.exitCode = 1;
}

await main();
