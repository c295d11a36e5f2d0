import type { AppEvent, DesiredApp, DesiredRunState, DesiredState, JobSpec, RunSpec } from "@deploybot/protocol";
import { and, desc, eq, max, sql } from "drizzle-orm";
import { reusable } from "../db/reusable";
import { watchRows } from "../db/watch";
import { appEvents, appStates } from "../db/schema";
import { notFound } from "../lib/errors";
import type { Deps } from "./deps";
import type { JobChange } from "./events";
import type { JobRow } from "./jobs";

type AppStateRow = typeof appStates.$inferSelect;
type AgentIdentity = { id: string; hostname: string };

/** Job kinds whose success changes what a host should run. `restart` changes nothing. */
const SETS_DESIRED = ["deploy", "stop", "start", "scale", "remove"];

/** A host's version is the max() of its rows: an insert, a delete, or an update of its host or version changes it. */
const HOST_VERSION_WATCH = { name: "app_states_host_version", table: "app_states", key: "host", columns: ["host", "version"] } as const;

/**
 * The desired state of every app on every host, and what agents report their reconcile loops
 * did. Writes happen when a job that changes what a host runs succeeds there (the agent has
 * already applied it locally); agents receive the host's state in a heartbeat answer only when
 * their cached version differs, so an unchanged state costs one indexed max() per heartbeat
 * (on SQLite not even that: the version is kept until app_states changes, see versionOf).
 */
export class AppStateService {
  private readonly hostVersion;
  /** SQLite: the same max() as a raw statement read at once (see versionOf) */
  private readonly hostVersionNow: ((host: string) => number | null) | undefined;
  /**
   * SQLite: each host's version as last read, until a statement writes one of the host's rows
   * (db/watch.ts: a temporary trigger on app_states drops the entry inside that statement,
   * whoever made it — `set` in the drainer's transaction, or any other statement). PostgreSQL:
   * none, several controllers write the table.
   */
  private readonly versions: Map<string, number> | undefined;
  private readonly inTransaction: () => boolean = () => true;

  constructor(
    private readonly deps: Deps,
    private readonly jobRow: (id: string) => Promise<JobRow>,
    private readonly secretsFor: (app: string, names: readonly string[], host: string) => Promise<Record<string, string>>,
  ) {
    // a heartbeat reads it: prepared once where the engine allows (db/reusable.ts)
    this.hostVersion = reusable(deps.db, () =>
      deps.db
        .select({ v: max(appStates.version) })
        .from(appStates)
        .where(eq(appStates.host, sql.placeholder("host")))
        .prepare(),
    );
    if (deps.db.engine === "sqlite") {
      const raw = deps.db.$client.prepare<[string], number | null>("SELECT max(version) FROM app_states WHERE host = ?").pluck();
      this.hostVersionNow = (host) => raw.get(host) ?? null;
      const versions = new Map<string, number>();
      this.inTransaction = watchRows(deps.db.$client, HOST_VERSION_WATCH, (host) => {
        if (typeof host === "string") versions.delete(host);
        else versions.clear();
      });
      this.versions = versions;
    }
  }

