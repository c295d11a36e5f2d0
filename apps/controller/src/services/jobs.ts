import {
  appImageRepository,
  isFinal,
  type Job,
  type JobSpec,
  type JobStatus,
  jobSpec,
  type SubmitJob,
  type Target,
} from "@deploybot/protocol";
import { and, desc, eq, inArray, lt, type SQL } from "drizzle-orm";
import { jobs } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import { newId } from "../lib/ids";
import { type Deps, iso } from "./deps";
import { canonicalLabels } from "./jobState";
import type { JobTransitions } from "./jobTransitions";
import type { JobRow } from "./jobStore";
import type { UserPrincipal as Principal } from "../middleware/auth";
import type { IdempotencyHandle } from "./idempotency";
import { assertAppAllowed } from "./auth";
import type { SecretStore } from "./secrets";
import { deployableConfig, deploySpecFields } from "./deployableConfig";

export type { JobRow };

export function jobToWire(row: JobRow): Job {
  return {
    id: row.id,
    kind: row.kind as Job["kind"],
    app: row.app,
    status: row.status as JobStatus,
    target: row.targetHost ? { host: row.targetHost } : { labels: row.targetLabels ?? [] },
    spec: row.spec as JobSpec,
    deploymentId: row.deploymentId,
    agentId: row.agentId,
    attempts: row.attempts,
    maxAttempts: row.maxAttempts,
    cancelRequested: row.cancelRequested,
    timeoutSeconds: row.timeoutSeconds,
    result: row.result ?? null,
    error: row.error,
    logLines: row.logOffset,
    createdAt: iso(row.createdAt)!,
    assignedAt: iso(row.assignedAt),
    startedAt: iso(row.startedAt),
    finishedAt: iso(row.finishedAt),
  };
}

const targetKey = (t: Target) => ("host" in t ? `host:${t.host}` : `labels:${[...t.labels].sort().join(",")}`);

/** Jobs from one git ref to one target are the same job while one is still active. */
function dedupeKey(spec: JobSpec, target: Target): string | null {
  if (spec.source?.type !== "git") return null;
  return `${spec.kind}|${spec.app}|${spec.source.ref}|${targetKey(target)}`;
}

export interface CreateJobInput {
  spec: JobSpec;
  target: Target;
  timeoutSeconds?: number;
  maxAttempts?: number;
  deploymentId?: string;
  /** false: always a new job (deployments coalesce by superseding instead) */
  dedupe?: boolean;
  /** how long the job may wait for an agent (default: the controller's queue timeout) */
  queueTimeoutSeconds?: number;
}

export class JobService {
  constructor(
    private readonly deps: Deps,
    private readonly state: JobTransitions,
    private readonly secrets?: Pick<SecretStore, "requireSet">,
  ) {}

  /**
   * Turns the seeds' `{repo, ref, host}` into a full deploy spec from apps.yaml, and checks what
   * `by` may submit: its apps; a raw spec never names secrets (they come only from the app's
   * configuration); a job outside the app's hosts (another host, a label target) needs admin.
   */
  async resolveSubmission(body: SubmitJob, by: Principal): Promise<CreateJobInput> {
    if ("spec" in body) {
      assertAppAllowed(by, body.spec.app);
      if ((body.spec.run?.secrets ?? []).length > 0) {
        throw new ApiError(422, "raw_spec_secrets", "a raw job spec cannot name secrets; they come only from the app's configuration (POST /v1/deployments)");
      }
      this.requireAppHost(body.spec.app, body.target, by);
      return body;
    }
    const app = this.appOfRepo(body.repo, body.host);
    assertAppAllowed(by, app.name);
    this.requireAppHost(app.name, { host: body.host }, by);
    const image = appImageRepository(app, this.deps.config.registry);
    const spec = jobSpec.parse({
      kind: "deploy",
      app: app.name,
      source: { type: "git", url: app.url, ref: body.ref },
      build: app.build,
      ...deploySpecFields(deployableConfig(app), this.deps.config.acme),
      ...(image ? { image } : {}),
    });
    await this.secrets?.requireSet(app.name, spec.run?.secrets ?? []);
    return { spec, target: { host: body.host }, timeoutSeconds: body.timeoutSeconds };
  }

