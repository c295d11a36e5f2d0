import { activeStatuses, finalStatuses, type JobStatus, jobSpec, RESULT_FILE_LIMIT, type Run, type RunStatus, type Target } from "@deploybot/protocol";
import { and, desc, eq, inArray, lt, type SQL } from "drizzle-orm";
import { jobs, releases, runResults, runs } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import { newId } from "../lib/ids";
import type { AppDefinition } from "./appsConfig";
import { releaseConfig } from "./deployableConfig";
import { type Deps, iso } from "./deps";
import type { JobRow, JobService } from "./jobs";
import type { LeaseService } from "./leases";
import type { ReleaseCatalog } from "./releases";

type RunRow = typeof runs.$inferSelect;
type Trigger = Run["trigger"];

export interface RunRequest {
  app: AppDefinition;
  command: string[];
  trigger: Trigger;
  schedule?: string;
  tickAt?: number;
  host?: string;
  labels?: string[];
  env?: Record<string, string>;
  timeoutSeconds?: number;
  resultFile?: string;
  /** a scheduled run that no agent took within its starting deadline times out in the queue */
  queueTimeoutSeconds?: number;
}

const JOB_TO_RUN: Record<JobStatus, RunStatus> = {
  pending: "queued",
  assigned: "queued",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  cancelled: "cancelled",
  lost: "lost",
  timed_out: "timed_out",
};

/**
 * Runs: a command in a terminating container of the app's current release (its image and its
 * config, secrets included), with exit code, duration and an optional result file. A run's
 * status is its job's status; ticks that ran nothing are run rows without a job.
 */
export class RunService {
  constructor(
    private readonly deps: Deps,
    private readonly jobs: JobService,
    private readonly leases: LeaseService,
    private readonly catalog: ReleaseCatalog,
  ) {}

  appOf(name: string): AppDefinition {
    const app = this.deps.apps().byName(name);
    if (!app) throw notFound("app", name);
    return app;
  }

  /** A one-off run (`POST /v1/apps/{name}/runs`). 409 when the app has no deployed release. */
  oneOff(appName: string, body: { command: string[]; host?: string; env?: Record<string, string>; timeoutSeconds?: number; resultFile?: string }): Run {
    const app = this.appOf(appName);
    const id = this.deps.db.$client.transaction(() => this.queue({ app, trigger: "one-off", ...body }).id)();
    return this.get(id);
  }

  /** A run without a tick (one-off, trigger now): the row and its job, or a throw (409 without a release). */
  queue(req: RunRequest): RunRow {
    return this.attachJob(this.insert(req, "queued", null)!, req, false);
  }

  /**
   * Takes a schedule's tick: the run row carries the unique (app, schedule, tick) key, so it is
   * null when the tick already has a row (another controller, or this one before a restart,
   * decided it). Call inside the synchronous transaction that also queues the job.
   */
  tryTakeTick(req: RunRequest, state: "queued" | "missed" | "skipped" = "queued", reason: string | null = null): RunRow | null {
    return this.insert(req, state, reason);
  }

  /** Queues the job of a run row; a tick that cannot run (no release) is recorded failed with the reason. */
  attachJob(row: RunRow, req: RunRequest, recordFailure = true): RunRow {
    try {
      const jobId = this.jobs.create({
        spec: this.specFor(req),
        target: this.targetFor(req),
        timeoutSeconds: req.timeoutSeconds,
        queueTimeoutSeconds: req.queueTimeoutSeconds,
        dedupe: false,
      }).job.id;
      return this.announce(this.deps.db.update(runs).set({ jobId }).where(eq(runs.id, row.id)).returning().get());
    } catch (err) {
      if (!recordFailure || !(err instanceof ApiError)) throw err;
      return this.setState(row.id, "failed", err.message);
    }
  }

  /** `run.changed` on the outbox, in the caller's transaction (GET /v1/events). */
  private announce(row: RunRow, status?: RunStatus): RunRow {
    const run = this.toWire(row);
    this.deps.outbox.append("run.changed", { app: row.app, subject: row.id }, status ? { ...run, status } : run);
    return row;
  }