  async versionOf(host: string): Promise<number> {
    // Every heartbeat of a current agent (it sends desiredVersion) reads this. On SQLite a raw
    // statement read at once: the awaited drizzle prepared query was 7.5% of the in-process
    // heartbeat row's profile samples (1 agent; 5% with 64). Measured against the drizzle query
    // (pnpm bench:jobs, production path rows, same run, 5 passes): 1 agent 8,239 vs 7,274
    // heartbeat cycles per CPU second (1.13x; wall 1.10x), 64 agents 12,106 vs 10,346 (1.17x;
    // wall 1.21x). PostgreSQL keeps the drizzle query.
    // Then kept per host until app_states changes: that read, outside any transaction, took and
    // dropped the WAL read lock (fcntl calls) on every heartbeat, 6.7% of the production path's
    // profile samples (1 agent; 4.3% with 64). In process: 2.4-2.8 µs per read without writes
    // between them, 0.1-0.16 µs kept (200,000 calls, 64 hosts). Against the code before it
    // (pnpm bench:jobs, production path rows, same run, load 1.8-4.9), heartbeat cycles per CPU
    // second, 1 agent: 9,825 vs 9,021 (1.09x; 5 passes), 10,003 vs 7,947 (1.26x; 5), 9,280 vs
    // 8,550 (1.09x; 11); 64 agents: 14,105 vs 14,353 (0.98x), 12,406 vs 12,417 (1.00x), 14,173
    // vs 13,511 (1.05x) — the 64-agent gain is below the bench's spread.
    if (this.hostVersionNow) {
      const kept = this.versions!.get(host);
      if (kept !== undefined) return kept;
      const version = Number(this.hostVersionNow(host) ?? 0);
      // a value read inside a transaction, which may yet roll back, is never kept; the read is
      // synchronous, so no write can come between it and keeping it
      if (!this.inTransaction()) {
        // bounded: one entry per host; a full map starts over rather than growing
        if (this.versions!.size >= 50_000) this.versions!.clear();
        this.versions!.set(host, version);
      }
      return version;
    }
    const [row] = await this.hostVersion().execute({ host });
    return Number(row?.v ?? 0);
  }

  async rows(filter: { app?: string; host?: string } = {}): Promise<AppStateRow[]> {
    const where = [filter.app ? eq(appStates.app, filter.app) : undefined, filter.host ? eq(appStates.host, filter.host) : undefined];
    return await this.deps.db
      .select()
      .from(appStates)
      .where(and(...where))
      .orderBy(appStates.app, appStates.host);
  }

  async entry(app: string, host: string): Promise<AppStateRow | undefined> {
    return (await this.deps.db
      .select()
      .from(appStates)
      .where(and(eq(appStates.app, app), eq(appStates.host, host))))[0];
  }

  /**
   * The host's desired state for an agent that holds `agentVersion`, or undefined when it holds
   * the current one. A host the controller has no state for gets nothing: an agent keeps its
   * cache rather than remove every app because the controller's database was replaced.
   */
  async forAgent(host: string, agentVersion: number | undefined): Promise<DesiredState | undefined> {
    if (agentVersion === undefined) return undefined; // an agent from before desired state
    const version = await this.versionOf(host);
    if (version === 0 || version === agentVersion) return undefined;
    const apps: DesiredApp[] = [];
    for (const r of await this.rows({ host })) {
      const run = (r.run as RunSpec | null) ?? null;
      // rows seeded from old jobs may hold a run spec without defaults filled in
      const names = run?.secrets ?? [];
      const secretEnv = names.length > 0 ? await this.secretsFor(r.app, names, host) : undefined;
      apps.push({
        app: r.app,
        release: r.releaseId,
        image: r.image,
        run,
        replicas: r.replicas,
        route: (r.route as DesiredApp["route"]) ?? null,
        state: r.state as DesiredRunState,
        jobId: r.jobId,
        ...(secretEnv ? { secretEnv } : {}),
      });
    }
    return { version, apps };
  }

  /** Sets (part of) one app's desired state on one host, with a new version, in one statement. */
  async set(app: string, host: string, fields: Partial<Pick<AppStateRow, "releaseId" | "image" | "run" | "route" | "replicas" | "state" | "jobId">>): Promise<void> {
    const now = this.deps.clock();
    const nextVersion = sql`(SELECT coalesce(max(version), 0) + 1 FROM app_states)`;
    await this.deps.db
      .insert(appStates)
      .values({ app, host, ...fields, version: nextVersion, updatedAt: now })
      .onConflictDoUpdate({ target: [appStates.app, appStates.host], set: { ...fields, version: nextVersion, updatedAt: now } });
  }

