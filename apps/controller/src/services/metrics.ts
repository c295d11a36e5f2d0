import { finalStatuses, type JobChangedEvent } from "@deploybot/protocol";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { count, eq, min, sql } from "drizzle-orm";
import type { Db } from "../db/client";
import { reusable } from "../db/reusable";
import { agents, deployments, jobs, notificationDeliveries, webhookDeliveries } from "../db/schema";
import { databaseBytes } from "../db/size";
import type { OutboxEvent } from "./outbox";

type JobTimes = { createdAt: number; assignedAt: number | null; startedAt: number | null; finishedAt: number | null };


interface BackupStats {
  ok: number;
  failed: number;
  lastSuccessAt: number | null;
}

/**
 * prom-client's default gauges that end in `_total`, which `promtool check metrics` rejects for a
 * gauge; each has a per-type twin without the suffix (nodejs_active_handles{type}), so they are dropped.
 */
const TOTAL_SUFFIXED_GAUGES = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/** Label values are bounded: job kinds and statuses, route patterns, outcomes; never ids, shas or input. */
export class ControllerMetrics {
  readonly registry = new Registry();
  private readonly http: Histogram<"method" | "route" | "status">;
  private readonly claimLatency: Histogram<"kind">;
  private readonly jobDuration: Histogram<"kind" | "status">;
  private readonly jobTimes: (id: string) => Promise<JobTimes | undefined>;

  constructor(db: Db, clock: () => number, sse: () => number, backups: () => BackupStats = () => ({ ok: 0, failed: 0, lastSuccessAt: null })) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    for (const name of TOTAL_SUFFIXED_GAUGES) r.removeSingleMetric(name);
    const jobCounts = () => db.select({ kind: jobs.kind, status: jobs.status, n: count() }).from(jobs).groupBy(jobs.kind, jobs.status);
    // both use the partial index on pending jobs
    const queue = () => db.select({ n: count(), oldest: min(jobs.createdAt) }).from(jobs).where(eq(jobs.status, "pending"));
    const agentStates = (now: number) =>
      db
        .select({ online: agents.online, n: count(), age: sql<number | null>`max(${now} - ${agents.lastHeartbeatAt})`.mapWith(Number) })
        .from(agents)
        .where(eq(agents.revoked, false))
        .groupBy(agents.online);
    const deploymentCounts = () => db.select({ status: deployments.status, n: count() }).from(deployments).groupBy(deployments.status);
    const webhookCounts = () => db.select({ outcome: webhookDeliveries.outcome, n: count() }).from(webhookDeliveries).groupBy(webhookDeliveries.outcome);
    const notificationCounts = () =>
      db
        .select({ target: notificationDeliveries.target, status: notificationDeliveries.status, n: count() })
        .from(notificationDeliveries)
        .groupBy(notificationDeliveries.target, notificationDeliveries.status);
    // only events stored before job.changed carried the times read them (observeJobChange)
    const times = reusable(db, () =>
      db
        .select({ createdAt: jobs.createdAt, assignedAt: jobs.assignedAt, startedAt: jobs.startedAt, finishedAt: jobs.finishedAt })
        .from(jobs)
        .where(eq(jobs.id, sql.placeholder("id")))
        .prepare(),
    );
    this.jobTimes = async (id) => (await times().execute({ id }))[0];

