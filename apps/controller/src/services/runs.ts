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
  async oneOff(appName: string, body: { command: string[]; host?: string; env?: Record<string, string>; timeoutSeconds?: number; resultFile?: string }): Promise<Run> {
    const app = this.appOf(appName);
    const id = await this.deps.db.write(async () => (await this.queue({ app, trigger: "one-off", ...body })).id);
    return await this.get(id);
  }

  /** A run without a tick (one-off, trigger now): the row and its job, or a throw (409 without a release). */
  async queue(req: RunRequest): Promise<RunRow> {
    return await this.attachJob((await this.insert(req, "queued", null))!, req, false);
  }

  /**
   * Takes a schedule's tick: the run row carries the unique (app, schedule, tick) key, so it is
   * null when the tick already has a row (another controller, or this one before a restart,
   * decided it). Call inside the synchronous transaction that also queues the job.
   */
  async tryTakeTick(req: RunRequest, state: "queued" | "missed" | "skipped" = "queued", reason: string | null = null): Promise<RunRow | null> {
    return await this.insert(req, state, reason);
  }

  /** Queues the job of a run row; a tick that cannot run (no release) is recorded failed with the reason. */
  async attachJob(row: RunRow, req: RunRequest, recordFailure = true): Promise<RunRow> {
    try {
      const { job } = await this.jobs.create({
        spec: await this.specFor(req),
        target: this.targetFor(req),
        timeoutSeconds: req.timeoutSeconds,
        queueTimeoutSeconds: req.queueTimeoutSeconds,
        dedupe: false,
      });
      return await this.announce((await this.deps.db.update(runs).set({ jobId: job.id }).where(eq(runs.id, row.id)).returning())[0]!);
    } catch (err) {
      if (!recordFailure || !(err instanceof ApiError)) throw err;
      return await this.setState(row.id, "failed", err.message);
    }
  }

  /** `run.changed` on the outbox, in the caller's transaction (GET /v1/events). */
  private async announce(row: RunRow, status?: RunStatus): Promise<RunRow> {
    const run = await this.toWire(row);
    await this.deps.outbox.append("run.changed", { app: row.app, subject: row.id }, status ? { ...run, status } : run);
    return row;
  }

  /**
   * A run's job started or ended: say so on the outbox (a consequence of its job.changed). The
   * event carries the status of that change, even when it is applied after a later one.
   */
  async applyJobChange(change: { id: string; kind: string; status: string }): Promise<void> {
    const status = change.status as JobStatus;
    if (change.kind !== "run" || (status !== "running" && !finalStatuses.includes(status))) return;
    const row = (await this.deps.db.select().from(runs).where(eq(runs.jobId, change.id)))[0];
    if (row) await this.announce(row, JOB_TO_RUN[status]);
  }

  async setState(id: string, state: "skipped" | "failed" | "missed", reason: string): Promise<RunRow> {
    return await this.announce((await this.deps.db.update(runs).set({ state, reason }).where(eq(runs.id, id)).returning())[0]!);
  }

  private async insert(req: RunRequest, state: string, reason: string | null): Promise<RunRow | null> {
    const row =
      (await this.deps.db
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
        .returning())[0] ?? null;
    // a queued run is announced once its job exists (attachJob)
    if (row && state !== "queued") await this.announce(row);
    return row;
  }

  /** The app's current release with today's command and env overrides; run jobs publish no ports. */
  private async specFor(req: RunRequest) {
    const current = await this.catalog.current(req.app.name);
    if (!current) throw new ApiError(409, "no_release", `app '${req.app.name}' has no deployed release to run`);
    const row = (await this.deps.db.select().from(releases).where(eq(releases.id, current.id)))[0]!;
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
  async activeRuns(app: string, schedule: string): Promise<{ runId: string; jobId: string }[]> {
    return await this.deps.db
      .select({ runId: runs.id, jobId: jobs.id })
      .from(runs)
      .innerJoin(jobs, eq(jobs.id, runs.jobId))
      .where(and(eq(runs.app, app), eq(runs.schedule, schedule), inArray(jobs.status, [...activeStatuses])));
  }

  async get(id: string): Promise<Run> {
    const row = (await this.deps.db.select().from(runs).where(eq(runs.id, id)))[0];
    if (!row) throw notFound("run", id);
    return await this.toWire(row);
  }

  /** Newest first; `cursor` is the id of the last run of the previous page. */
  async list(q: { app?: string; schedule?: string; cursor?: string; limit: number }) {
    const where: SQL[] = [];
    if (q.app) where.push(eq(runs.app, q.app));
    if (q.schedule) where.push(eq(runs.schedule, q.schedule));
    if (q.cursor) where.push(lt(runs.id, q.cursor));
    const rows = await this.deps.db
      .select()
      .from(runs)
      .where(and(...where))
      .orderBy(desc(runs.id))
      .limit(q.limit + 1);
    const page = rows.slice(0, q.limit);
    return { runs: await Promise.all(page.map((r) => this.toWire(r))), nextCursor: rows.length > q.limit ? page[page.length - 1]!.id : null };
  }

  async lastRun(app: string, schedule: string): Promise<Run | null> {
    const row = (await this.deps.db
      .select()
      .from(runs)
      .where(and(eq(runs.app, app), eq(runs.schedule, schedule)))
      .orderBy(desc(runs.id))
      .limit(1))[0];
    return row ? await this.toWire(row) : null;
  }

  /** The stored result file of a run. */
  async result(id: string): Promise<{ path: string; content: Buffer; size: number; truncated: boolean }> {
    const row = (await this.deps.db.select().from(runs).where(eq(runs.id, id)))[0];
    if (!row) throw notFound("run", id);
    const stored = row.jobId ? (await this.deps.db.select().from(runResults).where(eq(runResults.jobId, row.jobId)))[0] : undefined;
    if (!stored) throw new ApiError(404, "no_result", `run ${id} has no result file`);
    return stored;
  }

  /**
   * The agent holding the job uploads its result file (fenced by the lease, like every agent
   * write). A retried upload replaces the stored copy; the cap is enforced here too.
   */
  async storeResult(agentId: string, jobId: string, leaseId: string, file: { path: string; size: number; content: Buffer }): Promise<void> {
    const job = await this.leases.fence(jobId, agentId, leaseId);
    if (job.kind !== "run") throw new ApiError(409, "not_a_run", `job ${jobId} is a ${job.kind} job`);
    const content = file.content.subarray(0, RESULT_FILE_LIMIT);
    const truncated = file.size > content.length;
    await this.deps.db
      .insert(runResults)
      .values({ jobId, path: file.path, content, size: Math.max(file.size, content.length), truncated, storedAt: this.deps.clock() })
      .onConflictDoUpdate({ target: runResults.jobId, set: { path: file.path, content, size: Math.max(file.size, content.length), truncated } });
    this.deps.logger.info({ jobId, bytes: content.length, truncated }, "run result stored");
  }

  /**
   * Agents of the previous version send the result file inside the status report (at most
   * 256 KiB, as `result.resultFile.content`): keep it where the new path would have put it.
   */
  async adoptInlineResult(job: JobRow): Promise<void> {
    if (job.kind !== "run") return;
    const file = (job.result as { resultFile?: { path?: unknown; content?: unknown; truncated?: unknown } } | null)?.resultFile;
    if (!file || typeof file.content !== "string" || typeof file.path !== "string") return;
    const exists = (await this.deps.db.select({ jobId: runResults.jobId }).from(runResults).where(eq(runResults.jobId, job.id)))[0];
    if (exists) return;
    const content = Buffer.from(file.content, "utf8");
    await this.deps.db
      .insert(runResults)
      .values({ jobId: job.id, path: file.path, content, size: content.length, truncated: file.truncated === true, storedAt: this.deps.clock() })
      .onConflictDoNothing();
  }

  async toWire(row: RunRow): Promise<Run> {
    const job = row.jobId ? await this.jobs.getRow(row.jobId) : undefined;
    const stored = row.jobId
      ? (await this.deps.db
          .select({ path: runResults.path, size: runResults.size, truncated: runResults.truncated, content: runResults.content })
          .from(runResults)
          .where(eq(runResults.jobId, row.jobId)))[0]
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

