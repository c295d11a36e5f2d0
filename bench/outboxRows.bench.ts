/**
 * What the outbox costs at the SQL level, one agent's claim + finish pair in one transaction on
 * the controller's migrated schema (WAL, synchronous=NORMAL, a fresh file per pass):
 *   - plain: finish `UPDATE … RETURNING`, probe, take `UPDATE … RETURNING`, COMMIT;
 *   - small: the same with a `job.changed` outbox row per transition whose data is `{}`;
 *   - sized: data of that length, made once (the bytes without the JSON.stringify);
 *   - event: the same with the data a real `job.changed` row carries (jobEvent's JSON, ~380 bytes).
 * CPU µs per cycle, medians of BENCH_PASSES (5) interleaved passes of BENCH_JOBS (20,000).
 * `pnpm -s exec tsx bench/outboxRows.bench.ts`; figures in bench/results/2026-11-27-outbox-jobs.md.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { openDb } from "../apps/controller/src/db/client";

const JOBS = Number(process.env.BENCH_JOBS ?? 20_000);
const PASSES = Number(process.env.BENCH_PASSES ?? 5);
const VARIANTS = ["plain", "small", "sized", "event"] as const;
type Variant = (typeof VARIANTS)[number];

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** A `job.changed` event as jobEvent() builds it for a build job of one host. */
const eventOf = (id: unknown, transition: "claimed" | "finished", now: number) => ({
  id,
  kind: "build",
  app: "web",
  status: transition === "claimed" ? "assigned" : "succeeded",
  transition,
  host: "bench-0",
  labels: null,
  agentId: "agt_0123456789abcdefghij",
  deploymentId: null,
  attempts: 1,
  cancelRequested: false,
  error: null,
  expectedLogLines: transition === "claimed" ? null : 0,
  createdAtMs: now,
  assignedAtMs: now,
  startedAtMs: transition === "claimed" ? null : now,
  finishedAtMs: transition === "claimed" ? null : now,
});

function pass(variant: Variant): number {
  const dir = mkdtempSync(join(os.tmpdir(), "deploybot-outbox-"));
  const db = openDb(join(dir, "bench.db"));
  const s = db.$client;
  s.prepare("INSERT INTO agents (id, hostname, version, labels, created_at) VALUES ('agt_bench', 'bench-0', 'bench', '[]', 0)").run();
  const insertJob = s.prepare(
    `INSERT INTO jobs (id, kind, app, target_host, spec, status, max_attempts, timeout_seconds, queue_deadline, created_at)
     VALUES (?, 'build', 'web', 'bench-0', ?, 'pending', 3, 600, 9999999999999, ?)`,
  );
  s.transaction(() => {
    for (let i = 0; i < JOBS; i++) insertJob.run(`job_${String(i).padStart(8, "0")}`, JSON.stringify({ kind: "build", app: "web", source: { type: "image", image: `img-${i}` } }), Date.now());
  })();
  const probe = s.prepare("SELECT id FROM jobs WHERE status = 'pending' AND target_host = ? ORDER BY id LIMIT 1").pluck();
  const take = s
    .prepare(
      `UPDATE jobs SET status = 'assigned', agent_id = @agentId, lease_id = @leaseId, lease_expires_at = @until, assigned_at = @now, attempts = attempts + 1
       WHERE id = @id AND status = 'pending' RETURNING *`,
    )
    .raw(true);
  const finish = s
    .prepare(`UPDATE jobs SET status = 'succeeded', finished_at = @now, lease_expires_at = NULL WHERE id = @id AND lease_id = @leaseId AND status IN ('assigned', 'running') RETURNING *`)
    .raw(true);
  const append = s.prepare("INSERT INTO outbox (type, app, subject, data, created_at) VALUES ('job.changed', 'web', ?, ?, ?)");
  const sized = JSON.stringify(eventOf("job_00000000", "finished", Date.now()));
  const data = (id: unknown, transition: "claimed" | "finished", now: number) =>
    variant === "small" ? "{}" : variant === "sized" ? sized : JSON.stringify(eventOf(id, transition, now));
  let leases = 0;
  const pair = s.transaction((held: { id: string; leaseId: string } | null) => {
    const now = Date.now();
    if (held) {
      const row = finish.get({ id: held.id, leaseId: held.leaseId, now }) as unknown[] | undefined;
      if (!row) throw new Error(`finish of ${held.id} refused`);
      if (variant !== "plain") append.run(held.id, data(row[0], "finished", now), now);
    }
    const id = probe.get("bench-0") as string | undefined;
    if (id === undefined) return null;
    const leaseId = `lse_${++leases}`;
    const row = take.get({ id, agentId: "agt_bench", leaseId, until: now + 60_000, now }) as unknown[] | undefined;
    if (!row) throw new Error(`take of ${id} refused`);
    if (variant !== "plain") append.run(id, data(row[0], "claimed", now), now);
    return { id, leaseId };
  });
  let held = pair(null);
  const started = cpuUs();
  for (let i = 1; i < JOBS; i++) held = pair(held);
  const perCycle = (cpuUs() - started) / (JOBS - 1);
  pair(held);
  const left = s.prepare("SELECT count(*) FROM jobs WHERE status <> 'succeeded'").pluck().get();
  s.close();
  rmSync(dir, { recursive: true, force: true });
  if (left !== 0) throw new Error(`${variant}: ${left} jobs not finished`);
  return perCycle;
}

const results = Object.fromEntries(VARIANTS.map((v) => [v, [] as number[]])) as Record<Variant, number[]>;
for (let p = 0; p < PASSES; p++) for (const v of VARIANTS) results[v].push(pass(v));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const v of VARIANTS) {
  console.log(`${v}: ${median(results[v]).toFixed(1)} CPU µs per cycle (${results[v].map((x) => x.toFixed(1)).join(", ")})`);
}