  /**
   * A run's job started or ended: say so on the outbox (a consequence of its job.changed). The
   * event carries the status of that change, even when it is applied after a later one.
   */
  applyJobChange(change: { id: string; kind: string; status: string }): void {
    const status = change.status as JobStatus;
    if (change.kind !== "run" || (status !== "running" && !finalStatuses.includes(status))) return;
    const row = this.deps.db.select().from(runs).where(eq(runs.jobId, change.id)).get();
    if (row) this.announce(row, JOB_TO_RUN[status]);
  }

  setState(id: string, state: "skipped" | "failed" | "missed", reason: string): RunRow {
    return this.announce(this.deps.db.update(runs).set({ state, reason }).where(eq(runs.id, id)).returning().get());
  }

  private insert(req: RunRequest, state: string, reason: string | null): RunRow | null {
    const row =
      this.deps.db
        .insert(runs)
        .values({
          id: newId("run"),
          app: req.app.name,
          schedule: req.schedule ?? null,
          tickAt: req.tickAt ?? null,
          trigger: req.trigger,
          state,
          reason,
          command: req.command,
          createdAt: this.deps.clock(),
        })
        .onConflictDoNothing()
        .returning()
        .get() ?? null;
    // a queued run is announced once its job exists (attachJob)
    if (row && state !== "queued") this.announce(row);
    return row;
  }

