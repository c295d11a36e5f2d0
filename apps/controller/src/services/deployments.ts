import type { IdempotencyHandle } from "./idempotency";
import { type Deployment, type DeploymentChangedEvent, type JobChangedEvent, appImageRepository, type JobSpec, jobSpec, type Target } from "@deploybot/protocol";
import { and, desc, eq, inArray, isNotNull, isNull, lt, type SQL } from "drizzle-orm";
import { agents, deployments, jobs, releases } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import { newId } from "../lib/ids";
import type { AppDefinition } from "./appsConfig";
import { deployableConfig, deploySpecFields, releaseConfig } from "./deployableConfig";
import { type Deps, iso } from "./deps";
import { deployableImage } from "./images";
import type { JobService } from "./jobs";
import { SUPERSEDED } from "./jobState";
import type { JobTransitions } from "./jobTransitions";
import type { UserPrincipal } from "../middleware/auth";
import { assertAppAllowed } from "./auth";
import { ReleaseCatalog } from "./releases";
import type { SecretStore } from "./secrets";

type DeploymentRow = typeof deployments.$inferSelect;
type Trigger = Deployment["trigger"];

export interface CreateDeploymentInput {
  app: string;
  ref?: string;
  sha?: string;
  image?: string;
  /** an image of the catalog (POST /v1/images), deployed as it was built */
  imageId?: string;
  hosts?: string[];
  trigger: Trigger;
  triggeredBy?: string;
}

const FAILED = ["failed", "lost", "timed_out"];
const ACTIVE = ["pending", "assigned", "running"];

/**
 * Deployments put an app at a version on its hosts: one job per host. With an image repository
 * the image is built once (on a `builder` agent, else the first host) and every host pulls it by
 * digest; without one, each host builds. Every successful build is a release; a rollback
 * re-runs an earlier release with the config it ran with.
 */
export class DeploymentService {
  private refResolver: ((repo: string, ref: string) => Promise<string>) | null = null;

  readonly catalog: ReleaseCatalog;

  constructor(
    private readonly deps: Deps,
    private readonly jobs: JobService,
    private readonly state: JobTransitions,
    private readonly secrets?: Pick<SecretStore, "requireSet">,
  ) {
    this.catalog = new ReleaseCatalog(deps, (name) => this.appOf(name));
  }

  /** GitHub tag/branch resolution, when a GitHub token is configured. */
  setRefResolver(resolve: (repo: string, ref: string) => Promise<string>): void {
    this.refResolver = resolve;
  }

  /** Appends `deployment.changed` with the row as it is now; inside the transaction that changed it. */
  private async changed(id: string): Promise<void> {
    const row = (await this.deps.db.select().from(deployments).where(eq(deployments.id, id)))[0];
    if (!row) return;
    const data: DeploymentChangedEvent = {
      id: row.id,
      app: row.app,
      status: row.status as Deployment["status"],
      error: row.error,
      consequenceError: row.consequenceError,
      releaseId: row.releaseId,
      sha: row.sha,
      image: row.image,
      hosts: row.hosts,
      trigger: row.trigger,
    };
    await this.deps.outbox.append("deployment.changed", { app: row.app, subject: row.id }, data);
  }

  private appOf(name: string): AppDefinition {
    const app = this.deps.apps().byName(name);
    if (!app) throw new ApiError(404, "unknown_app", `no app '${name}' in ${this.deps.config.configPath}`);
    return app;
  }

