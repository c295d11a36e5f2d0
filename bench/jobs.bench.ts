/**
 * `pnpm bench:jobs`: claim + finish cycles in one process, deploybot's job-state module next to
 * its peers, measured in the same run on the same kind of database file (WAL,
 * synchronous=NORMAL, in a temp dir):
 *   - bare: two prepared statements, `UPDATE ... WHERE id = (SELECT ...) RETURNING *` to claim
 *     and a guarded `UPDATE` to finish, on deploybot's own migrated schema — the ceiling;
 *   - plainjob (npm, a SQLite queue on better-sqlite3): its worker with a no-op processor;
 *   - deploybot, the production path (the first two rows): what the heartbeat route's handler
 *     runs for a current agent that reports its finished job in the heartbeat and takes its next
 *     one in the answer — finishInHeartbeat (finish + next claim, one transaction on SQLite),
 *     AgentService.heartbeat (wait 0), the update offer — for 1 agent and for 64 agents at once,
 *     group commit on (the default); the drainer applying every row's consequences (timed);
 *   - deploybot, the older protocol's calls: LeaseService.claimNextJob + reportStatus(succeeded) —
 *     what an agent without `finished` makes heartbeats and status reports run: lease, fencing, a
 *     transaction per transition with its outbox row — and the drainer (timed). Four ways:
 *       - one caller, claim and finish back to back (the drainer every 100 cycles), group commit
 *         off (DEPLOYBOT_GROUP_COMMIT=0: each transition its own COMMIT) and on (the default);
 *       - 64 agents at once (one host each, 64 callers in flight, the drainer following the
 *         outbox as in the server), group commit off and on.
 * Passes are interleaved (bare, plainjob, deploybot..., bare, ...) so load from other processes
 * falls on all of them; the median of the passes is reported.
 * BENCH_BASELINE=<git ref>: the same deploybot rows also run that ref's controller sources, in the
 * same passes, so a change is measured against the code before it. BENCH_SYSTEMS=a,b: only those
 * rows (names as in the JSON). BENCH_NO_PAIR=1: the production path rows with the finish and the
 * next claim as two transactions, as before they shared one (for an A/B on the same code).
 * Writes bench/results/<date>-jobs.{md,json} (a full run only).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { better, defineQueue, defineWorker } from "plainjob";
import { openDb } from "../apps/controller/src/db/client";
import { codeVersion, ROOT } from "./child";
import { CURRENT_SRC, checkoutBaseline, prepareDeploybot, type Rate, removeBaseline, stopwatch } from "./jobsDeploybot";

const JOBS = Number(process.env.BENCH_JOBS ?? 20_000);
const PASSES = Number(process.env.BENCH_PASSES ?? 3);
// BENCH_OLD_AGENT=1: the claiming agent lacks the volumes capability (an agent from before
// volumes), so its claims take the filtered probes and the waiting-job lookup
const CAPABILITIES = process.env.BENCH_OLD_AGENT === "1" ? {} : { volumes: true };
const TARGET = { shareOfBare: 0.5, shareOfPlainjob: 1 };

const CALLERS = 64;
const DEPLOYBOTS = ["deploybotHeartbeat", "deploybotHeartbeatConcurrent", "deploybotGroupOff", "deploybot", "deploybotConcurrentGroupOff", "deploybotConcurrent"] as const;
type Deploybot = (typeof DEPLOYBOTS)[number];
const BASELINE = process.env.BENCH_BASELINE;
type System = "bare" | "bareOutbox" | "plainjob" | Deploybot | `${Deploybot}@baseline`;
const SYSTEMS: System[] = ["bare", "bareOutbox", "plainjob", ...DEPLOYBOTS, ...(BASELINE ? DEPLOYBOTS.map((d) => `${d}@baseline` as const) : [])];
const LABELS: Record<Deploybot, string> = {
  deploybotHeartbeat: "**production path**: deploybot heartbeat route handler, 1 agent, finished job + next claim in one heartbeat, group commit on (default)",
  deploybotHeartbeatConcurrent: `**production path**: deploybot heartbeat route handler, ${CALLERS} agents at once, finished job + next claim in one heartbeat, group commit on (default)`,
  deploybotGroupOff: "deploybot, 1 caller, group commit off",
  deploybot: "deploybot, 1 caller, group commit on (default)",
  deploybotConcurrentGroupOff: `deploybot, ${CALLERS} agents at once, group commit off`,
  deploybotConcurrent: `deploybot, ${CALLERS} agents at once, group commit on (default)`,
};

const dirs: string[] = [];
const tempDb = () => {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-bench-jobs-"));
  dirs.push(dir);
  return join(dir, "bench.db");
};

/**
 * The bare ceiling: deploybot's schema, two prepared statements per cycle, nothing else.
 * `withOutbox`: each statement in a transaction with an outbox row, as every deploybot transition
 * is (a reference row, not a target: what the transactional outbox alone costs).
 */