  /** The app's current release with today's command and env overrides; run jobs publish no ports. */
  private specFor(req: RunRequest) {
    const current = this.catalog.current(req.app.name);
    if (!current) throw new ApiError(409, "no_release", `app '${req.app.name}' has no deployed release to run`);
    const row = this.deps.db.select().from(releases).where(eq(releases.id, current.id)).get()!;
    const image = this.catalog.pullableImage(row);
    if (!image) throw new ApiError(409, "release_without_image", `release ${row.id} of '${req.app.name}' has no image to run`);
    const config = releaseConfig(row.config).run as Record<string, unknown>;
    const { ports: _ports, healthcheck: _healthcheck, restart: _restart, ...rest } = config;
    return jobSpec.parse({
      kind: "run",
      app: req.app.name,
      source: { type: "image", image },
      release: row.id,
      version: row.version.replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 128),
      run: {
        ...rest,
        env: { ...((config.env as Record<string, string>) ?? {}), ...(req.env ?? {}) },
        command: req.command,
        restart: "no",
        ...(req.resultFile ? { result_file: req.resultFile } : {}),
      },
    });
  }

  private targetFor(req: RunRequest): Target {
    if (req.host) return { host: req.host };
    if (req.labels && req.labels.length > 0) return { labels: req.labels };
    const first = req.app.hosts[0];
    if (first) return { host: first };
    if (req.app.labels.length > 0) return { labels: req.app.labels };
    throw new ApiError(422, "no_hosts", `app '${req.app.name}' has no hosts to run on; name one with host`);
  }

  /** Runs of a schedule whose job is still pending, assigned or running. */
  activeRuns(app: string, schedule: string): { runId: string; jobId: string }[] {
    return this.deps.db
      .select({ runId: runs.id, jobId: jobs.id })
      .from(runs)
      .innerJoin(jobs, eq(jobs.id, runs.jobId))
      .where(and(eq(runs.app, app), eq(runs.schedule, schedule), inArray(jobs.status, [...activeStatuses])))
      .all();
  }

  get(id: string): Run {
    const row = this.deps.db.select().from(runs).where(eq(runs.id, id)).get();
    if (!row) throw notFound("run", id);
    return this.toWire(row);
  }

  /** Newest first; `cursor` is the id of the last run of the previous page. */
  list(q: { app?: string; schedule?: string; cursor?: string; limit: number }) {
    const where: SQL[] = [];
    if (q.app) where.push(eq(runs.app, q.app));
    if (q.schedule) where.push(eq(runs.schedule, q.schedule));
    if (q.cursor) where.push(lt(runs.id, q.cursor));
    const rows = this.deps.db
      .select()
      .from(runs)
      .where(and(...where))
      .orderBy(desc(runs.id))
      .limit(q.limit + 1)
      .all();
    const page = rows.slice(0, q.limit);
    return { runs: page.map((r) => this.toWire(r)), nextCursor: rows.length > q.limit ? page[page.length - 1]!.id : null };
  }

  lastRun(app: string, schedule: string): Run | null {
    const row = this.deps.db
      .select()
      .from(runs)
      .where(and(eq(runs.app, app), eq(runs.schedule, schedule)))
      .orderBy(desc(runs.id))
      .limit(1)
      .get();
    return row ? this.toWire(row) : null;
  }

  /** The stored result file of a run. */
  result(id: string): { path: string; content: Buffer; size: number; truncated: boolean } {
    const row = this.deps.db.select().from(runs).where(eq(runs.id, id)).get();
    if (!row) throw notFound("run", id);
    const stored = row.jobId ? this.deps.db.select().from(runResults).where(eq(runResults.jobId, row.jobId)).get() : undefined;
    if (!stored) throw new ApiError(404, "no_result", `run ${id} has no result file`);
    return stored;
  }

  /**
   * The agent holding the job uploads its result file (fenced by the lease, like every agent
   * write). A retried upload replaces the stored copy; the cap is enforced here too.
   */
  storeResult(agentId: string, jobId: string, leaseId: string, file: { path: string; size: number; content: Buffer }): void {
    const job = this.leases.fence(jobId, agentId, leaseId);
    if (job.kind !== "run") throw new ApiError(409, "not_a_run", `job ${jobId} is a ${job.kind} job`);
    const content = file.content.subarray(0, RESULT_FILE_LIMIT);
    const truncated = file.size > content.length;
    this.deps.db
      .insert(runResults)
      .values({ jobId, path: file.path, content, size: Math.max(file.size, content.length), truncated, storedAt: this.deps.clock() })
      .onConflictDoUpdate({ target: runResults.jobId, set: { path: file.path, content, size: Math.max(file.size, content.length), truncated } })
      .run();
    this.deps.logger.info({ jobId, bytes: content.length, truncated }, "run result stored");
  }

  /**
   * Agents of the previous version send the result file inside the status report (at most
   * 256 KiB, as `result.resultFile.content`): keep it where the new path would have put it.
   */
  adoptInlineResult(job: JobRow): void {
    if (job.kind !== "run") return;
    const file = (job.result as { resultFile?: { path?: unknown; content?: unknown; truncated?: unknown } } | null)?.resultFile;
    if (!file || typeof file.content !== "string" || typeof file.path !== "string") return;
    const exists = this.deps.db.select({ jobId: runResults.jobId }).from(runResults).where(eq(runResults.jobId, job.id)).get();
    if (exists) return;
    const content = Buffer.from(file.content, "utf8");
    this.deps.db
      .insert(runResults)
      .values({ jobId: job.id, path: file.path, content, size: content.length, truncated: file.truncated === true, storedAt: this.deps.clock() })
      .onConflictDoNothing()
      .run();
  }

  toWire(row: RunRow): Run {
    const job = row.jobId ? this.jobs.getRow(row.jobId) : undefined;
    const stored = row.jobId
      ? this.deps.db
          .select({ path: runResults.path, size: runResults.size, truncated: runResults.truncated, content: runResults.content })
          .from(runResults)
          .where(eq(runResults.jobId, row.jobId))
          .get()
      : undefined;
    const result = (job?.result ?? {}) as { exitCode?: unknown };
    const status: RunStatus = job ? JOB_TO_RUN[job.status as JobStatus] : (row.state as RunStatus);
    return {
      id: row.id,
      app: row.app,
      schedule: row.schedule,
      trigger: row.trigger as Trigger,
      tickAt: iso(row.tickAt),
      status,
      reason: row.reason,
      command: row.command,
      jobId: row.jobId,
      host: job?.targetHost ?? null,
      exitCode: typeof result.exitCode === "number" ? result.exitCode : null,
      durationMs: job?.startedAt && job.finishedAt ? job.finishedAt - job.startedAt : null,
      resultFile: stored ? { path: stored.path, size: stored.size, stored: stored.content.length, truncated: stored.truncated } : null,
      error: job?.error ?? null,
      createdAt: iso(row.createdAt)!,
      startedAt: iso(job?.startedAt),
      finishedAt: iso(job?.finishedAt ?? (job ? null : row.createdAt)),
    };
  }
}

