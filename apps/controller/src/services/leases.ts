import { randomBytes } from "node:crypto";
import { type ClaimedJob, isFinal, type JobStatus } from "@deploybot/protocol";
import { and, eq, inArray, isNotNull, lt, sql } from "drizzle-orm";
import { jobs } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import type { Deps } from "./deps";
import { changeOf } from "./events";
import type { JobRow } from "./jobs";

const HELD: JobStatus[] = ["assigned", "running"];

/**
 * The lease is the lock: a job belongs to one agent while its lease lives, every write for the
 * job names the lease id (compare-and-swap), and an expired lease hands the job back.
 */
export class LeaseService {
  private readonly probeByHost;
  private readonly probeByLabels;
  private readonly take;
  private readonly heldByAgent;
  private readonly jobById;
  private readonly startJob;
  private readonly endJob;
  private readonly renewLease;
  /** label sets (canonical JSON) that pending jobs may carry; probed one by one at claim time */
  private readonly labelSets = new Set<string>();

  constructor(
    private readonly deps: Deps,
    private readonly secretsFor: (app: string, names: readonly string[], host: string) => Record<string, string> = () => ({}),
  ) {
    const sqlite = deps.db.$client;
    // A claim is a few index probes (by host, then by each label set this agent satisfies) and
    // one compare-and-swap UPDATE (WHERE id = ? AND status = 'pending'): two agents can never
    // hold the same job. Probing label sets by exact key keeps a claim O(label sets), not O(pending jobs).
    this.probeByHost = sqlite.prepare("SELECT id FROM jobs WHERE status = 'pending' AND target_host = ? ORDER BY id LIMIT 1").pluck();
    this.probeByLabels = sqlite
      .prepare("SELECT id FROM jobs WHERE status = 'pending' AND target_labels = ? ORDER BY id LIMIT 1")
      .pluck();
    this.take = sqlite.prepare(`
      UPDATE jobs SET status = 'assigned', agent_id = @agentId, lease_id = @leaseId,
        lease_expires_at = @leaseExpiresAt, assigned_at = @now, attempts = attempts + 1
      WHERE id = @id AND status = 'pending'
      RETURNING *`);
    this.heldByAgent = deps.db
      .select()
      .from(jobs)
      .where(and(eq(jobs.agentId, sql.placeholder("agentId")), inArray(jobs.status, HELD)))
      .prepare();
    this.jobById = deps.db
      .select()
      .from(jobs)
      .where(eq(jobs.id, sql.placeholder("id")))
      .prepare();
    const open = and(
      eq(jobs.id, sql.placeholder("id")),
      eq(jobs.leaseId, sql.placeholder("leaseId")),
      inArray(jobs.status, HELD),
    );
    this.startJob = deps.db
      .update(jobs)
      .set({ status: "running", startedAt: sql`${sql.placeholder("now")}`, leaseExpiresAt: sql`${sql.placeholder("until")}` })
      .where(open)
      .returning()
      .prepare();
    // result is a JSON column: the placeholder takes its text (or NULL) as stored
    this.endJob = deps.db
      .update(jobs)
      .set({
        status: sql`${sql.placeholder("status")}`,
        finishedAt: sql`${sql.placeholder("now")}`,
        leaseExpiresAt: null,
        result: sql`${sql.placeholder("result")}`,
        error: sql`${sql.placeholder("error")}`,
        expectedLogLines: sql`${sql.placeholder("expectedLogLines")}`,
        startedAt: sql`coalesce(${jobs.startedAt}, ${sql.placeholder("now")})`,
      })
      .where(open)
      .returning()
      .prepare();
    this.renewLease = deps.db
      .update(jobs)
      .set({ leaseExpiresAt: sql`${sql.placeholder("until")}` })
      .where(and(eq(jobs.id, sql.placeholder("id")), inArray(jobs.status, HELD)))
      .prepare();
    for (const key of sqlite
      .prepare("SELECT DISTINCT target_labels FROM jobs WHERE status = 'pending' AND target_labels IS NOT NULL")
      .pluck()
      .all() as string[]) {
      this.labelSets.add(key);
    }
  }

