/**
 * `pnpm bench`: load on real controllers (child processes, file databases, loopback only).
 *
 * Two controllers run side by side: this checkout and a baseline (BENCH_BASELINE_REF, default
 * the main commit before heartbeats carried final statuses). Every measurement is a short window,
 * and the windows alternate between the controllers and between /healthz and the load measured
 * against it, round after round, so a neighbour that takes the cores for a while costs every
 * side alike. Ratios are taken per round (a window against the /healthz window just before it
 * on the same controller) and the median of the rounds is reported.
 *
 *   A. Empty queue: GET /healthz, 1,000 agents heartbeating round-robin over 64 keep-alive
 *      connections (saturated), and the same agents open-loop at their real rate (100/s).
 *   B. Jobs for label `pool`: each round, 1,000 `pool` agents claim and finish one job each,
 *      - in two requests (a heartbeat claims, `POST /v1/jobs/{id}/status` finishes), and
 *      - in one (the heartbeat that asks for the next job carries the last one's `finished`),
 *        on controllers that name `heartbeat.finished`.
 *      Every job must be claimed exactly once and finished.
 *
 * Both rate and server CPU are reported: the issue's target is the rate ratio (cycles/s against
 * /healthz req/s); CPU µs per request (`/proc/<pid>/stat` of the controller) is the figure that
 * holds when the machine is shared. Writes bench/results/<date>-controller.{md,json}.
 * Env: BENCH_BASELINE_REF=<ref> (or `none`), BENCH_FLOOR=1 (the stack alone beside them, see FLOOR), BENCH_ROUNDS (10), BENCH_CPU_PROF=<dir> profiles the children and writes <dir>/windows.json (when each window ran, on the profiles' clock).
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { ADMIN, checkoutBaseline, codeVersion, JOIN, ROOT, removeBaseline, startChild, stopChild, waitHealthy } from "./child";
import { Client, measured, Recorder, type Reply, runEach, type Stats } from "./load";

const CONNECTIONS = 64;
const AGENTS = 1_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const EMPTY_ROUNDS = 3;
const WARMUP_MS = 200;
const WINDOW_MS = 1_000;
const AT_RATE_MS = 2_000;
/** 1,000 agents at the default 10 s heartbeat interval. */
const REAL_HEARTBEATS_PER_SECOND = 100;
const BASELINE_REF = process.env.BENCH_BASELINE_REF ?? "65e9e76";
const FINISHED_FEATURE = "heartbeat.finished";
const TARGET = { cyclesShareOfHealthz: 0.3 };
/**
 * BENCH_FLOOR=1: a third server in the same windows, the controller's stack serving the same
 * protocol with nothing of the product (bench/floorServer.ts): the share of /healthz that stack
 * itself reaches is the ceiling for the target.
 */
const FLOOR = process.env.BENCH_FLOOR === "1";

interface AgentCreds {
  id: string;
  token: string;
}
interface Held {
  jobId: string;
  leaseId: string;
}

function must(reply: Reply, what: string): void {
  if (reply.status < 200 || reply.status >= 300) throw new Error(`${what}: ${reply.status} ${reply.body.slice(0, 300)}`);
}

/** With BENCH_CPU_PROF: when each window ran (CLOCK_MONOTONIC µs, the clock of the profiles' timestamps), to cut a profile to one kind of window. */
const windowTimes: Array<{ series: string; pid: number | undefined; fromUs: number; toUs: number }> = [];
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

/** A series of windows of one kind on one controller: each window's figures, and all latencies pooled. */
class Series {
  constructor(readonly name: string) {}
  readonly windows: Stats[] = [];
  readonly pooled = new Recorder();
  /** cycles (jobs claimed and finished) per window, for the cycle series */
  readonly cycles: number[] = [];