  /** The app of a repository; of several apps of one repository (a monorepo), the one on `host`. */
  private appOfRepo(repo: string, host: string) {
    const apps = this.deps.apps().byRepo(repo);
    if (apps.length === 0) throw new ApiError(422, "unknown_repo", `no app in ${this.deps.config.configPath} has repo '${repo}'`);
    if (apps.length === 1) return apps[0]!;
    const onHost = apps.filter((a) => a.hosts.includes(host));
    if (onHost.length === 1) return onHost[0]!;
    throw new ApiError(
      422,
      "ambiguous_repo",
      `apps ${apps.map((a) => `'${a.name}'`).join(", ")} all have repo '${repo}'${onHost.length > 1 ? ` and host '${host}'` : ""}; deploy one by name (POST /v1/deployments)`,
    );
  }

  private requireAppHost(appName: string, target: Target, by: Principal): void {
    if (by.scope === "admin") return;
    const hosts = this.deps.apps().byName(appName)?.hosts ?? [];
    if ("host" in target && hosts.includes(target.host)) return;
    const where = "host" in target ? `host '${target.host}'` : "a label target";
    throw new ApiError(403, "forbidden", `${where} is not one of app '${appName}''s hosts (${hosts.join(", ") || "none"}); only an admin token may send its jobs elsewhere`);
  }

  /** Creates a job, or returns the active job with the same git ref and target (`created: false`). */
  async create(input: CreateJobInput, idempotency?: IdempotencyHandle): Promise<{ job: Job; created: boolean }> {
    // the request's Idempotency-Key is taken in the transaction that creates the job
    if (idempotency) {
      return this.deps.db.write(async () => {
        await idempotency.take();
        const made = await this.create(input);
        await idempotency.made({ jobId: made.job.id, created: made.created });
        return made;
      });
    }
    const { config, clock } = this.deps;
    const key = input.dedupe === false ? null : dedupeKey(input.spec, input.target);
    const now = clock();
    const { row, created } = await this.state.queue(
      {
        id: newId("job"),
        deploymentId: input.deploymentId ?? null,
        kind: input.spec.kind,
        app: input.spec.app,
        targetHost: "host" in input.target ? input.target.host : null,
        targetLabels: "labels" in input.target ? canonicalLabels(input.target.labels) : null,
        spec: input.spec,
        maxAttempts: input.maxAttempts ?? config.maxAttempts,
        timeoutSeconds: input.timeoutSeconds ?? config.jobTimeoutSeconds,
        queueDeadline: now + (input.queueTimeoutSeconds ?? config.queueTimeoutSeconds) * 1000,
        createdAt: now,
      },
      key,
    );
    if (created) {
      this.deps.logger.info({ jobId: row.id, app: row.app, kind: row.kind, target: targetKey(input.target) }, "job queued");
    }
    return { job: jobToWire(row), created };
  }

  async getRow(id: string): Promise<JobRow> {
    // the store's prepared statement: drizzle builds and prepares a select per call (~30 µs here)
    const row = await this.state.byId(id);
    if (!row) throw notFound("job", id);
    return row;
  }

  /** `by`: a per-app token sees only its apps' jobs (a 404, as if the job did not exist, would hide less: 403 names the limit). */
  async get(id: string, by?: { apps: string[] | null }): Promise<Job> {
    const row = await this.getRow(id);
    if (by) assertAppAllowed(by, row.app);
    return jobToWire(row);
  }

  /** Newest first; `cursor` is the id of the last job of the previous page. */
  async list(q: { status?: JobStatus; host?: string; app?: string; cursor?: string; limit: number; apps?: string[] | null }) {
    const where: SQL[] = [];
    if (q.apps) where.push(inArray(jobs.app, q.apps));
    if (q.status) where.push(eq(jobs.status, q.status));
    if (q.host) where.push(eq(jobs.targetHost, q.host));
    if (q.app) where.push(eq(jobs.app, q.app));
    if (q.cursor) where.push(lt(jobs.id, q.cursor));
    const rows = await this.deps.db
      .select()
      .from(jobs)
      .where(and(...where))
      .orderBy(desc(jobs.id))
      .limit(q.limit + 1);
    const page = rows.slice(0, q.limit);
    return { jobs: page.map(jobToWire), nextCursor: rows.length > q.limit ? page[page.length - 1]!.id : null };
  }

  /** A pending job is cancelled at once; a held one is asked to stop through its agent. */
  async cancel(id: string): Promise<Job> {
    const row = await this.state.cancel(id);
    if (!row) throw notFound("job", id);
    if (row.status !== "cancelled" && isFinal(row.status as JobStatus)) {
      throw new ApiError(409, "job_finished", `job ${id} already ended ${row.status}`);
    }
    return jobToWire(row);
  }
}
