import { Redactor } from "@deploybot/protocol/redact";
import { count, eq, max, sql } from "drizzle-orm";
import { reusable } from "../db/reusable";
import { jobs, secrets } from "../db/schema";
import type { Deps } from "./deps";
import type { SecretStore } from "./secrets";

/**
 * Defence in depth: whatever an agent sends (log lines, a job's error and result) is redacted
 * again before it is stored, with every secret value of the job's app, the registry password and
 * the join token. An agent that redacts nothing (an old version, a bug) still leaks nothing here.
 */
export class IngestRedaction {
  /** per app: the redactor and the secrets' state it was built from (count and newest change) */
  private readonly byApp = new Map<string, { stamp: string; redactor: Redactor }>();
  private readonly stampOf;
  private readonly appOfJob;

  constructor(
    private readonly deps: Deps,
    private readonly store: Pick<SecretStore, "allValues">,
  ) {
    // The stamp comes from the database, so a secret set by another writer is picked up too.
    // read for every log batch: prepared once where the engine allows (db/reusable.ts)
    this.stampOf = reusable(deps.db, () =>
      deps.db
        .select({ n: count(), at: max(secrets.updatedAt) })
        .from(secrets)
        .where(eq(secrets.app, sql.placeholder("app")))
        .prepare(),
    );
    this.appOfJob = deps.db.select({ app: jobs.app }).from(jobs).where(eq(jobs.id, sql.placeholder("id"))).prepare();
  }

  async forApp(app: string): Promise<Redactor> {
    const [row] = await this.stampOf().execute({ app });
    const stamp = `${row?.n ?? 0}:${row?.at ?? 0}`;
    const cached = this.byApp.get(app);
    if (cached?.stamp === stamp) return cached.redactor;
    const { config } = this.deps;
    const redactor = new Redactor(config.joinToken, config.registry?.password, config.adminToken, ...Object.values(await this.store.allValues(app)));
    if (this.byApp.size > 10_000) this.byApp.clear();
    this.byApp.set(app, { stamp, redactor });
    return redactor;
  }

  async forJob(jobId: string): Promise<Redactor> {
    const [row] = await this.appOfJob.execute({ id: jobId });
    return row ? await this.forApp(row.app) : new Redactor(this.deps.config.joinToken, this.deps.config.registry?.password);
  }

  /** A status report with its error and result redacted. */
  async statusReport<T extends { error?: string; result?: Record<string, unknown> }>(jobId: string, body: T): Promise<T> {
    if (body.error === undefined && body.result === undefined) return body;
    const r = await this.forJob(jobId);
    return { ...body, ...(body.error !== undefined ? { error: r.redact(body.error) } : {}), ...(body.result ? { result: r.redactDeep(body.result) } : {}) };
  }
}