  /**
   * The `desired-state` consequence of `job.changed` (a `db` one: it runs in the drainer's
   * transaction, and a repeat sets the same state again). Appends `app.desired`.
   */
  async applyJobChange(change: JobChange): Promise<void> {
    // The event names the kind: reading the job for every success (a build's too) was 47% of an
    // in-process claim+finish cycle of build jobs (pnpm bench:jobs profile).
    if (change.status !== "succeeded" || !change.host || !SETS_DESIRED.includes(change.kind)) return;
    const job = await this.jobRow(change.id);
    const spec = job.spec as JobSpec;
    const result = (job.result ?? {}) as Record<string, unknown>;
    const host = change.host;
    switch (job.kind) {
      case "deploy": {
        const image = typeof result.image === "string" ? result.image : spec.source?.type === "image" ? spec.source.image : null;
        const release = spec.release ?? (typeof result.release === "string" ? result.release : null);
        // a deploy runs apps.yaml's replicas; `deploybot scale` changes them until the next deploy
        const route = spec.domains && spec.domains.length > 0 && spec.proxy ? { domains: spec.domains, proxy: spec.proxy, tls: spec.tls ?? "auto", ...(spec.acme ? { acme: spec.acme } : {}) } : null;
        await this.set(job.app, host, {
          releaseId: release,
          image,
          run: (spec.run ?? null) as Record<string, unknown> | null,
          route,
          replicas: spec.replicas ?? 1,
          state: "running",
          jobId: job.id,
        });
        break;
      }
      case "stop":
        await this.set(job.app, host, { state: "stopped", jobId: job.id });
        break;
      case "start":
        await this.set(job.app, host, { state: "running", jobId: job.id });
        break;
      case "scale":
        await this.set(job.app, host, { replicas: spec.replicas ?? 1, state: "running", jobId: job.id });
        break;
      case "remove":
        await this.set(job.app, host, { state: "removed", jobId: job.id });
        break;
    }
    const now = (await this.entry(job.app, host))!;
    await this.deps.outbox.append(
      "app.desired",
      { app: job.app, subject: host },
      { host, release: now.releaseId, replicas: now.replicas, state: now.state, jobId: job.id, kind: job.kind },
    );
    this.deps.logger.info({ app: job.app, host, kind: job.kind, jobId: job.id }, "desired state changed");
  }

  /** Stores reported reconcile events (a resend is ignored); returns the highest seq now stored. */
  async recordEvents(agent: AgentIdentity, events: readonly AppEvent[] | undefined): Promise<number | undefined> {
    if (!events || events.length === 0) return undefined;
    // one transaction: an event is stored and streamed (outbox) together, a resent one neither
    await this.deps.db.write(async () => {
      for (const e of events) {
        const at = Date.parse(e.at);
        const stored = await this.deps.db
          .insert(appEvents)
          .values({ agentId: agent.id, seq: e.seq, host: agent.hostname, app: e.app, kind: e.kind, reason: e.reason, container: e.container ?? null, exitCode: e.exitCode ?? null, at: Number.isNaN(at) ? this.deps.clock() : at })
          .onConflictDoNothing()
          .returning({ id: appEvents.id });
        if (stored.length === 0) continue;
        await this.deps.outbox.append(
          "app.reconciled",
          { app: e.app, subject: agent.hostname },
          { host: agent.hostname, kind: e.kind, reason: e.reason, container: e.container ?? null, exitCode: e.exitCode ?? null, at: e.at },
        );
      }
    });
    this.deps.logger.info({ agentId: agent.id, events: events.map((e) => `${e.app} ${e.kind}: ${e.reason}`) }, "reconcile events");
    return Math.max(...events.map((e) => e.seq));
  }

  /** An app's events are asked for by name: one apps.yaml does not hold is a 404, as for its other routes. */
  async events(filter: { app?: string; host?: string; limit: number }) {
    if (filter.app !== undefined && !this.deps.apps().byName(filter.app)) throw notFound("app", filter.app);
    const where = [filter.app ? eq(appEvents.app, filter.app) : undefined, filter.host ? eq(appEvents.host, filter.host) : undefined];
    return (await this.deps.db
      .select()
      .from(appEvents)
      .where(and(...where))
      .orderBy(desc(appEvents.id))
      .limit(filter.limit))
      .map((e) => ({
        id: e.id,
        host: e.host,
        app: e.app,
        kind: e.kind,
        reason: e.reason,
        container: e.container,
        exitCode: e.exitCode,
        at: new Date(e.at).toISOString(),
      }));
  }
}