  get leaseMs(): number {
    return this.deps.config.heartbeatIntervalSeconds * 3 * 1000;
  }

  /** The canonical form of a label set, as stored in jobs.target_labels. */
  static canonicalLabels(labels: readonly string[]): string[] {
    return [...new Set(labels)].sort();
  }

  /** A job was queued for this label set (called by the job service). */
  noteLabelSet(labels: readonly string[]): void {
    this.labelSets.add(JSON.stringify(LeaseService.canonicalLabels(labels)));
  }

  private oldestMatching(agent: { hostname: string; labels: string[] }): string | undefined {
    let best = this.probeByHost.get(agent.hostname) as string | undefined;
    for (const key of this.labelSets) {
      const wanted = JSON.parse(key) as string[];
      if (!wanted.every((l) => agent.labels.includes(l))) continue;
      const id = this.probeByLabels.get(key) as string | undefined;
      // Nothing pending for this set any more: forget it until a job brings it back.
      if (id === undefined) this.labelSets.delete(key);
      else if (best === undefined || id < best) best = id;
    }
    return best;
  }

  /** Takes the oldest pending job this agent may run, or returns null. */
  claimNextJob(agent: { id: string; hostname: string; labels: string[] }): ClaimedJob | null {
    const now = this.deps.clock();
    // Probe, then take with a compare-and-swap on status: no transaction is needed, and if the
    // row was taken in between (by another writer), the next candidate is tried.
    let raw: Record<string, unknown> | undefined;
    for (let tries = 0; tries < 3 && !raw; tries++) {
      const id = this.oldestMatching(agent);
      if (id === undefined) return null;
      raw = this.take.get({
        id,
        agentId: agent.id,
        leaseId: `lse_${randomBytes(12).toString("base64url")}`,
        leaseExpiresAt: now + this.leaseMs,
        now,
      }) as Record<string, unknown> | undefined;
    }
    if (!raw) return null;
    const spec = JSON.parse(raw.spec as string);
    this.deps.logger.info({ jobId: raw.id, agentId: agent.id, attempt: raw.attempts }, "job assigned");
    return {
      id: raw.id as string,
      kind: raw.kind as ClaimedJob["kind"],
      app: raw.app as string,
      leaseId: raw.lease_id as string,
      spec: this.withCredentials(spec, agent.hostname),
      timeoutSeconds: raw.timeout_seconds as number,
      attempt: raw.attempts as number,
      logOffset: raw.log_offset as number,
    };
  }

  /** Credentials exist only in the copy handed to the claiming agent, never in the stored spec. */
  private withCredentials(spec: ClaimedJob["spec"], host: string): ClaimedJob["spec"] {
    let out = spec;
    const registry = this.deps.config.registry;
    if (registry) {
      const host = registry.url.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
      const images = [spec.image, spec.source?.type === "image" ? spec.source.image : undefined];
      if (images.some((i) => i?.startsWith(`${host}/`))) out = { ...out, registry };
    }
    const names = spec.run?.secrets ?? [];
    if (names.length > 0) {
      const values = this.secretsFor(spec.app, names, host);
      const missing = names.filter((n) => !(n in values));
      if (missing.length > 0) this.deps.logger.warn({ app: spec.app, host, missing }, "secrets withheld: not set, or not a host of the app");
      out = { ...out, secretEnv: values };
    }
    return out;
  }

