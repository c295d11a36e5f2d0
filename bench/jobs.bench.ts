/**
 * `pnpm bench:jobs`: claim + finish cycles in one process, deploybot's job-state module next to
 * its peers, measured in the same run on the same kind of database file (WAL,
 * synchronous=NORMAL, in a temp dir):
 *   - bare: two prepared statements, `UPDATE ... WHERE id = (SELECT ...) RETURNING *` to claim
 *     and a guarded `UPDATE` to finish, on deploybot's own migrated schema — the ceiling;
 *   - plainjob (npm, a SQLite queue on better-sqlite3): its worker with a no-op processor;
 *   - deploybot: LeaseService.claimNextJob + reportStatus(succeeded) — the code heartbeats and
 *     status reports run: lease, fencing, a transaction per transition with its outbox row — and
 *     the drainer applying every row's consequences (timed). Four ways:
 *       - one caller, claim and finish back to back (the drainer every 100 cycles), group commit
 *         off (DEPLOYBOT_GROUP_COMMIT=0: each transition its own COMMIT) and on (the default);
 *       - 64 agents at once (one host each, 64 callers in flight, the drainer following the
 *         outbox as in the server), group commit off and on.
 * Passes are interleaved (bare, plainjob, deploybot..., bare, ...) so load from other processes
 * falls on all of them; the median of the passes is reported.
 * Writes bench/results/<date>-jobs.{md,json}.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pino from "pino";
import { better, defineQueue, defineWorker } from "plainjob";
import { createApp } from "../apps/controller/src/app";
import { testConfig } from "../apps/controller/src/config";
import { openDb } from "../apps/controller/src/db/client";
import { parseAppsConfig } from "../apps/controller/src/services/appsConfig";
import { APPS_YAML } from "../apps/controller/test/appsYaml";
import { codeVersion, ROOT } from "./child";

const JOBS = Number(process.env.BENCH_JOBS ?? 20_000);
const PASSES = Number(process.env.BENCH_PASSES ?? 3);
const DRAIN_EVERY = 100;
// BENCH_OLD_AGENT=1: the claiming agent lacks the volumes capability (an agent from before
// volumes), so its claims take the filtered probes and the waiting-job lookup
const CAPABILITIES = process.env.BENCH_OLD_AGENT === "1" ? {} : { volumes: true };
const TARGET = { shareOfBare: 0.5, shareOfPlainjob: 1 };

const CALLERS = 64;
const SYSTEMS = ["bare", "plainjob", "deploybot", "deploybotGroupOff", "deploybotConcurrentGroupOff", "deploybotConcurrent"] as const;
type System = (typeof SYSTEMS)[number];

const dirs: string[] = [];
const tempDb = () => {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-bench-jobs-"));
  dirs.push(dir);
  return join(dir, "bench.db");
};

/** The bare ceiling: deploybot's schema, two prepared statements per cycle, nothing else. */
function bare(): number {
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
  const started = performance.now();
  for (let i = 0; i < JOBS; i++) {
    const row = claim.get(`lse_${i}`, Date.now()) as { id: string; lease_id: string };
    finish.run(Date.now(), row.id, row.lease_id);
  }
  const seconds = (performance.now() - started) / 1000;
  const left = sqlite.prepare("SELECT count(*) FROM jobs WHERE status <> 'succeeded'").pluck().get();
  if (left !== 0) throw new Error(`bare: ${left} jobs not finished`);
  sqlite.close();
  return JOBS / seconds;
}

/** plainjob's own worker, a no-op processor, until every job is done. */
async function plainjob(): Promise<number> {
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
  const started = performance.now();
  void worker.start();
  await all;
  const seconds = (performance.now() - started) / 1000;
  await worker.stop();
  queue.close();
  sqlite.close();
  return JOBS / seconds;
}

/**
 * deploybot's services: the same calls a heartbeat's claim and a status report make, by `callers`
 * agents at once (each on its own host, its jobs queued round robin).
 */
async function deploybot(callers = 1, groupCommit = true): Promise<number> {
  const db = openDb(tempDb());
  const config = testConfig({ groupCommit });
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  const { services, deps } = createApp({ db, config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: config.secretKey! });
  const agents: Array<{ id: string; hostname: string; labels: string[]; capabilities: typeof CAPABILITIES }> = [];
  for (let k = 0; k < callers; k++) {
    const hostname = `bench-${k}`;
    const { agent } = await services.agents.register({ hostname, labels: [], version: "bench", capabilities: CAPABILITIES, heldJobIds: [] }, { grant: { kind: "join" } });
    agents.push({ id: agent.id, hostname, labels: [], capabilities: CAPABILITIES });
  }
  await db.write(async () => {
    for (let i = 0; i < JOBS; i++) {
      await services.jobs.create({
        spec: { kind: "build", app: "web", source: { type: "image", image: `img-${i}` } },
        target: { host: `bench-${i % callers}` },
        dedupe: false,
      });
    }
  });
  await services.drainer.drain();
  db.$client.exec("ANALYZE");
  const cycles = async (k: number) => {
    const who = agents[k]!;
    for (let i = k; i < JOBS; i += callers) {
      const job = await services.leases.claimNextJob(who);
      if (!job) throw new Error(`deploybot: no job to claim at ${i}`);
      await services.leases.reportStatus(who.id, job.id, { leaseId: job.leaseId, status: "succeeded" });
      // one caller never yields to the event loop, so the drainer (which follows the outbox on the
      // next turn) is called here; with many callers it runs on its own, as in the server
      if (callers === 1 && i % DRAIN_EVERY === DRAIN_EVERY - 1) await services.drainer.drain();
    }
  };
  const started = performance.now();
  await Promise.all(agents.map((_, k) => cycles(k)));
  await services.drainer.idle();
  const seconds = (performance.now() - started) / 1000;
  const left = db.$client.prepare("SELECT count(*) FROM jobs WHERE status <> 'succeeded'").pluck().get();
  const applied = services.drainer.appliedUpTo() === deps.outbox.latestId();
  if (left !== 0 || !applied) throw new Error(`deploybot: ${left} jobs not finished, outbox applied: ${applied}`);
  const { groups, members } = services.jobState.state.group.stats;
  lastGroupSize = groups === 0 ? 0 : members / groups;
  services.drainer.stop();
  db.$client.close();
  return JOBS / seconds;
}

