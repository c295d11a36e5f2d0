/**
 * `pnpm bench:backup`: how long a database backup holds up the controller's writes. A migrated
 * database with 100,000 job log lines; one writer appends log lines (one short transaction each,
 * like an agent's upload) on the main thread, as fast as the event loop lets it, while:
 *   - nothing else runs (the baseline),
 *   - DatabaseBackups.backupTo runs (VACUUM INTO on its own read-only connection, in a worker),
 *   - better-sqlite3's online backup API runs on the writer's own connection (the alternative),
 *   - VACUUM INTO runs on the writer's connection, on the event loop (what a naive version does).
 * Reported per case: the longest gap between two writes, p99 gap, writes done, backup time.
 * Writes bench/results/<date>-backup.md.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import pino from "pino";
import { openDb } from "../apps/controller/src/db/client";
import { DatabaseBackups } from "../apps/controller/src/services/backups";
import { codeVersion, ROOT } from "./child";

const LOG_LINES = 100_000;
const BASELINE_MS = 3_000;

const dir = mkdtempSync(join(os.tmpdir(), "deploybot-bench-backup-"));
const dbPath = join(dir, "deploybot.db");
const db = openDb(dbPath);
const sqlite = db.$client;
const now = Date.now();
sqlite
  .prepare(
    "INSERT INTO jobs (id, kind, app, target_host, spec, status, max_attempts, timeout_seconds, queue_deadline, created_at) VALUES (?, 'run', 'web', 'web-1', '{}', 'running', 3, 600, ?, ?)",
  )
  .run("job_bench_backup", now + 86_400_000, now);
const insertLog = sqlite.prepare("INSERT INTO job_logs (job_id, seq, ts, stream, line) VALUES ('job_bench_backup', ?, ?, 'stdout', ?)");
const line = (seq: number) => `${new Date(now + seq).toISOString()} step ${seq}: ${"x".repeat(60)}`;
sqlite.transaction(() => {
  for (let seq = 0; seq < LOG_LINES; seq++) insertLog.run(seq, new Date(now + seq).toISOString(), line(seq));
})();
sqlite.pragma("wal_checkpoint(TRUNCATE)");
let seq = LOG_LINES;

interface Case {
  name: string;
  maxGapMs: number;
  p99GapMs: number;
  writes: number;
  backupMs: number | null;
}

/** Appends one log line per turn of the event loop until `until` settles; the gaps between appends. */
async function writeUntil(until: Promise<unknown>, since: number): Promise<{ gaps: number[]; writes: number }> {
  let done = false;
  void until.finally(() => {
    done = true;
  });
  const gaps: number[] = [];
  // a backup that runs synchronously when started has held the writer since `since`
  let last = since;
  let writes = 0;
  while (!done) {
    const appendOne = sqlite.transaction(() => insertLog.run(seq, new Date().toISOString(), line(seq)));
    appendOne();
    seq++;
    writes++;
    await new Promise((r) => setImmediate(r));
    const t = performance.now();
    gaps.push(t - last);
    last = t;
  }
  return { gaps, writes };
}

async function measure(name: string, backup: (() => Promise<unknown>) | null): Promise<Case> {
  const started = performance.now();
  const work = backup ? backup() : new Promise((r) => setTimeout(r, BASELINE_MS));
  const { gaps, writes } = await writeUntil(work, started);
  await work;
  const backupMs = backup ? performance.now() - started : null;
  const sorted = gaps.sort((a, b) => a - b);
  return { name, maxGapMs: sorted.at(-1) ?? 0, p99GapMs: sorted[Math.floor((sorted.length - 1) * 0.99)] ?? 0, writes, backupMs };
}

const backups = new DatabaseBackups(dbPath, pino({ level: "silent" }));
const out = (name: string) => join(dir, `${name}-${seq}.db`);
const cases: Case[] = [];
for (let round = 0; round < 2; round++) {
  cases.push(await measure("no backup (baseline)", null));
  cases.push(await measure("DatabaseBackups: VACUUM INTO in a worker, own connection", () => backups.backupTo(out("worker"))));
  cases.push(await measure("online backup API on the writer's connection", () => sqlite.backup(out("api"))));
  cases.push(
    await measure("VACUUM INTO on the writer's connection (event loop)", async () => {
      sqlite.prepare("VACUUM INTO ?").run(out("inline"));
    }),
  );
}
db.$client.close();
const sizeMb = (LOG_LINES * 100) / 1024 / 1024;
rmSync(dir, { recursive: true, force: true });

const fmt = (n: number | null) => (n === null ? "—" : n.toFixed(1));
const lines = [
  `# Database backup: what it holds up (${LOG_LINES.toLocaleString("en")} job log lines, ~${sizeMb.toFixed(0)} MB of log text)`,
  "",
  `${new Date().toISOString()} · code ${codeVersion()} · ${os.cpus().length} cores · load average ${os.loadavg()[0]!.toFixed(1)}`,
  "",
  "| case | longest gap between writes (ms) | p99 gap (ms) | writes done | backup took (ms) |",
  "|---|---|---|---|---|",
  ...cases.map((c) => `| ${c.name} | ${fmt(c.maxGapMs)} | ${fmt(c.p99GapMs)} | ${c.writes} | ${fmt(c.backupMs)} |`),
  "",
];
console.log(lines.join("\n"));
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(join(ROOT, "bench/results", `${new Date().toISOString().slice(0, 10)}-backup.md`), lines.join("\n"));