function bare(withOutbox = false): Rate {
  const db = openDb(tempDb());
  const sqlite = db.$client;
  sqlite.prepare("INSERT INTO agents (id, hostname, version, created_at) VALUES ('agt_bench', 'bench-1', 'bench', 0)").run();
  const insert = sqlite.prepare(
    `INSERT INTO jobs (id, kind, app, target_host, spec, status, max_attempts, timeout_seconds, queue_deadline, created_at)
     VALUES (?, 'build', 'web', 'bench-1', ?, 'pending', 3, 60, 9999999999999, 0)`,
  );
  sqlite.transaction(() => {
    for (let i = 0; i < JOBS; i++) insert.run(`job_${String(i).padStart(8, "0")}`, JSON.stringify({ kind: "build", app: "web", source: { type: "image", image: `img-${i}` } }));
  })();
  sqlite.exec("ANALYZE");
  const claim = sqlite.prepare(`
    UPDATE jobs SET status = 'assigned', agent_id = 'agt_bench', lease_id = ?, assigned_at = ?, attempts = attempts + 1
    WHERE id = (SELECT id FROM jobs WHERE status = 'pending' AND target_host = 'bench-1' ORDER BY id LIMIT 1)
    RETURNING *`);
  const finish = sqlite.prepare("UPDATE jobs SET status = 'succeeded', finished_at = ? WHERE id = ? AND lease_id = ?");
  const outbox = sqlite.prepare("INSERT INTO outbox (type, app, subject, data, created_at) VALUES ('job.changed', 'web', ?, ?, ?)");
  const event = (row: Record<string, unknown>) => JSON.stringify({ id: row.id, kind: "build", app: "web", status: row.status, host: "bench-1", agentId: "agt_bench", attempts: row.attempts });
  const claimWithEvent = sqlite.transaction((i: number) => {
    const row = claim.get(`lse_${i}`, Date.now()) as { id: string; lease_id: string };
    outbox.run(row.id, event(row), Date.now());
    return row;
  });
  const finishWithEvent = sqlite.transaction((row: { id: string; lease_id: string }) => {
    finish.run(Date.now(), row.id, row.lease_id);
    outbox.run(row.id, event({ ...row, status: "succeeded" }), Date.now());
  });
  const stop = stopwatch(JOBS);
  for (let i = 0; i < JOBS; i++) {
    if (withOutbox) {
      finishWithEvent(claimWithEvent(i));
      continue;
    }
    const row = claim.get(`lse_${i}`, Date.now()) as { id: string; lease_id: string };
    finish.run(Date.now(), row.id, row.lease_id);
  }
  const rate = stop();
  const left = sqlite.prepare("SELECT count(*) FROM jobs WHERE status <> 'succeeded'").pluck().get();
  if (left !== 0) throw new Error(`bare: ${left} jobs not finished`);
  sqlite.close();
  return rate;
}

/** plainjob's own worker, a no-op processor, until every job is done. */
async function plainjob(): Promise<Rate> {
  const sqlite = new Database(tempDb());
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  const silent = { error() {}, warn() {}, info() {}, debug() {} };
  const queue = defineQueue({ connection: better(sqlite), logger: silent });
  queue.addMany("bench", Array.from({ length: JOBS }, (_, i) => ({ i })));
  sqlite.exec("ANALYZE");
  let done = 0;
  let finished!: () => void;
  const all = new Promise<void>((resolve) => (finished = resolve));
  const worker = defineWorker("bench", async () => {}, {
    queue,
    logger: silent,
    onCompleted: () => {
      if (++done === JOBS) finished();
    },
  });
  const stop = stopwatch(JOBS);
  void worker.start();
  await all;
  const rate = stop();
  await worker.stop();
  queue.close();
  sqlite.close();
  return rate;
}

