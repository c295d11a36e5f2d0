/**
 * `pnpm bench:logs`: job log ingestion in one process — `JobLogService.append` with 100-line
 * batches, as an agent sends them, on a SQLite file (WAL) — this checkout's service against
 * earlier versions of the same file, in the same run:
 *   - "raw statements": the service as it was before it moved to drizzle (6473859), better-sqlite3
 *     statements prepared once — the baseline;
 *   - "drizzle prepared queries": the version that ran on both engines through one code path
 *     (LOGS_DRIZZLE_REF, default 833c3bf, where it moved);
 *   - this checkout.
 * Each version is that commit's services/jobLogs.ts, written beside the current one for the run so
 * it builds on the same lease, redaction and database code; each pass appends to a fresh job.
 * Passes are interleaved and the order alternates; medians are reported, by wall clock and by CPU.
 * Writes bench/results/<date>-logs.md.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import type { AppendLogsRequest } from "../packages/protocol/src";
import pino from "pino";
import { createApp } from "../apps/controller/src/app";
import { testConfig } from "../apps/controller/src/config";
import { openDb } from "../apps/controller/src/db/client";
import { parseAppsConfig } from "../apps/controller/src/services/appsConfig";
import type { JobLogService } from "../apps/controller/src/services/jobLogs";
import { APPS_YAML } from "../apps/controller/test/appsYaml";
import { codeVersion, ROOT } from "./child";
import { stopwatch, tempDir } from "./jobsDeploybot";

const LINES = Number(process.env.BENCH_LINES ?? 30_000);
const BATCH = 100;
const PASSES = Number(process.env.BENCH_PASSES ?? 5);
const RAW_REF = "6473859";
const DRIZZLE_REF = process.env.LOGS_DRIZZLE_REF ?? "833c3bf";
const SERVICES = join(ROOT, "apps/controller/src/services");

type Variant = { label: string; make: () => Promise<typeof JobLogService> };

/** A commit's services/jobLogs.ts beside the current one (removed after the run). */
const written: string[] = [];
function versionOf(ref: string): () => Promise<typeof JobLogService> {
  return async () => {
    const file = join(SERVICES, `.bench-jobLogs-${ref}-${process.pid}.ts`);
    if (!written.includes(file)) {
      writeFileSync(file, execFileSync("git", ["show", `${ref}:apps/controller/src/services/jobLogs.ts`], { cwd: ROOT }));
      written.push(file);
    }
    return ((await import(file)) as { JobLogService: typeof JobLogService }).JobLogService;
  };
}

const variants: Variant[] = [
  { label: `raw statements (${RAW_REF}, the baseline)`, make: versionOf(RAW_REF) },
  { label: `drizzle prepared queries (${DRIZZLE_REF})`, make: versionOf(DRIZZLE_REF) },
  { label: "this checkout", make: async () => (await import("../apps/controller/src/services/jobLogs")).JobLogService },
];

const dir = tempDir();
const db = openDb(join(dir, "bench.db"));
// a limit no pass reaches: every line is stored
const config = testConfig({ logMaxBytes: 1024 * 1024 * 1024 });
const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
const { services, deps } = createApp({ db, config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: config.secretKey! });
const { agent } = await services.agents.register({ hostname: "bench-logs", labels: [], version: "bench", capabilities: { volumes: true }, heldJobIds: [] }, { grant: { kind: "join" } });
const claimer = { id: agent.id, hostname: "bench-logs", labels: [], capabilities: { volumes: true } };

/** A fresh job held by the bench's agent, and `LINES` lines appended to it by `service`. */
async function pass(service: JobLogService): Promise<{ wall: number; cpu: number }> {
  await services.jobs.create({ spec: { kind: "build", app: "web", source: { type: "image", image: "img" } }, target: { host: "bench-logs" }, dedupe: false });
  const job = await services.leases.claimNextJob(claimer);
  if (!job) throw new Error("no job to claim");
  const batches: AppendLogsRequest[] = [];
  for (let offset = 0; offset < LINES; offset += BATCH) {
    const entries = Array.from({ length: BATCH }, (_, i) => ({
      ts: new Date(1_764_000_000_000 + offset + i).toISOString(),
      stream: "stdout" as const,
      line: `#${offset + i} [builder] step ${i % 12}/12 : RUN npm ci --omit=dev && npm run build -- --mode production`,
    }));
    batches.push({ leaseId: job.leaseId, offset, entries });
  }
  const stop = stopwatch(LINES);
  for (const body of batches) await service.append(agent.id, job.id, body);
  const rate = stop();
  const stored = db.$client.prepare("SELECT count(*) FROM job_logs WHERE job_id = ?").pluck().get(job.id);
  if (stored !== LINES) throw new Error(`stored ${stored} of ${LINES} lines`);
  await services.leases.reportStatus(agent.id, job.id, { leaseId: job.leaseId, status: "succeeded" });
  return rate;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (v: number) => Math.round(v).toLocaleString("en-US");
const loadBefore = os.loadavg()[0]!;
const wall = variants.map(() => [] as number[]);
const cpu = variants.map(() => [] as number[]);
try {
  const classes = await Promise.all(variants.map((v) => v.make()));
  const instances = classes.map((C) => new C(deps, services.leases, services.redaction));
  await pass(instances[0]!); // warm-up, not counted
  for (let p = 0; p < PASSES; p++) {
    const order = p % 2 === 0 ? variants.map((_, i) => i) : variants.map((_, i) => i).reverse();
    for (const i of order) {
      console.error(`pass ${p + 1}/${PASSES}: ${variants[i]!.label} ...`);
      const r = await pass(instances[i]!);
      wall[i]!.push(r.wall);
      cpu[i]!.push(r.cpu);
    }
  }
} finally {
  services.drainer.stop();
  db.$client.close();
  rmSync(dir, { recursive: true, force: true });
  for (const file of written) rmSync(file, { force: true });
}
const base = { wall: median(wall[0]!), cpu: median(cpu[0]!) };
const date = new Date();
const md = [
  `# Job log ingestion in process, ${date.toISOString()}`,
  "",
  `${os.cpus()[0]?.model ?? "unknown"} x ${os.cpus().length}, Node ${process.version}; 1-min load average before the run ${loadBefore.toFixed(2)}. Code: ${codeVersion()}.`,
  `JobLogService.append, ${BATCH}-line batches, ${LINES.toLocaleString("en-US")} lines per pass on a fresh job, ${PASSES} passes per version interleaved (order alternating), median shown; one SQLite file (WAL, synchronous=NORMAL).`,
  "",
  "| version | lines/s | of raw statements | passes | lines per CPU second | of raw statements |",
  "|---|---:|---:|---|---:|---:|",
  ...variants.map((v, i) => {
    const w = median(wall[i]!);
    const c = median(cpu[i]!);
    return `| ${v.label} | ${fmt(w)} | ${(w / base.wall).toFixed(2)}x | ${wall[i]!.map(fmt).join(", ")} | ${fmt(c)} | ${(c / base.cpu).toFixed(2)}x |`;
  }),
  "",
].join("\n");
console.log(md);
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(join(ROOT, "bench/results", `${date.toISOString().slice(0, 10)}-logs.md`), md);