  /**
   * Makes the controller's view agree with what the agent says it holds: a job it no longer
   * holds is handed back (never started) or failed (it was running). Returns the ids the
   * agent must drop: cancel requests, jobs that ended here, and jobs that are not its own.
   */
  reconcile(agentId: string, heldJobIds: readonly string[]): string[] {
    const { db, clock, logger } = this.deps;
    const now = clock();
    const mine = this.heldByAgent.all({ agentId });
    for (const job of mine) {
      if (heldJobIds.includes(job.id)) continue;
      if (job.status === "assigned") this.requeue(job, "the agent did not take the job", now);
      else {
        db.update(jobs)
          .set({ status: "failed", error: "the agent no longer holds the job (it restarted or lost it)", finishedAt: now, leaseExpiresAt: null })
          .where(and(eq(jobs.id, job.id), eq(jobs.leaseId, job.leaseId!)))
          .run();
        logger.warn({ jobId: job.id, agentId }, "job failed: agent no longer holds it");
        this.changed(job.id);
      }
    }
    if (heldJobIds.length === 0) return [];
    db.update(jobs)
      .set({ leaseExpiresAt: now + this.leaseMs })
      .where(and(eq(jobs.agentId, agentId), inArray(jobs.id, [...heldJobIds]), inArray(jobs.status, HELD)))
      .run();
    const known = db
      .select({ id: jobs.id, status: jobs.status, agentId: jobs.agentId, cancelRequested: jobs.cancelRequested })
      .from(jobs)
      .where(inArray(jobs.id, [...heldJobIds]))
      .all();
    return heldJobIds.filter((id) => {
      const j = known.find((k) => k.id === id);
      return !j || j.agentId !== agentId || j.cancelRequested || isFinal(j.status as JobStatus);
    });
  }

  hasActiveJob(agentId: string): boolean {
    return this.heldByAgent.all({ agentId }).length > 0;
  }

  private requeue(job: JobRow, reason: string, now: number) {
    const exhausted = job.attempts >= job.maxAttempts;
    const cancelled = job.cancelRequested;
    this.deps.db
      .update(jobs)
      .set(
        cancelled
          ? { status: "cancelled", finishedAt: now, leaseExpiresAt: null, error: "cancelled before it started" }
          : exhausted
            ? { status: "failed", finishedAt: now, leaseExpiresAt: null, error: `${reason}; gave up after ${job.attempts} attempts` }
            : { status: "pending", agentId: null, leaseId: null, leaseExpiresAt: null, assignedAt: null },
      )
      .where(and(eq(jobs.id, job.id), eq(jobs.status, "assigned"), eq(jobs.leaseId, job.leaseId!)))
      .run();
    this.deps.logger.warn({ jobId: job.id, agentId: job.agentId, reason, attempts: job.attempts }, "job handed back");
    this.changed(job.id);
    if (!cancelled && !exhausted) this.deps.notifier.jobQueued({ host: job.targetHost, labels: job.targetLabels });
  }

  /**
   * The reaper: expired leases, execution timeouts and queue timeouts. Runs every second in
   * the server and directly in tests with a fake clock.
   */
  sweep(): void {
    const { db, clock, logger } = this.deps;
    const now = clock();
    const expired = db
      .select()
      .from(jobs)
      .where(and(inArray(jobs.status, HELD), isNotNull(jobs.leaseExpiresAt), lt(jobs.leaseExpiresAt, now)))
      .all();
    for (const job of expired) {
      if (job.status === "assigned") this.requeue(job, "lease expired before the job started", now);
      else {
        db.update(jobs)
          .set({ status: "lost", finishedAt: now, leaseExpiresAt: null, error: "the agent stopped renewing its lease" })
          .where(and(eq(jobs.id, job.id), eq(jobs.status, "running"), eq(jobs.leaseId, job.leaseId!)))
          .run();
        logger.warn({ jobId: job.id, agentId: job.agentId }, "job lost: lease expired");
        this.changed(job.id);
      }
    }
    const timedOut = db
      .update(jobs)
      .set({ status: "timed_out", finishedAt: now, leaseExpiresAt: null, error: sql`'exceeded its timeout of ' || ${jobs.timeoutSeconds} || ' s'` })
      .where(and(eq(jobs.status, "running"), sql`${jobs.startedAt} + ${jobs.timeoutSeconds} * 1000 < ${now}`))
      .returning({ id: jobs.id, agentId: jobs.agentId })
      .all();
    for (const j of timedOut) {
      logger.warn({ jobId: j.id }, "job timed out");
      this.changed(j.id);
      if (j.agentId) this.deps.notifier.agentChanged(j.agentId);
    }
    const stale = db
      .update(jobs)
      .set({ status: "timed_out", finishedAt: now, error: "no agent claimed the job in time" })
      .where(and(sql`status = 'pending'`, lt(jobs.queueDeadline, now))) // literal, so the partial index applies
      .returning({ id: jobs.id })
      .all();
    for (const j of stale) {
      logger.warn({ jobId: j.id }, "job timed out in queue");
      this.changed(j.id);
    }
  }