  async window(serverPid: number | undefined, work: (record: (reply: Reply, ms: number) => void) => Promise<void>, cycles = 0) {
    const w = new Recorder();
    const record = (reply: Reply, ms: number) => {
      w.record(reply, ms);
      this.pooled.record(reply, ms);
    };
    const fromUs = monotonicUs();
    const m = await measured(serverPid, () => work(record));
    windowTimes.push({ series: this.name, pid: serverPid, fromUs, toUs: monotonicUs() });
    w.addWindow(m);
    this.pooled.addWindow(m);
    this.windows.push(w.stats());
    this.cycles.push(cycles);
  }

  stats(): Stats {
    return this.pooled.stats();
  }
}

/** Closed loop: `connections` workers back to back for `ms`, after an unrecorded warm-up. */
async function closedLoop(series: Series, pid: number | undefined, send: () => Promise<Reply>): Promise<void> {
  const loop = async (until: number, record?: (r: Reply, ms: number) => void) => {
    const worker = async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        const reply = await send();
        record?.(reply, performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  };
  await loop(performance.now() + WARMUP_MS);
  await series.window(pid, (record) => loop(performance.now() + WINDOW_MS, record));
}

/** Open loop at a fixed rate: latency is the server's own, not the queue a closed loop builds. */
async function atRate(series: Series, pid: number | undefined, send: () => Promise<Reply>): Promise<void> {
  await series.window(pid, async (record) => {
    const inFlight: Promise<void>[] = [];
    const start = performance.now();
    let sent = 0;
    while (performance.now() - start < AT_RATE_MS) {
      const due = Math.floor(((performance.now() - start) / 1000) * REAL_HEARTBEATS_PER_SECOND);
      for (; sent < due; sent++) {
        const t0 = performance.now();
        inFlight.push(send().then((reply) => record(reply, performance.now() - t0)));
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(inFlight);
  });
}

/** Runs `send` once per item with at most CONNECTIONS in flight, as one window of `series`. */
async function each<T>(series: Series, pid: number | undefined, items: readonly T[], send: (item: T) => Promise<Reply>, onReply: (item: T, r: Reply) => void, cycles: () => number) {
  let next = 0;
  let done = 0;
  await series.window(
    pid,
    async (record) => {
      const worker = async () => {
        while (next < items.length) {
          const item = items[next++]!;
          const t0 = performance.now();
          const reply = await send(item);
          record(reply, performance.now() - t0);
          if (reply.status >= 200 && reply.status < 300) onReply(item, reply);
        }
      };
      await Promise.all(Array.from({ length: CONNECTIONS }, worker));
      done = cycles();
    },
    0,
  );
  series.cycles[series.cycles.length - 1] = done;
}

/** One controller under test: its process, its client, its agents and its figures. */
class Subject {
  child!: ChildProcess;
  client!: Client;
  hb: AgentCreds[] = [];
  pool2: AgentCreds[] = [];
  pool1: AgentCreds[] = [];
  finishedInHeartbeat = false;
  readonly healthz = new Series("healthz");
  readonly heartbeat = new Series("heartbeat");
  readonly heartbeatAtRate = new Series("heartbeatAtRate");
  /** per round: /healthz just before the cycle windows */
  readonly healthzB = new Series("healthzB");
  readonly claim2 = new Series("claim2");
  readonly finish2 = new Series("finish2");
  readonly cycle1 = new Series("cycle1");
  readonly claimed = new Map<string, number>();
  submitted = new Set<string>();
  finishedAccepted = 0;
  finishedRefused: string | undefined;
  /** what each one-request agent holds between rounds */
  readonly holding = new Map<string, Held>();
  private readonly dir = mkdtempSync(join(os.tmpdir(), "deploybot-bench-"));
  private next = 0;

  constructor(
    readonly label: string,
    private readonly env: Record<string, string>,
  ) {}

  get pid() {
    return this.child.pid;
  }

  async start() {
    const started = await startChild(this.dir, this.env);
    this.child = started.child;
    this.client = new Client("127.0.0.1", started.port, CONNECTIONS);
    await waitHealthy(this.client);
  }

  async stop() {
    this.client?.close();
    if (this.child) await stopChild(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }

  async register(prefix: string, labels: string[]): Promise<AgentCreds[]> {
    const rec = new Recorder();
    const agents: AgentCreds[] = [];
    await runEach({
      items: Array.from({ length: AGENTS }, (_, i) => `${prefix}-${String(i).padStart(4, "0")}`),
      connections: CONNECTIONS,
      serverPid: this.pid,
      rec,
      send: (hostname) => this.client.request("POST", "/v1/agents/register", JOIN, { hostname, labels, version: "bench", capabilities: { volumes: true } }),
      onReply: (_, r) => {
        const body = JSON.parse(r.body) as { agent: { id: string }; token: string; features?: string[] };
        agents.push({ id: body.agent.id, token: body.token });
        if (body.features?.includes(FINISHED_FEATURE)) this.finishedInHeartbeat = true;
      },
    });
    if (agents.length !== AGENTS) throw new Error(`${this.label}: registered ${agents.length} of ${AGENTS} agents: ${rec.stats().firstError}`);
    return agents;
  }

  /**
   * One unrecorded heartbeat per agent on the empty queue: a fleet's tokens are verified once
   * and then cached (HMAC on libuv's threads, which /proc counts as the controller's CPU), and a
   * first window full of first verifications measured that, not a heartbeat.
   */
  async warm(agents: AgentCreds[]) {
    const rec = new Recorder();
    await runEach({ items: agents, connections: CONNECTIONS, serverPid: this.pid, rec, send: (a) => this.heartbeatOf(a) });
    if (rec.stats().errors > 0) throw new Error(`${this.label}: warm-up heartbeat refused: ${rec.stats().firstError}`);
  }

  async submit(n: number) {
    const rec = new Recorder();
    await runEach({
      items: Array.from({ length: n }, (_, i) => i),
      connections: CONNECTIONS,
      serverPid: this.pid,
      rec,
      send: (i) =>
        this.client.request("POST", "/v1/jobs", ADMIN, { spec: { kind: "build", app: "web", source: { type: "image", image: `img-${i}` } }, target: { labels: ["pool"] } }),
      onReply: (_, r) => this.submitted.add((JSON.parse(r.body) as { job: { id: string } }).job.id),
    });
    if (this.submitted.size !== n) throw new Error(`${this.label}: submitted ${this.submitted.size} of ${n}: ${rec.stats().firstError}`);
  }

  private heartbeatOf(a: AgentCreds, body: unknown = {}) {
    return this.client.request("POST", `/v1/agents/${a.id}/heartbeat`, a.token, body);
  }

  private nextHb = () => this.hb[this.next++ % this.hb.length]!;

  healthzWindow(series: Series) {
    return closedLoop(series, this.pid, () => this.client.request("GET", "/healthz"));
  }

  heartbeatWindow() {
    return closedLoop(this.heartbeat, this.pid, () => this.heartbeatOf(this.nextHb()));
  }

  heartbeatAtRateWindow() {
    return atRate(this.heartbeatAtRate, this.pid, () => this.heartbeatOf(this.nextHb()));
  }

  private noteClaim(jobId: string) {
    this.claimed.set(jobId, (this.claimed.get(jobId) ?? 0) + 1);
  }

  /** Two requests per job: every pool agent heartbeats (claim window), then reports (finish window). */
  async twoRequestRound() {
    const got: Array<{ agent: AgentCreds } & Held> = [];
    await each(
      this.claim2,
      this.pid,
      this.pool2,
      (a) => this.heartbeatOf(a),
      (agent, r) => {
        const job = (JSON.parse(r.body) as { job: Held & { id: string } | null }).job;
        if (job) {
          got.push({ agent, jobId: job.id, leaseId: job.leaseId });
          this.noteClaim(job.id);
        }
      },
      () => got.length,
    );
    await each(
      this.finish2,
      this.pid,
      got,
      (c) => this.client.request("POST", `/v1/jobs/${c.jobId}/status`, c.agent.token, { leaseId: c.leaseId, status: "succeeded" }),
      () => undefined,
      () => got.length,
    );
  }

  /**
   * One request per job: each pool agent's heartbeat carries its last job's `finished` and asks
   * for the next. `last`: the agents say `draining`, so the round only finishes.
   */
  async oneRequestRound(last = false) {
    let cycles = 0;
    await each(
      this.cycle1,
      this.pid,
      this.pool1,
      (a) => {
        const held = this.holding.get(a.id);
        if (!held) return this.heartbeatOf(a, last ? { status: "draining" } : {});
        return this.heartbeatOf(a, {
          status: last ? "draining" : "busy",
          heldJobIds: [held.jobId],
          finished: { jobId: held.jobId, leaseId: held.leaseId, status: "succeeded" },
        });
      },
      (a, r) => {
        const body = JSON.parse(r.body) as { job: Held & { id: string } | null; finished?: { accepted: boolean; error?: unknown } };
        if (this.holding.has(a.id)) {
          if (body.finished?.accepted) {
            this.finishedAccepted++;
            cycles++; // a job claimed in an earlier round is now claimed and finished
          } else this.finishedRefused ??= JSON.stringify(body.finished ?? "no finished in the answer");
          this.holding.delete(a.id);
        }
        if (body.job) {
          this.holding.set(a.id, { jobId: body.job.id, leaseId: body.job.leaseId });
          this.noteClaim(body.job.id);
        }
      },
      () => cycles,
    );
  }

  async left(status: string): Promise<number> {
    const r = await this.client.request("GET", `/v1/jobs?status=${status}&limit=1`, ADMIN);
    must(r, `list ${status} jobs`);
    return (JSON.parse(r.body) as { jobs: unknown[] }).jobs.length;
  }
}

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
/** Server CPU µs per request of a window (NaN without /proc). */
const cpuUs = (s: Stats) => (s.serverCpu === null ? Number.NaN : (s.serverCpu * s.seconds * 1e6) / s.requests);
const cpuTotalUs = (s: Stats) => (s.serverCpu === null ? Number.NaN : s.serverCpu * s.seconds * 1e6);
const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "-");
const us = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "-");
const rate = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "-");
const pct = (v: number) => (Number.isFinite(v) ? `${Math.round(v * 100)}%` : "-");

/** Per-round figures of one protocol variant against the /healthz window of the same round. */
function cycleFigures(s: Subject, windowsOf: (round: number) => Stats[], cyclesOf: (round: number) => number, rounds: number[]) {
  const per = rounds.map((r) => {
    const ws = windowsOf(r);
    const seconds = ws.reduce((n, w) => n + w.seconds, 0);
    const cpu = ws.reduce((n, w) => n + cpuTotalUs(w), 0);
    const cycles = cyclesOf(r);
    const h = s.healthzB.windows[r]!;
    return { cyclesPerSecond: cycles / seconds, cpuPerCycle: cpu / cycles, healthzPerSecond: h.perSecond, healthzCpu: cpuUs(h) };
  });
  return {
    cyclesPerSecond: median(per.map((p) => p.cyclesPerSecond)),
    cpuPerCycle: median(per.map((p) => p.cpuPerCycle)),
    healthzPerSecond: median(per.map((p) => p.healthzPerSecond)),
    healthzCpu: median(per.map((p) => p.healthzCpu)),
    byRate: median(per.map((p) => p.cyclesPerSecond / p.healthzPerSecond)),
    byCpu: median(per.map((p) => p.healthzCpu / p.cpuPerCycle)),
    rounds: per.length,
  };
}

async function main() {
  process.on("SIGINT", () => process.exit(130));
  const code = codeVersion(); // read before a child loads the code it will run
  const baselineDir = BASELINE_REF === "none" ? null : checkoutBaseline(BASELINE_REF);
  const subjects = [
    ...(baselineDir ? [new Subject(`baseline ${BASELINE_REF}`, { BENCH_CONTROLLER_SRC: baselineDir })] : []),
    ...(FLOOR ? [new Subject("floor: the stack alone (floorServer.ts)", { BENCH_SERVE_FLOOR: "1" })] : []),
    new Subject("this checkout", {}),
  ];
  const killAll = () => {
    for (const s of subjects) s.child?.kill("SIGKILL");
  };
  process.on("exit", killAll);
  const loadBefore = os.loadavg()[0]!;
  try {
    for (const s of subjects) await s.start();
    console.error("registering agents ...");
    for (const s of subjects) {
      s.hb = await s.register("hb", []);
      s.pool2 = await s.register("pool2", ["pool"]);
      if (s.finishedInHeartbeat) s.pool1 = await s.register("pool1", ["pool"]);
      for (const agents of [s.hb, s.pool2, s.pool1]) await s.warm(agents);
    }
    console.error(`A: ${EMPTY_ROUNDS} rounds of /healthz, saturated heartbeats and heartbeats at ${REAL_HEARTBEATS_PER_SECOND}/s, alternating ...`);
    for (let round = 0; round < EMPTY_ROUNDS; round++) {
      for (const s of subjects) {
        await s.healthzWindow(s.healthz);
        await s.heartbeatWindow();
        await s.heartbeatAtRateWindow();
      }
    }
    console.error("submitting jobs ...");
    for (const s of subjects) await s.submit(AGENTS * ROUNDS * (s.finishedInHeartbeat ? 2 : 1));
    console.error(`B: ${ROUNDS} rounds of /healthz, claim+finish in two requests, and in one, alternating ...`);
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of subjects) {
        await s.healthzWindow(s.healthzB);
        await s.twoRequestRound();
        if (s.finishedInHeartbeat) await s.oneRequestRound();
      }
    }
    for (const s of subjects) if (s.finishedInHeartbeat) await s.oneRequestRound(true);

    const checks = [];
    for (const s of subjects) {
      const pendingLeft = await s.left("pending");
      const assignedLeft = await s.left("assigned");
      const duplicates = [...s.claimed.values()].filter((n) => n > 1).length;
      const strangers = [...s.claimed.keys()].filter((id) => !s.submitted.has(id)).length;
      const finishedExpected = s.finishedInHeartbeat ? AGENTS * ROUNDS : 0;
      const exact =
        s.claimed.size === s.submitted.size && duplicates === 0 && strangers === 0 && pendingLeft === 0 && assignedLeft === 0 && s.finishedAccepted === finishedExpected;
      checks.push({ s, pendingLeft, assignedLeft, duplicates, strangers, exact });
    }

    const all = (s: Subject) => [s.healthz, s.heartbeat, s.heartbeatAtRate, s.healthzB, s.claim2, s.finish2, s.cycle1];
    const errors = subjects.reduce((n, s) => n + all(s).reduce((m, x) => m + x.stats().errors, 0), 0);
    const rounds = Array.from({ length: ROUNDS }, (_, r) => r);
    const figures = subjects.map((s) => ({
      s,
      two: cycleFigures(s, (r) => [s.claim2.windows[r]!, s.finish2.windows[r]!], (r) => s.claim2.cycles[r]!, rounds),
      // round 0 only claims and the draining round only finishes: the steady rounds are 1..N-1
      one: s.finishedInHeartbeat ? cycleFigures(s, (r) => [s.cycle1.windows[r]!], (r) => s.cycle1.cycles[r]!, rounds.slice(1)) : null,
      heartbeatCpu: median(s.heartbeat.windows.map(cpuUs)),
      healthzCpuA: median(s.healthz.windows.map(cpuUs)),
      heartbeatByRate: median(s.heartbeat.windows.map((w, i) => w.perSecond / s.healthz.windows[i]!.perSecond)),
    }));

    const cpus = os.cpus();
    const date = new Date();
    const machine = {
      cpu: `${cpus[0]?.model ?? "unknown"} x ${cpus.length}`,
      node: process.version,
      loadAverageBefore: loadBefore.toFixed(2),
      loadAverageAfter: os.loadavg()[0]!.toFixed(2),
      code,
    };
    const row = (name: string, x: Series) => {
      const st = x.stats();
      return `| ${name} | ${st.requests.toLocaleString("en-US")} | ${st.errors} | ${rate(st.perSecond)} | ${ms(st.p50)} | ${ms(st.p99)} | ${ms(st.max)} | ${pct(st.serverCpu ?? Number.NaN)} | ${us(median(x.windows.map(cpuUs)))} |`;
    };
    const current = figures[figures.length - 1]!;
    const base = baselineDir ? figures[0]! : null;
    const md = [
      `# Controller benchmark, ${date.toISOString()}`,
      "",
      `Machine: ${machine.cpu}, Node ${machine.node}; 1-min load average ${machine.loadAverageBefore} before, ${machine.loadAverageAfter} after. Code: ${machine.code}; baseline: ${baselineDir ? BASELINE_REF : "none"}.`,
      `Each controller is a child process on a SQLite file (WAL), log level silent. Load: one node:http client, ${CONNECTIONS} keep-alive connections on 127.0.0.1. Windows of ${WINDOW_MS / 1000} s (after ${WARMUP_MS} ms unrecorded) alternate between the controllers and between /healthz and the load; ${EMPTY_ROUNDS} rounds on an empty queue, ${ROUNDS} rounds of claim+finish of 1,000 jobs per variant. Ratios are medians of per-round ratios (each round's window against that round's /healthz window on the same controller).`,
      "Server CPU µs/req: controller process CPU (user+system, /proc) in the window divided by its requests (median over windows). Rates move with what the neighbours leave us; CPU per request is the steadier figure.",
      "",
      "| controller | variant | cycles/s | /healthz req/s | of /healthz by rate (>= 30%) | CPU µs per cycle | /healthz CPU µs/req | of /healthz by CPU | heartbeat p99 saturated / at 100/s | heartbeat CPU µs/req |",
      "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
      ...figures.flatMap((f) =>
        [
          { name: "two requests (heartbeat claims, status route finishes)", v: f.two },
          ...(f.one ? [{ name: "one request (finish in the next heartbeat)", v: f.one }] : []),
        ].map(
          ({ name, v }) =>
            `| ${f.s.label} | ${name} | ${rate(v.cyclesPerSecond)} | ${rate(v.healthzPerSecond)} | ${pct(v.byRate)} | ${us(v.cpuPerCycle)} | ${us(v.healthzCpu)} | ${pct(v.byCpu)} | ${ms(f.s.heartbeat.stats().p99)} / ${ms(f.s.heartbeatAtRate.stats().p99)} ms | ${us(f.heartbeatCpu)} |`,
        ),
      ),
      "",
      "| target | measured | |",
      "|---|---:|---|",
      ...(current.one
        ? [
            `| claim+finish cycles >= ${TARGET.cyclesShareOfHealthz * 100}% of /healthz by rate (one request per job) | ${pct(current.one.byRate)} | ${current.one.byRate >= TARGET.cyclesShareOfHealthz ? "met" : "**MISSED**"} |`,
            `| the same by server CPU | ${pct(current.one.byCpu)} | ${current.one.byCpu >= TARGET.cyclesShareOfHealthz ? "met" : "**MISSED**"} |`,
          ]
        : []),
      `| claim+finish cycles >= ${TARGET.cyclesShareOfHealthz * 100}% of /healthz by rate (two requests per job) | ${pct(current.two.byRate)} | ${current.two.byRate >= TARGET.cyclesShareOfHealthz ? "met" : "**MISSED**"} |`,
      `| the same by server CPU | ${pct(current.two.byCpu)} | ${current.two.byCpu >= TARGET.cyclesShareOfHealthz ? "met" : "**MISSED**"} |`,
      ...(base
        ? [
            `| heartbeat p99 no worse than the baseline, same run (saturated ${ms(base.s.heartbeat.stats().p99)} ms, at 100/s ${ms(base.s.heartbeatAtRate.stats().p99)} ms) | ${ms(current.s.heartbeat.stats().p99)} / ${ms(current.s.heartbeatAtRate.stats().p99)} ms | ${current.s.heartbeat.stats().p99 <= base.s.heartbeat.stats().p99 * 1.1 && current.s.heartbeatAtRate.stats().p99 <= base.s.heartbeatAtRate.stats().p99 * 1.5 ? "met" : "**MISSED**"} |`,
          ]
        : []),
      ...checks.map(
        (c) =>
          `| every job claimed exactly once and finished (${c.s.label}) | ${c.s.claimed.size.toLocaleString("en-US")} distinct of ${c.s.submitted.size.toLocaleString("en-US")}, ${c.duplicates} duplicates, ${c.strangers} unknown, ${c.pendingLeft} pending and ${c.assignedLeft} assigned left, ${c.s.finishedAccepted.toLocaleString("en-US")} finished in heartbeats${c.s.finishedRefused ? ` (first refusal: ${c.s.finishedRefused})` : ""} | ${c.exact ? "ok" : "**FAILED**"} |`,
      ),
      `| non-2xx answers | ${errors} | ${errors === 0 ? "ok" : "**FAILED**"} |`,
      "",
      ...figures.flatMap(({ s }) => [
        `${s.label}, all windows pooled (p99 over every window of the kind):`,
        "",
        "| scenario | requests | errors | req/s | p50 ms | p99 ms | max ms | server CPU | CPU µs/req (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        row("GET /healthz, empty queue", s.healthz),
        row("heartbeat, 1,000 agents, empty queue, saturated", s.heartbeat),
        row(`heartbeat, open loop at ${REAL_HEARTBEATS_PER_SECOND}/s`, s.heartbeatAtRate),
        row("GET /healthz, jobs pending", s.healthzB),
        row("claim-only heartbeat (two-request variant)", s.claim2),
        row("POST /v1/jobs/{id}/status succeeded", s.finish2),
        ...(s.finishedInHeartbeat ? [row("heartbeat with finished, claims the next job", s.cycle1)] : []),
        "",
      ]),
    ].join("\n");
    console.log(md);
    const resultsDir = join(ROOT, "bench/results");
    mkdirSync(resultsDir, { recursive: true });
    const out = join(resultsDir, `${date.toISOString().slice(0, 10)}-controller`);
    writeFileSync(`${out}.md`, md);
    const json = figures.map((f) => ({
      label: f.s.label,
      twoRequests: f.two,
      oneRequest: f.one,
      heartbeat: { saturated: f.s.heartbeat.stats(), atRate: f.s.heartbeatAtRate.stats(), cpuUsPerRequest: f.heartbeatCpu },
      healthz: f.s.healthz.stats(),
    }));
    writeFileSync(
      `${out}.json`,
      `${JSON.stringify({ date: date.toISOString(), machine, settings: { connections: CONNECTIONS, agents: AGENTS, rounds: ROUNDS, windowMs: WINDOW_MS }, subjects: json, checks: checks.map((c) => ({ label: c.s.label, exact: c.exact })), errors }, null, 2)}\n`,
    );
    console.error(`wrote ${out}.md and ${out}.json`);
    if (process.env.BENCH_CPU_PROF) writeFileSync(join(process.env.BENCH_CPU_PROF, "windows.json"), JSON.stringify(windowTimes));
    // Slow numbers are findings; a wrong count or a failed request is a broken controller.
    if (checks.some((c) => !c.exact) || errors > 0) process.exitCode = 1;
  } finally {
    for (const s of subjects) await s.stop();
    process.off("exit", killAll);
    if (baselineDir) removeBaseline(baselineDir);
  }
}

await main();