  /**
   * `idempotency` takes the request's key inside the transaction that creates the deployment.
   * `by`: a user's token (absent for webhooks): its apps, and admin to deploy outside the app's hosts.
   */
  async create(request: CreateDeploymentInput, idempotency?: IdempotencyHandle, by?: UserPrincipal): Promise<Deployment> {
    const app = this.appOf(request.app);
    let input = request;
    let version: string | undefined;
    if (request.imageId) {
      const built = await deployableImage(this.deps.db, request.imageId, app.name);
      input = { ...request, image: built.image, sha: built.sha ?? undefined, ref: built.tag };
      version = built.tag;
    }
    const hosts = input.hosts ?? app.hosts;
    if (by) {
      assertAppAllowed(by, app.name);
      const outside = hosts.filter((h) => !app.hosts.includes(h));
      if (outside.length > 0 && by.scope !== "admin") {
        throw new ApiError(403, "forbidden", `host ${outside.map((h) => `'${h}'`).join(", ")} is not one of app '${app.name}''s hosts; only an admin token may deploy there`);
      }
    }
    if (hosts.length === 0) throw new ApiError(422, "no_hosts", `app '${app.name}' has no hosts; name some in apps.yaml or in the request`);
    await this.secrets?.requireSet(app.name, app.run?.secrets ?? []);
    let sha = input.sha ?? null;
    const ref = input.image || input.sha ? (input.ref ?? null) : (input.ref ?? app.branch);
    if (!sha && ref && this.refResolver && this.deps.config.githubToken) sha = await this.refResolver(app.repo, ref);
    const id = await this.deps.db.write(async () => {
      await idempotency?.take();
      const depId = newId("dep");
      await idempotency?.made({ deploymentId: depId });
      await this.supersedePending(app.name, hosts, depId);
      const now = this.deps.clock();
      const releaseId = newId("rel");
      const buildOnce = !input.image && !!this.imageRepository(app);
      await this.deps.db
        .insert(releases)
        .values({
          id: releaseId,
          app: app.name,
          version: version ?? (input.image ? (input.image.split(/[:@]/).pop() ?? "image") : (sha?.slice(0, 12) ?? ref ?? "unknown")),
          sha,
          imageTag: input.image ?? null,
          config: deployableConfig(app),
          status: input.image ? "pending" : "building",
          trigger: input.trigger,
          triggeredBy: input.triggeredBy ?? null,
          createdAt: now,
        });
      await this.deps.db
        .insert(deployments)
        .values({
          id: depId,
          app: app.name,
          ref,
          sha,
          image: input.image ?? null,
          hosts,
          trigger: input.trigger,
          triggeredBy: input.triggeredBy ?? null,
          releaseId,
          status: buildOnce ? "building" : "deploying",
          createdAt: now,
        });
      const gitRef = sha ?? ref ?? app.branch;
      if (buildOnce) {
        const build = await this.jobs.create({
          spec: jobSpec.parse({
            kind: "build",
            app: app.name,
            source: { type: "git", url: app.url, ref: gitRef },
            build: app.build,
            image: this.imageRepository(app),
            release: releaseId,
          }),
          target: (await this.builderTarget(hosts[0]))!,
          deploymentId: depId,
          dedupe: false,
        });
        await this.deps.db.update(deployments).set({ buildJobId: build.job.id }).where(eq(deployments.id, depId));
        await this.deps.db.update(releases).set({ buildJobId: build.job.id }).where(eq(releases.id, releaseId));
      } else {
        const source = input.image ? { type: "image" as const, image: input.image } : { type: "git" as const, url: app.url, ref: gitRef };
        await this.fanOut(depId, app.name, hosts, { source, build: input.image ? undefined : app.build, ...deploySpecFields(deployableConfig(app), this.deps.config.acme), release: releaseId, ...(version ? { version } : {}) });
      }
      await this.changed(depId);
      return depId;
    });
    this.deps.logger.info({ deploymentId: id, app: app.name, trigger: input.trigger, hosts }, "deployment created");
    return await this.get(id);
  }