  /**
   * After a controller restart, every lease gets a grace period so agents can check in. At least
   * a minute: agents back off for up to 30 s while the controller is away.
   */
  rearmLeases(): number {
    const until = this.deps.clock() + Math.max(this.leaseMs, 60_000);
    return this.deps.db
      .update(jobs)
      .set({ leaseExpiresAt: until })
      .where(and(inArray(jobs.status, HELD), lt(jobs.leaseExpiresAt, until)))
      .run().changes;
  }

  /**
   * Fencing for an agent's call about a job: the job must be this agent's (403 otherwise)
   * under this lease (409 otherwise, changing nothing).
   */
  fence(jobId: string, agentId: string, leaseId: string): JobRow {
    const job = this.jobById.get({ id: jobId });
    if (!job) throw notFound("job", jobId);
    if (job.agentId !== agentId) throw new ApiError(403, "forbidden", `job ${jobId} is not held by this agent`);
    if (job.leaseId !== leaseId) throw new ApiError(409, "stale_lease", `lease ${leaseId} no longer holds job ${jobId}`);
    return job;
  }

  /** running | succeeded | failed | cancelled from the agent holding the lease. */
  reportStatus(
    agentId: string,
    jobId: string,
    body: {
      leaseId: string;
      status: "running" | "succeeded" | "failed" | "cancelled";
      result?: Record<string, unknown>;
      error?: string;
      logLines?: number;
    },
  ): JobRow {
    const { clock, logger } = this.deps;
    const job = this.fence(jobId, agentId, body.leaseId);
    const current = job.status as JobStatus;
    if (current === body.status && isFinal(current)) return job; // a retried final report
    if (isFinal(current)) throw new ApiError(409, "job_finished", `job ${jobId} already ended ${current}`, { status: current });
    if (body.status === "running" && current === "running") return this.renew(job);
    const now = clock();
    const updated =
      body.status === "running"
        ? this.startJob.get({ id: jobId, leaseId: body.leaseId, now, until: now + this.leaseMs })
        : this.endJob.get({
            id: jobId,
            leaseId: body.leaseId,
            now,
            status: body.status,
            result: body.result ? JSON.stringify(body.result) : null,
            error: body.error ?? (body.status === "cancelled" ? "cancelled" : null),
            expectedLogLines: body.logLines ?? null,
          });
    if (!updated) throw new ApiError(409, "stale_lease", `job ${jobId} changed while reporting; fetch it again`);
    logger.info({ jobId, agentId, status: body.status }, "job status");
    this.deps.events.jobChanged(changeOf(updated));
    return updated;
  }

  private changed(id: string): void {
    const row = this.jobById.get({ id });
    if (row) this.deps.events.jobChanged(changeOf(row));
  }

  renew(job: JobRow): JobRow {
    const until = this.deps.clock() + this.leaseMs;
    this.renewLease.run({ id: job.id, until });
    return { ...job, leaseExpiresAt: until };
  }
}