/** deploybot's services (jobsDeploybot.ts), from `src` (this checkout, or BENCH_BASELINE's). */
async function deploybot(callers: number, groupCommit: boolean, path: "calls" | "heartbeat", src = CURRENT_SRC): Promise<Rate> {
  const system = await prepareDeploybot({ src, jobs: JOBS, callers, groupCommit, capabilities: CAPABILITIES, path });
  try {
    const rate = await system.run();
    lastGroupSize = system.groupSize();
    return rate;
  } finally {
    system.close();
  }
}

/** transitions per COMMIT in the last deploybot pass's groups (0: no group formed) */
let lastGroupSize = 0;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rate = (v: number) => Math.round(v).toLocaleString("en-US");
const pct = (share: number) => `${(share * 100).toFixed(0)}%`;

async function main() {
  const runs = Object.fromEntries(SYSTEMS.map((name) => [name, [] as number[]])) as Record<System, number[]>;
  const cpuRuns = Object.fromEntries(SYSTEMS.map((name) => [name, [] as number[]])) as Record<System, number[]>;
  const groupSizes: Partial<Record<System, number[]>> = {};
  const baselineSrc = BASELINE ? checkoutBaseline(BASELINE) : undefined;
  const ways: Record<Deploybot, [number, boolean, "calls" | "heartbeat"]> = {
    deploybotHeartbeat: [1, true, "heartbeat"],
    deploybotHeartbeatConcurrent: [CALLERS, true, "heartbeat"],
    deploybotGroupOff: [1, false, "calls"],
    deploybot: [1, true, "calls"],
    deploybotConcurrentGroupOff: [CALLERS, false, "calls"],
    deploybotConcurrent: [CALLERS, true, "calls"],
  };
  const all: Partial<Record<System, () => Rate | Promise<Rate>>> = { bare: () => bare(), bareOutbox: () => bare(true), plainjob };
  for (const d of DEPLOYBOTS) {
    all[d] = () => deploybot(...ways[d]);
    if (baselineSrc) all[`${d}@baseline`] = () => deploybot(...ways[d], baselineSrc);
  }
  // BENCH_ONLY=deploybot (one row, e.g. for --cpu-prof) or BENCH_SYSTEMS=a,b: nothing is written
  const only = (process.env.BENCH_SYSTEMS ?? process.env.BENCH_ONLY)?.split(",") as System[] | undefined;
  const systems = only ?? SYSTEMS;
  const loadBefore = os.loadavg()[0]!;
  try {
    for (let pass = 0; pass < PASSES; pass++) {
      for (const name of systems) {
        console.error(`pass ${pass + 1}/${PASSES}: ${name} ...`);
        lastGroupSize = 0;
        const { wall, cpu } = await all[name]!();
        runs[name].push(wall);
        cpuRuns[name].push(cpu);
        if (name.startsWith("deploybot")) groupSizes[name] = [...(groupSizes[name] ?? []), lastGroupSize];
      }
    }
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    if (baselineSrc) removeBaseline(baselineSrc);
  }
  if (only) {
    for (const name of only) {
      console.log(`${name}: wall ${rate(median(runs[name]))}/s (${runs[name].map(rate).join(", ")}), by CPU ${rate(median(cpuRuns[name]))}/s (${cpuRuns[name].map(rate).join(", ")}), per COMMIT ${groupSizes[name]?.map((g) => g.toFixed(1)).join(", ") ?? "-"}`);
    }
    return;
  }
  const m = Object.fromEntries(SYSTEMS.map((name) => [name, median(runs[name])])) as Record<System, number>;
  const c = Object.fromEntries(SYSTEMS.map((name) => [name, median(cpuRuns[name])])) as Record<System, number>;
  const check = (ok: boolean) => (ok ? "met" : "**MISSED**");
  const date = new Date();
  const cpus = os.cpus();
  const group = (name: System) => {
    const sizes = groupSizes[name] ?? [];
    return sizes.every((g) => g === 0) ? "-" : sizes.map((g) => g.toFixed(1)).join(", ");
  };
  const deploybots: Array<[System, string]> = DEPLOYBOTS.map((d) => [d, LABELS[d]]);
  const baselines: Array<[System, string]> = BASELINE ? DEPLOYBOTS.map((d) => [`${d}@baseline`, `${LABELS[d]}, baseline ${BASELINE}`]) : [];
  const md = [
    `# Claim + finish cycles in process, ${date.toISOString()}`,
    "",
    `Machine: ${cpus[0]?.model ?? "unknown"} x ${cpus.length}, Node ${process.version}; 1-min load average before the run ${loadBefore.toFixed(2)}. Code: ${codeVersion()}${BASELINE ? `; baseline rows: ${BASELINE}` : ""}.`,
    `${JOBS.toLocaleString("en-US")} jobs per pass, ${PASSES} passes per system interleaved, median shown; each pass on a fresh SQLite file (WAL, synchronous=NORMAL).`,
    "bare and plainjob run one job at a time (plainjob's worker has no concurrency setting). deploybot, **production path** rows: the heartbeat route's handler for a current agent (finishInHeartbeat + AgentService.heartbeat with wait 0 + the update offer): one heartbeat per job finishes the held job and claims the next in one transaction (one COMMIT per job), consequences drained. The other deploybot rows: the older protocol's calls, claimNextJob + reportStatus(succeeded), two transitions with their outbox rows (two COMMITs per job), fencing, consequences drained; \"1 caller\" runs claim and finish back to back (as the rows above), \"64 agents at once\" keeps 64 of those loops in flight (one host each).",
    "",
    "Cycles per CPU second: the cycles over the CPU time (user + system) the process used meanwhile; on a shared machine the steadier figure.",
    "",
    "| system | cycles/s (median) | of bare | of plainjob | passes | cycles per CPU second | of bare | of plainjob | members per COMMIT in groups (a finish + claim pair is one) |",
    "|---|---:|---:|---:|---|---:|---:|---:|---|",
    `| bare better-sqlite3: claim \`UPDATE … RETURNING\` + finish \`UPDATE\`, prepared | ${rate(m.bare)} | | | ${runs.bare.map(rate).join(", ")} | ${rate(c.bare)} | | | - |`,
    `| reference, not a target: bare + an outbox row in a transaction with each statement | ${rate(m.bareOutbox)} | ${pct(m.bareOutbox / m.bare)} | ${pct(m.bareOutbox / m.plainjob)} | ${runs.bareOutbox.map(rate).join(", ")} | ${rate(c.bareOutbox)} | ${pct(c.bareOutbox / c.bare)} | ${pct(c.bareOutbox / c.plainjob)} | - |`,
    `| plainjob ${"0.0.14"}: its worker, no-op processor | ${rate(m.plainjob)} | | | ${runs.plainjob.map(rate).join(", ")} | ${rate(c.plainjob)} | | | - |`,
    ...[...deploybots, ...baselines].map(
      ([name, label]) =>
        `| ${label} | ${rate(m[name])} | ${pct(m[name] / m.bare)} | ${pct(m[name] / m.plainjob)} | ${runs[name].map(rate).join(", ")} | ${rate(c[name])} | ${pct(c[name] / c.bare)} | ${pct(c[name] / c.plainjob)} | ${group(name)} |`,
    ),
    "",
    "Targets (issue 9): the production path rows are the ones the targets are for; the older protocol's rows are shown beside them.",
    "",
    "| target | measured by wall | | by CPU | |",
    "|---|---:|---|---:|---|",
    ...deploybots.flatMap(([name, label]) => [
      `| ${label} >= plainjob | ${pct(m[name] / m.plainjob)} of plainjob | ${check(m[name] >= m.plainjob * TARGET.shareOfPlainjob)} | ${pct(c[name] / c.plainjob)} | ${check(c[name] >= c.plainjob * TARGET.shareOfPlainjob)} |`,
      `| ${label} >= 50% of bare | ${pct(m[name] / m.bare)} of bare | ${check(m[name] >= m.bare * TARGET.shareOfBare)} | ${pct(c[name] / c.bare)} | ${check(c[name] >= c.bare * TARGET.shareOfBare)} |`,
    ]),
    "",
  ].join("\n");
  console.log(md);
  const resultsDir = join(ROOT, "bench/results");
  mkdirSync(resultsDir, { recursive: true });
  const base = join(resultsDir, `${date.toISOString().slice(0, 10)}-jobs`);
  writeFileSync(`${base}.md`, md);
  writeFileSync(
    `${base}.json`,
    `${JSON.stringify({ date: date.toISOString(), jobs: JOBS, passes: PASSES, callers: CALLERS, baseline: BASELINE ?? null, runs, median: m, cpuRuns, cpuMedian: c, groupSizes, targets: TARGET }, null, 2)}\n`,
  );
  console.error(`wrote ${base}.md and ${base}.json`);
}

await main();