/** transitions per COMMIT in the last deploybot pass's groups (0: no group formed) */
let lastGroupSize = 0;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rate = (v: number) => Math.round(v).toLocaleString("en-US");

async function main() {
  const runs = Object.fromEntries(SYSTEMS.map((name) => [name, [] as number[]])) as Record<System, number[]>;
  const groupSizes: Partial<Record<System, number[]>> = {};
  const all: Record<System, () => number | Promise<number>> = {
    bare,
    plainjob,
    deploybot: () => deploybot(1, true),
    deploybotGroupOff: () => deploybot(1, false),
    deploybotConcurrentGroupOff: () => deploybot(CALLERS, false),
    deploybotConcurrent: () => deploybot(CALLERS, true),
  };
  // BENCH_ONLY=deploybot: one system (profiling with --cpu-prof); nothing is written
  const only = process.env.BENCH_ONLY as System | undefined;
  const systems = only ? ({ [only]: all[only] } as typeof all) : all;
  const loadBefore = os.loadavg()[0]!;
  try {
    for (let pass = 0; pass < PASSES; pass++) {
      for (const name of Object.keys(systems) as System[]) {
        console.error(`pass ${pass + 1}/${PASSES}: ${name} ...`);
        lastGroupSize = 0;
        runs[name].push(await systems[name]());
        if (name.startsWith("deploybot")) groupSizes[name] = [...(groupSizes[name] ?? []), lastGroupSize];
      }
    }
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
  if (only) {
    console.log(JSON.stringify({ [only]: runs[only].map(Math.round) }));
    return;
  }
  const m = Object.fromEntries(SYSTEMS.map((name) => [name, median(runs[name])])) as Record<System, number>;
  const check = (ok: boolean) => (ok ? "met" : "**MISSED**");
  const date = new Date();
  const cpus = os.cpus();
  const group = (name: System) => {
    const sizes = groupSizes[name] ?? [];
    return sizes.every((g) => g === 0) ? "-" : sizes.map((g) => g.toFixed(1)).join(", ");
  };
  const deploybots: Array<[System, string]> = [
    ["deploybotGroupOff", "deploybot, 1 caller, group commit off"],
    ["deploybot", "deploybot, 1 caller, group commit on (default)"],
    ["deploybotConcurrentGroupOff", `deploybot, ${CALLERS} agents at once, group commit off`],
    ["deploybotConcurrent", `deploybot, ${CALLERS} agents at once, group commit on (default)`],
  ];
  const md = [
    `# Claim + finish cycles in process, ${date.toISOString()}`,
    "",
    `Machine: ${cpus[0]?.model ?? "unknown"} x ${cpus.length}, Node ${process.version}; 1-min load average before the run ${loadBefore.toFixed(2)}. Code: ${codeVersion()}.`,
    `${JOBS.toLocaleString("en-US")} jobs per pass, ${PASSES} passes per system interleaved, median shown; each pass on a fresh SQLite file (WAL, synchronous=NORMAL).`,
    "bare and plainjob run one job at a time (plainjob's worker has no concurrency setting). deploybot: claimNextJob + reportStatus(succeeded), two transitions with their outbox rows, fencing, consequences drained; \"1 caller\" runs claim and finish back to back (as the rows above), \"64 agents at once\" keeps 64 of those loops in flight (one host each).",
    "",
    "| system | cycles/s (median) | passes | transitions per COMMIT in groups |",
    "|---|---:|---|---|",
    `| bare better-sqlite3: claim \`UPDATE … RETURNING\` + finish \`UPDATE\`, prepared | ${rate(m.bare)} | ${runs.bare.map(rate).join(", ")} | - |`,
    `| plainjob ${"0.0.14"}: its worker, no-op processor | ${rate(m.plainjob)} | ${runs.plainjob.map(rate).join(", ")} | - |`,
    ...deploybots.map(([name, label]) => `| ${label} | ${rate(m[name])} | ${runs[name].map(rate).join(", ")} | ${group(name)} |`),
    "",
    "| target | measured | |",
    "|---|---:|---|",
    ...deploybots.flatMap(([name, label]) => [
      `| ${label} >= plainjob | ${((m[name] / m.plainjob) * 100).toFixed(0)}% of plainjob | ${check(m[name] >= m.plainjob * TARGET.shareOfPlainjob)} |`,
      `| ${label} >= 50% of bare | ${((m[name] / m.bare) * 100).toFixed(0)}% of bare | ${check(m[name] >= m.bare * TARGET.shareOfBare)} |`,
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
    `${JSON.stringify({ date: date.toISOString(), jobs: JOBS, passes: PASSES, callers: CALLERS, runs, median: m, groupSizes, targets: TARGET }, null, 2)}\n`,
  );
  console.error(`wrote ${base}.md and ${base}.json`);
}

await main();
