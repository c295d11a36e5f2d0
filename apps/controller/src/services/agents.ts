import { type Agent, type ClaimedJob, type HeartbeatRequest, type HeartbeatResponse, PROTOCOL_VERSION, type RegisterRequest } from "@deploybot/protocol";
import { and, eq, inArray, isNull, lt, or, sql } from "drizzle-orm";
import { reusable } from "../db/reusable";
import { agents, jobs } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import { newId } from "../lib/ids";
import type { AppStateService } from "./appStates";
import type { AgentTokens } from "./auth";
import { type Deps, iso } from "./deps";
import type { JoinGrant } from "../middleware/auth";
import type { JoinTokens } from "./joinTokens";
import type { LeaseService } from "./leases";

type AgentRow = typeof agents.$inferSelect;

/** What a heartbeat reports of the host, as the JSON text stored (null: keep the stored value). */
type Reported = { containers: string; routes: string; appStatus: string | null; volumes: string | null };

/**
 * What an agent's own calls need of it: who it is and the facts its answers depend on. Not what
 * it reports (containers, routes, app status: JSON that grows with the host), which
 * `SELECT *` decoded on every call.
 */
export type AgentCaller = Pick<AgentRow, "id" | "hostname" | "labels" | "version" | "capabilities" | "tokenVersion" | "revoked">;

type RawCaller = { id: string; hostname: string; labels: string; version: string; capabilities: string; token_version: number; revoked: number };

