import { type CreateImageRequest, type Image, isFullSha, jobSpec, type Target } from "@deploybot/protocol";
import { and, desc, eq, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/client";
import { reusable } from "../db/reusable";
import { images } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import { newId } from "../lib/ids";
import type { AppDefinition } from "./appsConfig";
import { type Deps, iso } from "./deps";
import type { JobChange } from "./events";
import type { GitRefs } from "./gitRefs";
import type { JobService } from "./jobs";

type ImageRow = typeof images.$inferSelect;
/** What a build's change needs of its image. */
type BuildImage = Pick<ImageRow, "id" | "status" | "startedAt" | "sha">;

/** Where an app's images go and who builds them; the deployment service decides both. */
export interface ImagePlacement {
  imageRepository(app: AppDefinition): string | undefined;
  builderTarget(firstHost: string | undefined): Promise<Target | null>;
}

const BUILD_STATUS: Record<string, ImageRow["status"]> = {
  pending: "pending",
  assigned: "building",
  running: "building",
  succeeded: "success",
};

/**
 * The transitions of a build that never move its image, so their changes skip the lookup: queued
 * (the image is written `pending` in the transaction that queues its build), started (its claim
 * already made it `building`) and a cancel request (the job's status stays). Two of the four
 * changes of a catalog build that succeeds.
 */
const KEEPS_IMAGE: ReadonlySet<string> = new Set(["queued", "started", "cancel_requested"]);

/**
 * The images catalog: build and push an app at a git tag (or a branch or commit, tagged by its
 * short sha) without deploying it. One image per app and tag (a unique key): a repeated request
 * answers the existing image unless it asks for a rebuild or that image's build failed. The image's status follows its build
 * job (pending -> building -> success | failed); the job's log is the build log.
 */
export class ImageService {
  private readonly byBuildJob: (id: string) => BuildImage | undefined | Promise<BuildImage | undefined>;

  constructor(
    private readonly deps: Deps,
    private readonly jobs: JobService,
    private readonly refs: GitRefs,
    private readonly placement: ImagePlacement,
  ) {
    const query = reusable(deps.db, () =>
      deps.db
        .select({ id: images.id, status: images.status, startedAt: images.startedAt, sha: images.sha })
        .from(images)
        .where(eq(images.buildJobId, sql.placeholder("id")))
        .prepare(),
    );
    // On SQLite a raw statement read at once, beside the job-time read of metrics.ts (see there).
    const raw =
      deps.db.engine === "sqlite"
        ? deps.db.$client.prepare<[string], BuildImage>("SELECT id, status, started_at AS startedAt, sha FROM images WHERE build_job_id = ?")
        : null;
    this.byBuildJob = raw ? (id: string): BuildImage | undefined => raw.get(id) : async (id: string): Promise<BuildImage | undefined> => (await query().execute({ id }))[0];
  }

  async create(input: CreateImageRequest): Promise<{ image: Image; created: boolean }> {
    const app = this.appOf(input.app);
    const repository = this.placement.imageRepository(app);
    if (!repository) throw new ApiError(422, "no_registry", "DEPLOYBOT_REGISTRY_URL is not set and the app has no image repository, so there is nowhere to push");
    const target = await this.placement.builderTarget(app.hosts[0]);
    if (!target) throw new ApiError(422, "no_builder", `app '${app.name}' has no hosts and no agent is labelled 'builder'`);

    // A tag is its own image tag; a branch or commit is tagged by the commit it names now.
    const wanted = input.tag ?? input.ref!;
    const existing = input.tag ? await this.byTag(app.name, input.tag) : undefined;
    // a failed build has no image to keep: asking again builds it again, as --rebuild would
    const buildAgain = (row: ImageRow) => input.rebuild || row.status === "failed";
    if (existing && !buildAgain(existing)) return { image: toWire(existing), created: false };
    const sha = isFullSha(wanted) ? wanted : await this.refs.resolve(app, wanted, input.tag ? "tag" : "any");
    const tag = input.tag ?? sha.slice(0, 12);

    const { db, clock } = this.deps;
    return db.write(async () => {
      const row = await this.byTag(app.name, tag);
      if (row && (!buildAgain(row) || row.status === "pending" || row.status === "building")) return { image: toWire(row), created: false };
      const id = row?.id ?? newId("img");
      const { job } = await this.jobs.create({
        spec: jobSpec.parse({ kind: "build", app: app.name, source: { type: "git", url: app.url, ref: sha }, build: app.build, image: repository, version: tag }),
        target,
        dedupe: false,
      });
      const fields = { ref: wanted, sha, repository, status: "pending", error: null, digest: null, buildJobId: job.id, startedAt: null, finishedAt: null };
      if (row) await db.update(images).set({ ...fields, builds: row.builds + 1 }).where(eq(images.id, id));
      else await db.insert(images).values({ id, app: app.name, tag, createdAt: clock(), ...fields });
      this.deps.logger.info({ imageId: id, app: app.name, tag, jobId: job.id, rebuild: !!row }, "image build queued");
      return { image: toWire(await this.getRow(id)), created: true };
    });
  }

  async get(id: string): Promise<Image> {
    return toWire(await this.getRow(id));
  }

  async list(q: { app?: string; limit: number }): Promise<Image[]> {
    const where: SQL[] = [];
    if (q.app) where.push(eq(images.app, q.app));
    return (await this.deps.db
      .select()
      .from(images)
      .where(and(...where))
      .orderBy(desc(images.createdAt), desc(images.id))
      .limit(q.limit))
      .map(toWire);
  }

  /** Forgets the image; a build still queued or running is cancelled. The registry keeps its blobs. */
  async remove(id: string): Promise<Image> {
    const row = await this.getRow(id);
    if (row.buildJobId && (row.status === "pending" || row.status === "building")) await this.jobs.cancel(row.buildJobId);
    await this.deps.db.delete(images).where(eq(images.id, id));
    this.deps.logger.info({ imageId: id, app: row.app, tag: row.tag }, "image removed from the catalog");
    return toWire(row);
  }

  private async getRow(id: string): Promise<ImageRow> {
    const row = (await this.deps.db.select().from(images).where(eq(images.id, id)))[0];
    if (!row) throw notFound("image", id);
    return row;
  }

  private async byTag(app: string, tag: string): Promise<ImageRow | undefined> {
    return (await this.deps.db
      .select()
      .from(images)
      .where(and(eq(images.app, app), eq(images.tag, tag))))[0];
  }

  private appOf(name: string): AppDefinition {
    const app = this.deps.apps().byName(name);
    if (!app) throw new ApiError(404, "unknown_app", `no app '${name}' in ${this.deps.config.configPath}`);
    return app;
  }

  /** The consequence of a build job's change (drainer, `job.changed`): the image's status follows it. */
  async applyJobChange(change: JobChange): Promise<void> {
    // Every job change passes here: only builds can be an image's, and the lookup is prepared
    // once (building the query per event was a fifth of a claim+finish cycle, measured). A
    // deployment's build is never a catalog image's (create() queues its builds without one), so
    // the four changes of every deployment's build skip the read.
    if (change.kind !== "build" || change.deploymentId || KEEPS_IMAGE.has(change.transition)) return;
    const row = await this.byBuildJob(change.id);
    if (!row) return;
    const status = BUILD_STATUS[change.status] ?? "failed";
    if (status === row.status && status !== "success") return;
    const now = this.deps.clock();
    const set: Partial<ImageRow> = { status };
    if (status === "building") set.startedAt = row.startedAt ?? now;
    if (status === "success" || status === "failed") {
      const job = await this.jobs.getRow(change.id);
      const result = (job.result ?? {}) as Record<string, unknown>;
      set.startedAt = row.startedAt ?? job.startedAt ?? now;
      set.finishedAt = job.finishedAt ?? now;
      if (status === "success") {
        set.digest = typeof result.digest === "string" ? result.digest : null;
        set.sha = typeof result.sha === "string" ? result.sha : row.sha;
      } else set.error = job.error ?? change.status;
    }
    await this.deps.db
      .update(images)
      .set(set)
      .where(and(eq(images.id, row.id), eq(images.buildJobId, change.id)));
    this.deps.logger.info({ imageId: row.id, jobId: change.id, status }, "image status");
  }
}

/** A successful image of `app`, as a deployment runs it; a clear 4xx otherwise. */
export async function deployableImage(db: Db, id: string, app: string): Promise<{ image: string; sha: string | null; tag: string }> {
  const row = (await db.select().from(images).where(eq(images.id, id)))[0];
  if (!row) throw notFound("image", id);
  if (row.app !== app) throw new ApiError(422, "image_of_other_app", `image ${id} belongs to app '${row.app}', not '${app}'`);
  if (row.status !== "success") throw new ApiError(409, "image_not_built", `image ${id} is ${row.status}${row.error ? `: ${row.error}` : ""}`);
  return { image: pullRef(row) ?? `${row.repository}:${row.tag}`, sha: row.sha, tag: row.tag };
}

const pullRef = (r: ImageRow) => (r.digest ? `${r.repository}@${r.digest}` : null);

function toWire(r: ImageRow): Image {
  return {
    id: r.id,
    app: r.app,
    tag: r.tag,
    ref: r.ref,
    sha: r.sha,
    imageTag: `${r.repository}:${r.tag}`,
    digest: r.digest,
    pullRef: pullRef(r),
    status: r.status as Image["status"],
    error: r.error,
    buildJobId: r.buildJobId,
    builds: r.builds,
    createdAt: iso(r.createdAt)!,
    startedAt: iso(r.startedAt),
    finishedAt: iso(r.finishedAt),
  };
}