  /** Re-runs a release (default: the one deployed before the current one) with its own config. */
  async rollback(appName: string, releaseId?: string, triggeredBy?: string, idempotency?: IdempotencyHandle): Promise<Deployment> {
    const app = this.appOf(appName);
    const history = await this.catalog.deployedIds(app.name);
    const targetId = releaseId ?? history[1];
    if (!targetId) throw new ApiError(409, "no_previous_release", `app '${app.name}' has no earlier successful release to roll back to`);
    const target = (await this.deps.db.select().from(releases).where(and(eq(releases.id, targetId), eq(releases.app, app.name))))[0];
    if (!target) throw notFound("release", targetId);
    if (target.status !== "success") throw new ApiError(409, "release_not_deployable", `release ${targetId} is ${target.status}`);
    const image = this.catalog.pullableImage(target);
    if (!image) throw new ApiError(409, "release_without_image", `release ${targetId} has no image to run`);
    const hosts = app.hosts;
    const targetConfig = releaseConfig(target.config);
    await this.secrets?.requireSet(app.name, targetConfig.run.secrets);
    const id = await this.deps.db.write(async () => {
      await idempotency?.take();
      const depId = newId("dep");
      await idempotency?.made({ deploymentId: depId });
      await this.supersedePending(app.name, hosts, depId);
      await this.deps.db
        .insert(deployments)
        .values({
          id: depId,
          app: app.name,
          ref: null,
          sha: target.sha,
          image,
          hosts,
          trigger: "rollback",
          triggeredBy: triggeredBy ?? target.id,
          releaseId: target.id,
          status: "deploying",
          createdAt: this.deps.clock(),
        });
      await this.fanOut(depId, app.name, hosts, {
        source: { type: "image", image },
        ...deploySpecFields(targetConfig, this.deps.config.acme),
        release: target.id,
        version: target.version,
      });
      await this.changed(depId);
      return depId;
    });
    this.deps.logger.info({ deploymentId: id, app: app.name, release: target.id }, "rollback created");
    return await this.get(id);
  }

  async get(id: string): Promise<Deployment> {
    const row = (await this.deps.db.select().from(deployments).where(eq(deployments.id, id)))[0];
    if (!row) throw notFound("deployment", id);
    return this.toWire(row);
  }

  async list(q: { app?: string; cursor?: string; limit: number; apps?: string[] | null }) {
    const where: SQL[] = [];
    if (q.apps) where.push(inArray(deployments.app, q.apps));
    if (q.app) where.push(eq(deployments.app, q.app));
    if (q.cursor) where.push(lt(deployments.id, q.cursor));
    const rows = await this.deps.db
      .select()
      .from(deployments)
      .where(and(...where))
      .orderBy(desc(deployments.id))
      .limit(q.limit + 1);
    const page = rows.slice(0, q.limit);
    return { deployments: await Promise.all(page.map((r) => this.toWire(r))), nextCursor: rows.length > q.limit ? page[page.length - 1]!.id : null };
  }

  imageRepository(app: AppDefinition): string | undefined {
    return appImageRepository(app, this.deps.config.registry);
  }

  /** A `builder`-labelled agent builds when one is online; otherwise the first host does (null: neither). */
  async builderTarget(firstHost: string | undefined): Promise<Target | null> {
    const builders = await this.deps.db.select({ labels: agents.labels, revoked: agents.revoked }).from(agents);
    if (builders.some((a) => !a.revoked && a.labels.includes("builder"))) return { labels: ["builder"] };
    return firstHost ? { host: firstHost } : null;
  }

  private async fanOut(depId: string, appName: string, hosts: string[], spec: Partial<JobSpec>) {
    const protectImages = await this.catalog.protectedImages(appName);
    for (const host of hosts) {
      await this.jobs.create({
        spec: jobSpec.parse({
          kind: "deploy",
          app: appName,
          ...spec,
          keepImages: this.deps.config.keepImages,
          protectImages,
        }),
        target: { host },
        deploymentId: depId,
        dedupe: false,
      });
    }
  }

  /**
   * A newer deploy of an app supersedes the older deploys still waiting for the same hosts
   * (coalescing); a running one is never interrupted. The superseded deployments' status follows
   * from their jobs' `job.changed` events, like every other change.
   */
  private async supersedePending(appName: string, hosts: string[], byId: string) {
    const waiting = (await this.deps.db
      .select({ id: jobs.id, kind: jobs.kind, targetHost: jobs.targetHost })
      .from(jobs)
      .where(and(eq(jobs.app, appName), eq(jobs.status, "pending"), isNotNull(jobs.deploymentId), inArray(jobs.kind, ["deploy", "build"]))))
      .filter((j) => j.kind === "build" || (j.targetHost !== null && hosts.includes(j.targetHost)));
    for (const j of waiting) await this.state.supersede(j.id, byId);
  }

