import type { Release } from "@deploybot/protocol";
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

  list(appName: string): Release[] {
    this.appOf(appName);
    const current = this.deployedIds(appName)[0] ?? null;
    return this.deps.db
      .select()
      .from(releases)
      .where(eq(releases.app, appName))
      .orderBy(desc(releases.id))
      .all()
      .map((r) => releaseToWire(r, r.id === current));
  }

  current(appName: string): Release | null {
    const id = this.deployedIds(appName)[0];
    const row = id ? this.deps.db.select().from(releases).where(eq(releases.id, id)).get() : undefined;
    return row ? releaseToWire(row, true) : null;
  }

  /**
   * Every app's current release in two queries, for lists: `current()` per app costs two queries
   * each, and the dashboard's overview lists 200 apps.
   */
  currentByApp(): Map<string, Release> {
    const { db } = this.deps;
    const newestSucceeded = db
      .select({ id: max(deployments.id) })
      .from(deployments)
      .where(and(eq(deployments.status, "succeeded"), isNotNull(deployments.releaseId)))
      .groupBy(deployments.app);
    const releaseIds = db.select({ id: deployments.releaseId }).from(deployments).where(inArray(deployments.id, newestSucceeded));
    const rows = db.select().from(releases).where(inArray(releases.id, releaseIds)).all();
    return new Map(rows.map((r) => [r.app, releaseToWire(r, true)]));
  }

  /** Releases in the order they were last deployed successfully, newest first, without repeats. */
  deployedIds(appName: string): string[] {
    const rows = this.deps.db
      .select({ releaseId: deployments.releaseId })
      .from(deployments)
      .where(and(eq(deployments.app, appName), eq(deployments.status, "succeeded"), isNotNull(deployments.releaseId)))
      .orderBy(desc(deployments.id))
      .limit(200)
      .all();
    return [...new Set(rows.map((r) => r.releaseId!))];
  }

  pullableImage(r: ReleaseRow): string | null {
    if (r.digest && r.imageTag) return `${r.imageTag.replace(/:[^:/]+$/, "")}@${r.digest}`;
    return r.imageTag;
  }

  /** Images the hosts must keep: the current release and the one a rollback would bring back. */
  protectedImages(appName: string): string[] {
    const ids = this.deployedIds(appName).slice(0, 2);
    if (ids.length === 0) return [];
    const rows = this.deps.db.select().from(releases).where(inArray(releases.id, ids)).all();
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