    new Gauge({
      name: "deploybot_jobs",
      help: "Jobs in the database by kind and status",
      labelNames: ["kind", "status"],
      registers: [r],
      async collect() {
        const rows = await jobCounts();
        this.reset();
        for (const row of rows) this.set({ kind: row.kind, status: row.status }, row.n);
      },
    });
    const oldest = new Gauge({ name: "deploybot_queue_oldest_job_age_seconds", help: "Age of the oldest pending job (0 when none)", registers: [r] });
    new Gauge({
      name: "deploybot_queue_depth",
      help: "Pending jobs waiting for an agent",
      registers: [r],
      async collect() {
        const [row = { n: 0, oldest: null }] = await queue();
        this.set(row.n);
        oldest.set(row.oldest === null ? 0 : Math.max(0, (clock() - row.oldest) / 1000));
      },
    });
    const heartbeatAge = new Gauge({ name: "deploybot_agent_heartbeat_age_seconds_max", help: "Longest time since an online agent's last heartbeat", registers: [r] });
    new Gauge({
      name: "deploybot_agents",
      help: "Registered (not revoked) agents by state",
      labelNames: ["state"],
      registers: [r],
      async collect() {
        const rows = await agentStates(clock());
        this.reset();
        this.set({ state: "online" }, 0);
        this.set({ state: "offline" }, 0);
        heartbeatAge.set(0);
        for (const row of rows) {
          this.set({ state: row.online ? "online" : "offline" }, row.n);
          if (row.online && row.age !== null) heartbeatAge.set(Math.max(0, row.age / 1000));
        }
      },
    });
    new Counter({
      name: "deploybot_deployments_total",
      help: "Deployments by status (finished ones by result), from the database",
      labelNames: ["status"],
      registers: [r],
      async collect() {
        const rows = await deploymentCounts();
        this.reset();
        for (const row of rows) this.inc({ status: row.status }, row.n);
      },
    });
    new Counter({
      name: "deploybot_webhook_deliveries_total",
      help: "GitHub webhook deliveries by outcome (deployed, ignored, pong, rejected), from the database",
      labelNames: ["outcome"],
      registers: [r],
      async collect() {
        const rows = await webhookCounts();
        this.reset();
        for (const row of rows) this.inc({ outcome: row.outcome }, row.n);
      },
    });
    new Gauge({
      name: "deploybot_notification_deliveries",
      help: "Notification deliveries in the database by target and status (pending, delivered, failed, refused, dropped)",
      labelNames: ["target", "status"],
      registers: [r],
      async collect() {
        const rows = await notificationCounts();
        this.reset();
        for (const row of rows) this.set({ target: row.target, status: row.status }, row.n);
      },
    });
    new Gauge({
      name: "deploybot_sse_subscribers",
      help: "Open GET /v1/events streams",
      registers: [r],
      collect() {
        this.set(sse());
      },
    });
    new Gauge({
      name: "deploybot_database_size_bytes",
      help: "Database size (SQLite: page count times page size, without the WAL; PostgreSQL: pg_database_size)",
      registers: [r],
      async collect() {
        this.set(await databaseBytes(db));
      },
    });
    new Counter({
      name: "deploybot_backups_total",
      help: "Database backups taken by this process (periodic and downloaded), by result",
      labelNames: ["result"],
      registers: [r],
      collect() {
        const stats = backups();
        this.reset();
        this.inc({ result: "ok" }, stats.ok);
        this.inc({ result: "failed" }, stats.failed);
      },
    });
    new Gauge({
      name: "deploybot_backup_last_success_timestamp_seconds",
      help: "When the last checked backup was written (Unix seconds; 0: none yet): by this process, or the newest in DEPLOYBOT_BACKUP_DIR at start",
      registers: [r],
      collect() {
        const at = backups().lastSuccessAt;
        this.set(at === null ? 0 : at / 1000);
      },
    });
    this.http = new Histogram({
      name: "deploybot_http_request_duration_seconds",
      help: "HTTP requests by method, route pattern and status",
      labelNames: ["method", "route", "status"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
      registers: [r],
    });
    this.claimLatency = new Histogram({
      name: "deploybot_job_claim_latency_seconds",
      help: "Time from a job being queued to an agent claiming it",
      labelNames: ["kind"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
      registers: [r],
    });
    this.jobDuration = new Histogram({
      name: "deploybot_job_duration_seconds",
      help: "Time from a job being claimed to its end, by kind and final status",
      labelNames: ["kind", "status"],
      buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers: [r],
    });
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    // methods outside the usual set would be unbounded input
    const m = /^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$/.test(method) ? method : "OTHER";
    this.http.observe({ method: m, route, status: String(status) }, seconds);
  }

  /**
   * A job's claim and end, from the outbox (a signal consequence: off every request path). The
   * event carries the row's times (jobEvent()), so this reads nothing and ends at once; only an
   * event stored before it carried them reads the job (a promise then). That read, a `get` by
   * job id twice per claim+finish cycle, was 5.6% of an in-process cycle's profile
   * (pnpm bench:jobs:profile, one caller); this method now takes 1.0% of it (7.0% before).
   * pnpm bench:jobs against the code before, same run, 5 passes, by CPU: 64 agents 1.12x, one
   * caller 0.96x (per-pass spread ±15%: the one-caller change is below what it resolves).
   */
  observeJobChange(event: OutboxEvent): void | Promise<void> {
    const job = event.data as JobChangedEvent;
    if (job.transition !== "claimed" && !finalStatuses.includes(job.status)) return;
    if (job.createdAtMs !== undefined) {
      return this.observeTimes(job, { createdAt: job.createdAtMs, assignedAt: job.assignedAtMs ?? null, startedAt: job.startedAtMs ?? null, finishedAt: job.finishedAtMs ?? null });
    }
    return this.jobTimes(job.id).then((t) => t && this.observeTimes(job, t));
  }

  private observeTimes(job: JobChangedEvent, t: JobTimes): void {
    if (job.transition === "claimed" && t.assignedAt !== null) this.claimLatency.observe({ kind: job.kind }, Math.max(0, t.assignedAt - t.createdAt) / 1000);
    else if (job.transition !== "claimed" && t.finishedAt !== null) {
      const from = t.assignedAt ?? t.startedAt;
      if (from !== null) this.jobDuration.observe({ kind: job.kind, status: job.status }, Math.max(0, t.finishedAt - from) / 1000);
    }
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