  /**
   * The consequence of a job's change for its deployment (applied by the drainer from the
   * outbox, in its transaction): fan-out after a build, the release, the deployment's status.
   * Idempotent: it derives everything from the jobs as they are, so applying it twice is once.
   */
  async applyJobChange(change: JobChangedEvent): Promise<void> {
    if (!change.deploymentId || ACTIVE.includes(change.status)) return;
    const dep = (await this.deps.db.select().from(deployments).where(eq(deployments.id, change.deploymentId)))[0];
    if (!dep) return;
    if (dep.buildJobId === change.id) await this.buildEnded(dep, change);
    else await this.deployJobEnded(dep, change);
    await this.refresh(dep.id);
  }

  private async buildEnded(dep: DeploymentRow, change: JobChangedEvent) {
    const job = await this.jobs.getRow(change.id);
    const now = this.deps.clock();
    if (change.status !== "succeeded") {
      await this.deps.db.update(releases).set({ status: "failed" }).where(eq(releases.id, dep.releaseId!));
      return;
    }
    const result = (job.result ?? {}) as Record<string, unknown>;
    // the repository the build pushed to, as the job was given it: today's apps.yaml may differ
    const repository = String((job.spec as { image?: string }).image);
    const version = String(result.version ?? dep.sha?.slice(0, 12) ?? job.id);
    const digest = typeof result.digest === "string" ? result.digest : null;
    const imageTag = `${repository}:${version}`;
    await this.deps.db
      .update(releases)
      .set({ status: "success", version, digest, imageTag, sha: (result.sha as string) ?? dep.sha, builtAt: now })
      .where(and(eq(releases.id, dep.releaseId!), inArray(releases.status, ["pending", "building"])));
    if (dep.status !== "building") return; // superseded, cancelled or failed meanwhile (or applied before)
    const app = this.deps.apps().byName(dep.app);
    if (!app) {
      // Removed from apps.yaml while it was building: the image exists, but nothing says where to run it.
      (await this.deps.db
        .update(deployments)
        .set({ status: "failed", error: `app '${dep.app}' is no longer in ${this.deps.config.configPath}; the image was built but not deployed`, finishedAt: now })
        .where(eq(deployments.id, dep.id)));
      this.deps.logger.warn({ deploymentId: dep.id, app: dep.app }, "deployment failed: its app was removed from the config");
      await this.changed(dep.id);
      return;
    }
    const image = digest ? `${repository}@${digest}` : imageTag;
    await this.deps.db.update(deployments).set({ status: "deploying", image, sha: (result.sha as string) ?? dep.sha }).where(eq(deployments.id, dep.id));
    const release = (await this.deps.db.select().from(releases).where(eq(releases.id, dep.releaseId!)))[0]!;
    await this.fanOut(dep.id, app.name, dep.hosts, { source: { type: "image", image }, ...deploySpecFields(releaseConfig(release.config), this.deps.config.acme), release: release.id, version });
    await this.changed(dep.id);
  }