export class AgentService {
  // Heartbeats are the hottest path: their queries are prepared once where the engine allows
  // (db/reusable.ts), not rebuilt per call.
  private readonly byId: (id: string) => Promise<AgentCaller | undefined>;
  private readonly touchQuery;
  private readonly markOnline;
  /**
   * Liveness reported since the last flush. Heartbeats only record it here and a timer writes
   * all of it in one transaction a second: an idle fleet's heartbeats then cost no write at
   * all. A crash loses at most a second of "last seen", which leases (re-armed at start) cover.
   */
  private readonly liveness = new Map<string, { at: number; state: string; containers: string; routes: string; appStatus: string | null; volumes: string | null }>();
  /** the flush running now (flushes run one at a time) */
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: Deps,
    private readonly tokens: AgentTokens,
    private readonly leases: LeaseService,
    private readonly appStates: AppStateService,
    private readonly joinTokens?: Pick<JoinTokens, "consume">,
  ) {
    const { db } = deps;
    const p = sql.placeholder;
    // Every agent call reads the identity columns only: drizzle's `SELECT *` with its row mapping
    // was 11% of an empty heartbeat's CPU (profile of the controller under load). On SQLite a raw
    // statement: the drizzle prepared query took 1.19x its time per call (median of 10 rounds of
    // 50,000 lookups in process, order alternating; about 3 µs of 20).
    if (db.engine === "sqlite") {
      const raw = db.$client.prepare<[string], RawCaller>("SELECT id, hostname, labels, version, capabilities, token_version, revoked FROM agents WHERE id = ?");
      this.byId = async (id: string): Promise<AgentCaller | undefined> => {
        const r = raw.get(id);
        return (
          r && {
            id: r.id,
            hostname: r.hostname,
            labels: JSON.parse(r.labels) as string[],
            version: r.version,
            capabilities: JSON.parse(r.capabilities) as Record<string, unknown>,
            tokenVersion: r.token_version,
            revoked: r.revoked === 1,
          }
        );
      };
    } else {
      // built per use there (db/reusable.ts): it runs on the open transaction's connection, if any
      const query = reusable(db, () =>
        db
          .select({
            id: agents.id,
            hostname: agents.hostname,
            labels: agents.labels,
            version: agents.version,
            capabilities: agents.capabilities,
            tokenVersion: agents.tokenVersion,
            revoked: agents.revoked,
          })
          .from(agents)
          .where(eq(agents.id, p("id")))
          .prepare(),
      );
      this.byId = async (id: string): Promise<AgentCaller | undefined> => (await query().execute({ id }))[0];
    }
    // the reported JSON arrives as text already: passed through as is, not encoded again
    this.touchQuery = reusable(db, () =>
      db
        .update(agents)
        .set({
          lastHeartbeatAt: sql`${p("at")}`,
          state: sql`${p("state")}`,
          containers: sql`${p("containers")}`,
          routes: sql`${p("routes")}`,
          appStatus: sql`coalesce(${p("appStatus")}, ${agents.appStatus})`,
          volumes: sql`coalesce(${p("volumes")}, ${agents.volumes})`,
        })
        .where(eq(agents.id, p("id")))
        .prepare(),
    );
    this.markOnline = reusable(db, () =>
      db
        .update(agents)
        .set({ online: true })
        .where(and(eq(agents.id, p("id")), eq(agents.online, false), eq(agents.revoked, false)))
        .returning({ id: agents.id, hostname: agents.hostname })
        .prepare(),
    );
  }

  /** host.online when an agent that was offline (or new) is heard from; inside the transaction that records it. */
  private async cameOnline(id: string, first = false): Promise<void> {
    const [row] = await this.markOnline().execute({ id });
    if (row) await this.deps.outbox.append("host.online", { app: null, subject: row.id }, { id: row.id, hostname: row.hostname, ...(first ? { first } : {}) });
  }

  /**
   * host.offline for agents silent for three intervals (or revoked) that were online. Runs with
   * the reaper, after the liveness flush.
   */
  async markOffline(): Promise<void> {
    const silentSince = this.deps.clock() - this.intervalSeconds * 3 * 1000;
    await this.deps.db.write(async () => {
      const gone = await this.deps.db
        .update(agents)
        .set({ online: false })
        .where(and(eq(agents.online, true), or(eq(agents.revoked, true), isNull(agents.lastHeartbeatAt), lt(agents.lastHeartbeatAt, silentSince))))
        .returning({ id: agents.id, hostname: agents.hostname });
      for (const a of gone) {
        await this.deps.outbox.append("host.offline", { app: null, subject: a.id }, { id: a.id, hostname: a.hostname });
        this.deps.logger.warn({ agentId: a.id, hostname: a.hostname }, "host offline");
      }
    });
  }

  private get intervalSeconds() {
    return this.deps.config.heartbeatIntervalSeconds;
  }

  toWire(row: AgentRow, currentJobId: string | null = null): Agent {
    const silentFor = row.lastHeartbeatAt == null ? Number.POSITIVE_INFINITY : this.deps.clock() - row.lastHeartbeatAt;
    return {
      id: row.id,
      hostname: row.hostname,
      labels: row.labels,
      version: row.version,
      capabilities: row.capabilities,
      state: row.state as Agent["state"],
      online: !row.revoked && silentFor <= this.intervalSeconds * 3 * 1000,
      lastHeartbeatAt: iso(row.lastHeartbeatAt),
      registeredAt: iso(row.registeredAt)!,
      containers: row.containers,
      appStatus: row.appStatus,
      volumes: row.volumes,
      currentJobId,
    };
  }

  /**
   * The caller's credential is checked by the route: `self` is the agent whose own token was
   * presented, else `grant` is the join token used. Host identity: the shared join token and an
   * any-host join token register NEW host names only; a host that exists is re-registered by its
   * own agent (its token) or through a join token an admin created for that host name. Anything
   * else would let one leaked join token take over a host and the jobs and secrets queued for it.
   * Re-registering keeps the id and bumps the token version, so the previous token dies at once.
   */
  async register(req: RegisterRequest, auth: { self?: AgentCaller; grant?: JoinGrant }) {
    const { db, clock, logger } = this.deps;
    const now = clock();
    const existing = (await db.select().from(agents).where(eq(agents.hostname, req.hostname)))[0];
    if (existing?.revoked) throw new ApiError(403, "agent_revoked", `host '${req.hostname}' was revoked; delete it before it registers again`);
    const grant = auth.grant;
    if (auth.self) {
      if (auth.self.hostname !== req.hostname) throw new ApiError(403, "forbidden", "an agent token may only re-register its own host");
    } else if (grant?.kind === "joinToken" && grant.hostname !== null) {
      if (grant.hostname !== req.hostname) throw new ApiError(403, "forbidden", `this join token registers host '${grant.hostname}' only`);
    } else if (existing) {
      throw new ApiError(
        409,
        "host_exists",
        `host '${req.hostname}' is already registered; its agent re-registers with its own token. To replace it, remove it first (deploybot agents remove ${req.hostname}) or create a join token for it (deploybot agents join-token --host ${req.hostname})`,
      );
    }
    const fields = { labels: req.labels, version: req.version, capabilities: req.capabilities, lastHeartbeatAt: now, state: "idle" };
    if (grant?.kind === "joinToken") await this.joinTokens?.consume(grant.id, req.hostname);
    const row = existing
      ? (await db
          .update(agents)
          // past a newer token the agent presented (a restored backup), so that one dies too
          .set({ ...fields, tokenVersion: auth.self && auth.self.tokenVersion > existing.tokenVersion ? auth.self.tokenVersion + 1 : sql`${agents.tokenVersion} + 1` })
          .where(eq(agents.id, existing.id))
          .returning())[0]
      : (await db
          .insert(agents)
          .values({ id: newId("agt"), hostname: req.hostname, registeredAt: now, ...fields })
          .onConflictDoNothing()
          .returning())[0];
    // two first registrations of one name at once: the database lets exactly one of them in
    if (!row) throw new ApiError(409, "host_exists", `host '${req.hostname}' was registered a moment ago by another agent`);
    await this.deps.db.write(async () => {
      await this.cameOnline(row.id, !existing);
      if (existing && existing.version !== req.version) {
        await this.deps.outbox.append("agent.updated", { app: null, subject: row.id }, { id: row.id, hostname: row.hostname, from: existing.version, to: req.version });
      }
    });
    // What the agent holds after a restart is the truth: anything else it had is handed back or failed.
    await this.leases.reconcile(row.id, req.heldJobIds);
    logger.info({ agentId: row.id, hostname: row.hostname, reregistered: !!existing }, "agent registered");
    return {
      agent: this.toWire(row),
      token: await this.tokens.sign(row.id, row.tokenVersion),
      heartbeatIntervalSeconds: this.intervalSeconds,
      protocolVersion: PROTOCOL_VERSION,
    };
  }

  /**
   * Registration with the agent's own token: its current version, or a newer one. Versions only
   * grow, so a newer token signed with our key means the database went back in time — a backup
   * restored from before the agent last registered (a restart, a self-update). Refusing it would
   * lock the host out for good: the shared join token may not take over a host that exists. The
   * answer carries the presented version, which register() moves past.
   */
  async authenticateToRegister(agentId: string, tokenVersion: number): Promise<AgentCaller> {
    const row = await this.byId(agentId);
    if (!row || row.revoked || tokenVersion < row.tokenVersion) {
      throw new ApiError(401, "unauthorized", "agent token was rotated or revoked; register again");
    }
    if (tokenVersion > row.tokenVersion) {
      this.deps.logger.warn(
        { agentId, hostname: row.hostname, presented: tokenVersion, stored: row.tokenVersion },
        "agent token newer than the database (restored from a backup?): the agent re-registers with it",
      );
    }
    return { ...row, tokenVersion };
  }

  /**
   * The token is valid only for the current version of a live agent. Read from the database on
   * every call (one primary-key probe on a prepared statement): a token rotated or revoked by
   * another writer (a second controller, an admin tool) stops working at once.
   */
  async authenticate(agentId: string, tokenVersion: number): Promise<AgentCaller> {
    const row = await this.byId(agentId);
    if (!row || row.revoked || row.tokenVersion !== tokenVersion) {
      throw new ApiError(401, "unauthorized", "agent token was rotated or revoked; register again");
    }
    return row;
  }

  /**
   * Records liveness, reconciles held jobs, and hands out at most one job to an idle agent.
   * With `waitSeconds`, an idle agent that got nothing waits until a job for it is queued.
   */
  async heartbeat(
    agent: AgentCaller,
    body: HeartbeatRequest,
    waitSeconds: number,
    signal?: () => AbortSignal,
    /**
     * The job the heartbeat's `finished` report already claimed, in the finish's transaction
     * (finishInHeartbeat; null: it claimed nothing): the first reconcile/claim round is then
     * skipped — the agent holds nothing (checked in that transaction), so reconcile has nothing
     * to do, and it would hand back the job just claimed, which the agent does not hold yet.
     */
    claimed?: ClaimedJob | null,
  ): Promise<HeartbeatResponse> {
    const { clock, notifier } = this.deps;
    const deadline = clock() + waitSeconds * 1000;
    // Methods, not closures made per call: the controller runs under tsx, which wraps every named
    // closure in a __name() call as it is made (touch, answer and round were 2% of the in-process
    // heartbeat row's profile samples, __name alone 1.9%). Measured against the closures, same
    // run, 5 passes of 10,000 jobs, 1 agent: 7,813 vs 7,180 heartbeat cycles per CPU second
    // (1.09x), 0.97x by wall — within this machine's noise either way.
    const reported: Reported = {
      containers: JSON.stringify(body.containers),
      routes: JSON.stringify(body.routes ?? []),
      appStatus: body.appStatus ? JSON.stringify(body.appStatus) : null,
      // absent (an agent from before volumes): the stored list stays as it was
      volumes: body.volumes ? JSON.stringify(body.volumes) : null,
    };
    this.touch(agent.id, body.status, reported);
    const appEventsAcked = await this.appStates.recordEvents(agent, body.appEvents);
    let { cancelJobIds, job } = claimed === undefined ? await this.round(agent, body) : { cancelJobIds: [] as string[], job: claimed };
    for (;;) {
      const remaining = deadline - clock();
      if (job || cancelJobIds.length > 0 || remaining <= 0 || (waitSeconds > 0 && signal?.().aborted)) {
        if (waitSeconds > 0) this.touch(agent.id, body.status, reported);
        // computed as the answer leaves: a long-poll may outlast a change of the host's state
        const desired = await this.appStates.forAgent(agent.hostname, body.desiredVersion);
        return {
          acknowledged: true,
          job,
          cancelJobIds,
          heartbeatIntervalSeconds: this.intervalSeconds,
          protocolVersion: PROTOCOL_VERSION,
          ...(desired ? { desired } : {}),
          ...(appEventsAcked !== undefined ? { appEventsAcked } : {}),
        };
      }
      // The agent waiting here is alive: its liveness is renewed every interval. A long-poll
      // longer than the lease (agents wait 25 s; DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS=3 makes a 9 s
      // lease) would otherwise read as a silent host: "host offline" and a host.offline event in
      // every poll, online again at its answer. A slice that merely ran out looks at nothing else.
      const slice = Math.min(remaining, this.intervalSeconds * 1000);
      const woken = await notifier.wait({ agentId: agent.id, hostname: agent.hostname, labels: agent.labels }, slice, signal?.());
      if (!woken && slice < remaining && !signal?.().aborted) {
        this.touch(agent.id, body.status, reported);
        continue;
      }
      ({ cancelJobIds, job } = await this.round(agent, body));
    }
  }

  /** Liveness, kept until the next flush; a heartbeat without appStatus/volumes must not drop what an earlier one, not yet flushed, reported. */
  private touch(id: string, state: string, r: Reported): void {
    const pending = this.liveness.get(id);
    this.liveness.set(id, { at: this.deps.clock(), state, containers: r.containers, routes: r.routes, appStatus: r.appStatus ?? pending?.appStatus ?? null, volumes: r.volumes ?? pending?.volumes ?? null });
  }

  /**
   * Reconcile, then a claim for an idle agent holding nothing. No transaction: an idle heartbeat
   * only reads, and every write here is a single guarded statement. After reconcile, an agent
   * that holds nothing has no active job here either.
   */
  private async round(agent: AgentCaller, body: HeartbeatRequest): Promise<{ cancelJobIds: string[]; job: ClaimedJob | null }> {
    const cancelJobIds = await this.leases.reconcile(agent.id, body.heldJobIds);
    const mayClaim = body.status === "idle" && body.heldJobIds.length === 0;
    return { cancelJobIds, job: mayClaim ? await this.leases.claimNextJob(agent) : null };
  }

  /** Writes the liveness heartbeats reported since the last flush. */
  flushLiveness(): Promise<void> {
    // one flush at a time (the timer, the reaper, a listing and the stop may ask together)
    const run = this.flushing.then(() => this.flushNow());
    this.flushing = run.catch(() => {});
    return run;
  }

  private async flushNow(): Promise<void> {
    if (this.liveness.size === 0) return;
    // In id order, every row before any outbox append: transactions that write several agents'
    // rows (another controller's flush, on PostgreSQL) then lock them in the same order, and none
    // waits for a row while holding the outbox lock (which every appender waits for) — no deadlock.
    const entries = [...this.liveness].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    this.liveness.clear();
    try {
      await this.deps.db.write(async () => {
        for (const [id, l] of entries) {
          await this.touchQuery().execute({ id, at: l.at, state: l.state, containers: l.containers, routes: l.routes, appStatus: l.appStatus, volumes: l.volumes });
        }
        for (const [id] of entries) await this.cameOnline(id);
      });
    } catch (err) {
      // written next time, unless a newer heartbeat of the agent came meanwhile
      for (const [id, l] of entries) if (!this.liveness.has(id)) this.liveness.set(id, l);
      throw err;
    }
  }

  async list(): Promise<Agent[]> {
    await this.flushLiveness();
    const rows = await this.deps.db.select().from(agents).orderBy(agents.hostname);
    const held = await this.deps.db
      .select({ id: jobs.id, agentId: jobs.agentId })
      .from(jobs)
      .where(inArray(jobs.status, ["assigned", "running"]));
    return rows.map((r) => this.toWire(r, held.find((h) => h.agentId === r.id)?.id ?? null));
  }

  /** Revoking bumps the token version (the current token dies) and refuses re-registration. */
  async revoke(hostnameOrId: string): Promise<Agent> {
    const row = (await this.deps.db
      .update(agents)
      .set({ revoked: true, tokenVersion: sql`${agents.tokenVersion} + 1` })
      .where(sql`${agents.hostname} = ${hostnameOrId} OR ${agents.id} = ${hostnameOrId}`)
      .returning())[0];
    if (!row) throw notFound("host", hostnameOrId);
    this.deps.logger.warn({ agentId: row.id, hostname: row.hostname }, "agent revoked");
    return this.toWire(row);
  }

  async remove(hostnameOrId: string): Promise<void> {
    const row = (await this.deps.db.select().from(agents).where(sql`${agents.hostname} = ${hostnameOrId} OR ${agents.id} = ${hostnameOrId}`))[0];
    if (!row) throw notFound("host", hostnameOrId);
    if (await this.leases.hasActiveJob(row.id)) throw new ApiError(409, "agent_busy", `host '${row.hostname}' holds a job; cancel it first`);
    await this.deps.db.update(jobs).set({ agentId: null }).where(and(eq(jobs.agentId, row.id)));
    await this.deps.db.delete(agents).where(eq(agents.id, row.id));
  }
}
