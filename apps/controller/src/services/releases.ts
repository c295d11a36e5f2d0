import { type Release, repositoryOf } from "@deploybot/protocol";
import { and, desc, eq, inArray, isNotNull, max } from "drizzle-orm";
import { deployments, releases } from "../db/schema";
import type { AppDefinition } from "./appsConfig";
import { type Deps, iso } from "./deps";

type ReleaseRow = typeof releases.$inferSelect;

/** What has been released and deployed: the current release, the rollback target, the images to keep. */
export class ReleaseCatalog {
  constructor(
    private readonly deps: Deps,
    private readonly appOf: (name: string) => AppDefinition,
  ) {}

  async list(appName: string): Promise<Release[]> {
    this.appOf(appName);
    const current = (await this.deployedIds(appName))[0] ?? null;
    return (await this.deps.db
      .select()
      .from(releases)
      .where(eq(releases.app, appName))
      .orderBy(desc(releases.id)))
      .map((r) => releaseToWire(r, r.id === current));
  }

  async current(appName: string): Promise<Release | null> {
    const id = (await this.deployedIds(appName))[0];
    const row = id ? (await this.deps.db.select().from(releases).where(eq(releases.id, id)))[0] : undefined;
    return row ? releaseToWire(row, true) : null;
  }

  /**
   * Every app's current release in two queries, for lists: `current()` per app costs two queries
   * each, and the dashboard's overview lists 200 apps.
   */
  async currentByApp(): Promise<Map<string, Release>> {
    const { db } = this.deps;
    const newestSucceeded = db
      .select({ id: max(deployments.id) })
      .from(deployments)
      .where(and(eq(deployments.status, "succeeded"), isNotNull(deployments.releaseId)))
      .groupBy(deployments.app);
    const releaseIds = db.select({ id: deployments.releaseId }).from(deployments).where(inArray(deployments.id, newestSucceeded));
    const rows = await db.select().from(releases).where(inArray(releases.id, releaseIds));
    return new Map(rows.map((r) => [r.app, releaseToWire(r, true)]));
  }

  /** Releases in the order they were last deployed successfully, newest first, without repeats. */
  async deployedIds(appName: string): Promise<string[]> {
    const rows = await this.deps.db
      .select({ releaseId: deployments.releaseId })
      .from(deployments)
      .where(and(eq(deployments.app, appName), eq(deployments.status, "succeeded"), isNotNull(deployments.releaseId)))
      .orderBy(desc(deployments.id))
      .limit(200);
    return [...new Set(rows.map((r) => r.releaseId!))];
  }

  /**
   * What a host pulls to run a release again (a run, a rollback): by digest when the release has
   * one. A release deployed from the images catalog (or `--image repo@sha256:...`) already
   * names the digest in its image.
   */
  pullableImage(r: ReleaseRow): string | null {
    if (r.digest && r.imageTag) return `${repositoryOf(r.imageTag)}@${r.digest}`;
    return r.imageTag;
  }

  /** Images the hosts must keep: the current release and the one a rollback would bring back. */
  async protectedImages(appName: string): Promise<string[]> {
    const ids = (await this.deployedIds(appName)).slice(0, 2);
    if (ids.length === 0) return [];
    const rows = await this.deps.db.select().from(releases).where(inArray(releases.id, ids));
    return rows.flatMap((r) => [r.imageTag, this.pullableImage(r)].filter((x): x is string => !!x));
  }
}

export function releaseToWire(r: ReleaseRow, current: boolean): Release {
  return {
    id: r.id,
    app: r.app,
    version: r.version,
    sha: r.sha,
    imageTag: r.imageTag,
    digest: r.digest,
    config: r.config,
    status: r.status as Release["status"],
    buildJobId: r.buildJobId,
    trigger: r.trigger,
    triggeredBy: r.triggeredBy,
    createdAt: iso(r.createdAt)!,
    builtAt: iso(r.builtAt),
    current,
  };
}