  /** The first host that built and ran a release records what it built. */
  private async deployJobEnded(dep: DeploymentRow, change: JobChangedEvent) {
    if (change.status !== "succeeded" || !dep.releaseId) return;
    const release = (await this.deps.db.select().from(releases).where(eq(releases.id, dep.releaseId)))[0];
    if (!release || release.status === "success") return;
    const result = ((await this.jobs.getRow(change.id)).result ?? {}) as Record<string, unknown>;
    await this.deps.db
      .update(releases)
      .set({
        status: "success",
        version: typeof result.version === "string" ? result.version : release.version,
        sha: typeof result.sha === "string" ? result.sha : release.sha,
        imageTag: typeof result.image === "string" ? result.image : release.imageTag,
        digest: typeof result.digest === "string" ? result.digest : release.digest,
        buildJobId: release.buildJobId ?? change.id,
        builtAt: this.deps.clock(),
      })
      .where(eq(releases.id, release.id));
    // A ref deployed without an image repository is resolved by the host that builds it: the
    // deployment learns its commit here (a built image's deployment learns it when the build
    // ends). Without it, `deploybot deployments` and every deployment.* notification said
    // "main" / "a new release" with sha null.
    if (dep.sha === null && typeof result.sha === "string") {
      await this.deps.db
        .update(deployments)
        .set({ sha: result.sha })
        .where(and(eq(deployments.id, dep.id), isNull(deployments.sha)));
    }
  }

  /** Derives the deployment's status from its jobs and tells listeners when it changed. */
  private async refresh(depId: string) {
    const dep = (await this.deps.db.select().from(deployments).where(eq(deployments.id, depId)))[0];
    if (!dep) return;
    const all = await this.deps.db.select().from(jobs).where(eq(jobs.deploymentId, depId));
    const build = all.find((j) => j.id === dep.buildJobId);
    const hostJobs = all.filter((j) => j.id !== dep.buildJobId);
    const superseded = (j: (typeof all)[number]) => j.status === "cancelled" && j.error?.startsWith(SUPERSEDED);
    let status = dep.status;
    let error: string | null = null;
    if (build && hostJobs.length === 0) {
      if (ACTIVE.includes(build.status)) status = "building";
      else if (superseded(build)) status = "superseded";
      else if (build.status !== "succeeded") {
        status = build.status === "cancelled" ? "cancelled" : "failed";
        error = `build failed: ${build.error ?? build.status}`;
      } else error = dep.error; // built, and either fanned out next or failed with its own reason
    } else if (hostJobs.some((j) => ACTIVE.includes(j.status))) status = "deploying";
    else if (hostJobs.length > 0) {
      const failed = hostJobs.filter((j) => FAILED.includes(j.status));
      if (hostJobs.every(superseded)) status = "superseded";
      else if (failed.length > 0) {
        status = "failed";
        error = failed.map((j) => `${j.targetHost}: ${j.error ?? j.status}`).join("; ");
      } else if (hostJobs.every((j) => j.status === "succeeded" || superseded(j))) status = "succeeded";
      else status = "cancelled";
    }
    if (status === dep.status && error === dep.error) return;
    const final = !["pending", "building", "deploying"].includes(status);
    await this.deps.db
      .update(deployments)
      .set({ status, error, finishedAt: final ? this.deps.clock() : null })
      .where(eq(deployments.id, depId));
    if (status === "failed" && dep.releaseId && build === undefined) {
      // a release nobody managed to run is not a rollback target
      (await this.deps.db
        .update(releases)
        .set({ status: "failed" })
        .where(and(eq(releases.id, dep.releaseId), inArray(releases.status, ["pending", "building"]))));
    }
    this.deps.logger.info({ deploymentId: depId, status }, "deployment status");
    await this.changed(depId);
  }

  async toWire(row: DeploymentRow): Promise<Deployment> {
    const js = await this.deps.db
      .select({ id: jobs.id, kind: jobs.kind, host: jobs.targetHost, status: jobs.status, error: jobs.error })
      .from(jobs)
      .where(eq(jobs.deploymentId, row.id))
      .orderBy(jobs.id);
    return {
      id: row.id,
      app: row.app,
      ref: row.ref,
      sha: row.sha,
      image: row.image,
      hosts: row.hosts,
      trigger: row.trigger as Trigger,
      triggeredBy: row.triggeredBy,
      status: row.status as Deployment["status"],
      error: row.error,
      consequenceError: row.consequenceError,
      releaseId: row.releaseId,
      buildJobId: row.buildJobId,
      jobs: js,
      createdAt: iso(row.createdAt)!,
      finishedAt: iso(row.finishedAt),
    };
  }
}
