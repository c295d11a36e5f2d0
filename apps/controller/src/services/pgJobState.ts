import { randomUUID } from "node:crypto";
import { jobKinds } from "@deploybot/protocol";
import { getTableColumns } from "drizzle-orm";
import type { Logger } from "pino";
import type postgres from "postgres";
import { LOCKS, OUTBOX_CHANNEL, type PgSql } from "../db/pg";
import { type DerivedTable, jobs as pgJobs } from "../db/pgSchema";
import { type JobFields, type JobRow, LEGACY_JOB_KINDS_SQL, type NewJob } from "./jobStore";
import { canonicalLabels, type ClaimingAgent, type JobState, type JobTransition, jobEvent, requeueStep, SUPERSEDED, waitingForCurrentAgent } from "./jobState";
import type { PgFacadeDb } from "../db/pgFacade";
import { DbJobLeases, type FinishedAndClaimed, type FinishReport, type JobLeases, type JobTransitions } from "./jobTransitions";

/** A connection inside a transaction, or the pool for single statements. */
type Tx = postgres.TransactionSql | PgSql;
type Raw = Record<string, unknown>;

export { OUTBOX_CHANNEL };

const camel = (name: string) => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** the jobs table's jsonb columns, by their SQL names */
const JOB_JSON = new Set(Object.values(getTableColumns(pgJobs)).filter((c) => c.columnType === "PgJsonb").map((c) => c.name));

/**
 * A jobs row as postgres.js returns it (snake_case; bool and int8 decoded) in drizzle's shape.
 * jsonb arrives decoded from a plain pool, and as its JSON text from the services' pool
 * (openPgDb hands JSON back as text for the SQLite column codecs): both give objects here.
 */
export function fromPgRow<T>(raw: Raw): T {
  const row: Raw = {};
  for (const key of Object.keys(raw)) {
    const value = raw[key];
    row[camel(key)] = typeof value === "string" && JOB_JSON.has(key) ? JSON.parse(value) : value;
  }
  return row as T;
}

/** drizzle-shaped values (camelCase keys) as a postgres.js insert object: column names, jsonb as JSON text. */
export function toPgColumns(table: DerivedTable, values: Record<string, unknown>): Record<string, unknown> {
  const columns = getTableColumns(table);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    const column = columns[key];
    if (!column || value === undefined) continue;
    out[column.name] = value !== null && column.columnType === "PgJsonb" ? JSON.stringify(value) : value;
  }
  return out;
}

/**
 * Appends an outbox row inside `tx`, as its last statement. Sequence ids do not commit in id
 * order across transactions, and every reader follows the outbox by id: the append first takes
 * the transaction-scoped outbox lock (held until COMMIT), so a row becomes visible only after
 * every row with a smaller id. `pg_notify` in the same statement reaches the listeners of every
 * controller at commit, and never for a rolled-back change.
 */
export async function appendOutbox(
  tx: Tx,
  now: number,
  type: string,
  about: { app: string | null; subject: string | null },
  data: unknown,
): Promise<number> {
  const [row] = await tx<{ id: number }[]>`
    WITH turn AS (SELECT pg_advisory_xact_lock(${LOCKS.outbox}))
    INSERT INTO outbox (type, app, subject, data, created_at)
    SELECT ${type}, ${about.app}, ${about.subject}, ${JSON.stringify(data)}, ${now} FROM turn
    RETURNING id, pg_notify(${OUTBOX_CHANNEL}, id::text)`;
  return row!.id;
}

/** A job an agent without the volumes capability must not run: it would ignore its volumes, or not know its kind (LEGACY_JOB_KINDS). */
const needsCurrentAgent = (tx: Tx) => tx`(
  coalesce(jsonb_array_length(spec->'run'->'volumes'), 0) > 0
  OR coalesce((spec->'run'->>'stop_first')::boolean, false)
  OR coalesce((spec->>'purgeVolumes')::boolean, false)
  OR kind NOT IN ${tx.unsafe(LEGACY_JOB_KINDS_SQL)})`;

/**
 * jobEvent() (jobState.ts) in SQL, over the changed row `c`: the same fields, for transitions
 * written as one statement. The contract test compares the two on every transition.
 */
function jobEventSql(tx: Tx, transition: JobTransition) {
  return tx`json_build_object(
    'id', c.id, 'kind', c.kind, 'app', c.app, 'status', c.status, 'transition', ${transition}::text,
    'host', c.target_host, 'labels', c.target_labels, 'agentId', c.agent_id, 'deploymentId', c.deployment_id,
    'attempts', c.attempts, 'cancelRequested', c.cancel_requested, 'error', c.error, 'expectedLogLines', c.expected_log_lines,
    'createdAtMs', c.created_at, 'assignedAtMs', c.assigned_at, 'startedAtMs', c.started_at, 'finishedAtMs', c.finished_at)::text`;
}

/**
 * Job state on PostgreSQL, for several controllers on one database: the same transitions as
 * JobState (jobState.ts), each one transaction with its outbox row. A claim is one statement
 * under `FOR UPDATE SKIP LOCKED`: claimers never wait on each other's candidate row and never take
 * the same job. Label targets match in the database (`target_labels <@ agent labels`), so nothing
 * about the queue lives in this process.
 */
export class PgJobState implements JobTransitions {
  /**
   * `open`: the transaction of the caller's `deps.db.write` body, if one runs now (pgFacade's
   * `$pgOpen`). A transition called inside it is part of it: a deployment queues its jobs in the
   * transaction that inserts the deployment (the jobs' foreign key needs that row), and they
   * commit or roll back together. Outside one, each transition is a transaction of its own.
   */
  constructor(
    private readonly sql: PgSql,
    private readonly deps: { clock: () => number; logger: Logger },
    private readonly open: () => postgres.TransactionSql | undefined = () => undefined,
  ) {}

  /** where a statement runs: the caller's transaction, else the pool (autocommit) */
  private get db(): Tx {
    return this.open() ?? this.sql;
  }

  /** a transaction of its own, or the caller's */
  private begin<T>(body: (tx: Tx) => Promise<T>): Promise<T> {
    const open = this.open();
    return open ? body(open) : (this.sql.begin(body) as Promise<T>);
  }

  private async emit(tx: Tx, row: JobRow, transition: JobTransition): Promise<JobRow> {
    await appendOutbox(tx, this.deps.clock(), "job.changed", { app: row.app, subject: row.id }, jobEvent(row, transition));
    return row;
  }

  /**
   * A guarded UPDATE ... RETURNING * and the `job.changed` rows of what it changed, in ONE
   * statement (autocommit unless `tx` is a transaction): a claim or a finish is one round trip
   * instead of four (BEGIN, UPDATE, INSERT, COMMIT) — on a loaded 2-core machine each round trip
   * costs two context switches. The event is built by JOB_EVENT_SQL, the same fields as
   * jobEvent() (a test compares them on both engines); the outbox lock is taken only when a row
   * changed, before the row's id is drawn (see appendOutbox).
   */
  private async changed(tx: Tx, update: postgres.PendingQuery<postgres.Row[]>, transition: JobTransition): Promise<JobRow[]> {
    const rows = await tx<Raw[]>`
      WITH changed AS (${update}),
      events AS (
        INSERT INTO outbox (type, app, subject, data, created_at)
        SELECT 'job.changed', c.app, c.id, ${jobEventSql(tx, transition)}, ${this.deps.clock()}
        FROM changed c, LATERAL (SELECT pg_advisory_xact_lock(${LOCKS.outbox})) turn
        ORDER BY c.id
        RETURNING pg_notify(${OUTBOX_CHANNEL}, id::text))
      SELECT changed.*, (SELECT count(*) FROM events) AS events FROM changed`;
    return rows.map((r) => {
      delete r.events;
      return fromPgRow<JobRow>(r);
    });
  }

  async byId(jobId: string): Promise<JobRow | undefined> {
    const [raw] = await this.db<Raw[]>`SELECT * FROM jobs WHERE id = ${jobId}`;
    return raw && fromPgRow<JobRow>(raw);
  }

  async queue(values: NewJob, dedupeKey: string | null, first?: () => void): Promise<{ row: JobRow; created: boolean }> {
    const labels = values.targetLabels ? canonicalLabels(values.targetLabels) : values.targetLabels;
    return this.begin(async (tx): Promise<{ row: JobRow; created: boolean }> => {
      first?.();
      if (dedupeKey) {
        // two controllers queueing the same key take turns: the second finds the first's job
        await tx`SELECT pg_advisory_xact_lock(hashtextextended(${dedupeKey}, 0))`;
        const [existing] = await tx<Raw[]>`
          SELECT * FROM jobs WHERE dedupe_key = ${dedupeKey} AND status IN ('pending', 'assigned', 'running') LIMIT 1`;
        if (existing) return { row: fromPgRow<JobRow>(existing), created: false };
      }
      const insert = toPgColumns(pgJobs, { ...values, targetLabels: labels, status: "pending", dedupeKey });
      const [raw] = await tx<Raw[]>`INSERT INTO jobs ${tx(insert)} RETURNING *`;
      return { row: await this.emit(tx, fromPgRow<JobRow>(raw!), "queued"), created: true };
    }) as Promise<{ row: JobRow; created: boolean }>;
  }

  /**
   * pending -> assigned: one statement takes the oldest matching pending job that no other
   * claimer has locked, with its event. On an empty queue (most heartbeats) it writes nothing.
   */
  async claim(agent: ClaimingAgent, leaseMs: number): Promise<JobRow | null> {
    const labels = JSON.stringify(canonicalLabels(agent.labels));
    const now = this.deps.clock();
    const leaseId = `lse_${randomUUID()}`;
    // an agent from before volumes would ignore them (see the SQLite probes in jobStore.ts)
    const withoutVolumes = agent.capabilities?.volumes !== true;
    const [row] = await this.changed(
      this.db,
      this.db`
        UPDATE jobs SET status = 'assigned', agent_id = ${agent.id}, lease_id = ${leaseId},
          lease_expires_at = ${now + leaseMs}, assigned_at = ${now}, attempts = attempts + 1, error = NULL
        WHERE id = (
          SELECT id FROM jobs
          WHERE status = 'pending' AND (target_host = ${agent.hostname} OR target_labels <@ ${labels}::jsonb)
            AND (${withoutVolumes}::boolean = false OR NOT ${needsCurrentAgent(this.db)})
          ORDER BY id LIMIT 1
          FOR UPDATE SKIP LOCKED)
        AND status = 'pending'
        RETURNING *`,
      "claimed",
    );
    if (row) this.deps.logger.info({ jobId: row.id, agentId: agent.id, attempt: row.attempts }, "job assigned");
    if (withoutVolumes) await this.noteHeldBack(agent, labels, row?.id ?? null);
    return row ?? null;
  }

  /** when each agent's held-back jobs were last looked for: a throttle, not a record (the reason is on the jobs) */
  private readonly waitingScannedAt = new Map<string, number>();

  /**
   * Jobs this agent would take but must not (it would ignore their volumes, or not know their
   * kind) stay pending and say why, on the job (as on SQLite, JobState.noteHeldBack): only when
   * such a job is ahead of what the agent was handed, at most once a minute per agent and
   * controller, and a job already showing the reason is not written again — so several
   * controllers write it once.
   */
  private async noteHeldBack(agent: ClaimingAgent, labels: string, claimedId: string | null): Promise<void> {
    const now = this.deps.clock();
    if (now - (this.waitingScannedAt.get(agent.id) ?? Number.NEGATIVE_INFINITY) < 60_000) return;
    if (this.waitingScannedAt.size > 10_000) this.waitingScannedAt.clear();
    this.waitingScannedAt.set(agent.id, now);
    const matches = this.db`status = 'pending' AND (target_host = ${agent.hostname} OR target_labels <@ ${labels}::jsonb) AND ${needsCurrentAgent(this.db)}`;
    // the reason depends on the kind (a job kind the agent does not know, or volumes): one per kind
    const reasons = JSON.stringify(Object.fromEntries(jobKinds.map((kind) => [kind, waitingForCurrentAgent(agent, kind)])));
    const held = await this.db<{ id: string; kind: string }[]>`
      UPDATE jobs SET error = ${reasons}::jsonb->>kind
      WHERE ${matches} AND error IS DISTINCT FROM ${reasons}::jsonb->>kind
        AND EXISTS (SELECT 1 FROM jobs WHERE ${matches} AND (${claimedId}::text IS NULL OR id < ${claimedId}))
      RETURNING id, kind`;
    for (const { id, kind } of held) {
      this.deps.logger.warn({ jobId: id, kind, agentId: agent.id, hostname: agent.hostname, version: agent.version }, "job held back: the agent is too old for it");
    }
  }

  async start(jobId: string, leaseId: string, leaseMs: number): Promise<JobRow | undefined> {
    const now = this.deps.clock();
    const [row] = await this.changed(
      this.db,
      this.db`
        UPDATE jobs SET status = 'running', started_at = ${now}, lease_expires_at = ${now + leaseMs}
        WHERE id = ${jobId} AND lease_id = ${leaseId} AND status IN ('assigned', 'running')
        RETURNING *`,
      "started",
    );
    return row;
  }

  /** With `agentId`, a lease held by another agent changes nothing (undefined), like a stale one. */
  async finish(jobId: string, leaseId: string, report: FinishReport, agentId?: string): Promise<JobRow | undefined> {
    const now = this.deps.clock();
    const error = report.error ?? (report.status === "cancelled" ? "cancelled" : null);
    const result = report.result ? JSON.stringify(report.result) : null;
    const [row] = await this.changed(
      this.db,
      this.db`
        UPDATE jobs SET status = ${report.status}, finished_at = ${now}, lease_expires_at = NULL,
          result = ${result}::jsonb, error = ${error}, expected_log_lines = ${report.logLines ?? null},
          started_at = coalesce(started_at, ${now})
        WHERE id = ${jobId} AND lease_id = ${leaseId} AND status IN ('assigned', 'running')
          ${agentId === undefined ? this.db`` : this.db`AND agent_id = ${agentId}`}
        RETURNING *`,
      "finished",
    );
    return row;
  }

  /**
   * The pair of JobState.finishAndClaim as the two calls it was before: on PostgreSQL the finish
   * and the claim are one autocommit statement each (with their outbox rows), and a claim inside
   * the finish's transaction would hold the finished row's lock across a second round trip. Same
   * answers: the claim only after an accepted finish that leaves the agent holding nothing, and a
   * claim that throws leaves the finish committed.
   */
  async finishAndClaim(jobId: string, leaseId: string, report: FinishReport, agent: ClaimingAgent, leaseMs: number): Promise<FinishedAndClaimed> {
    const finished = await this.finish(jobId, leaseId, report, agent.id);
    if (!finished) return { finished, claimed: null, claimTried: false };
    const [holds] = await this.db`SELECT 1 FROM jobs WHERE agent_id = ${agent.id} AND status IN ('assigned', 'running') LIMIT 1`;
    if (holds) return { finished, claimed: null, claimTried: false };
    let claimed: JobRow | null = null;
    try {
      claimed = await this.claim(agent, leaseMs);
    } catch (err) {
      this.deps.logger.error({ err, jobId, agentId: agent.id }, "claiming the next job after a finish failed; the finish stands");
    }
    return { finished, claimed, claimTried: true };
  }

  /** `from` -> `status` with `fields`, guarded by status (and the lease when given), with its event. */
  private async move(
    tx: Tx,
    jobId: string,
    from: readonly string[],
    leaseId: string | null,
    status: string,
    fields: JobFields,
    transition: JobTransition,
  ): Promise<JobRow | undefined> {
    const set = toPgColumns(pgJobs, { ...fields, status });
    const [row] = await this.changed(
      tx,
      tx`
        UPDATE jobs SET ${tx(set)}
        WHERE id = ${jobId} AND status IN ${tx(from as string[])} ${leaseId === null ? tx`` : tx`AND lease_id = ${leaseId}`}
        RETURNING *`,
      transition,
    );
    return row;
  }

  private moveAlone(job: JobRow, from: readonly string[], status: string, fields: JobFields, transition: JobTransition) {
    return this.move(this.db, job.id, from, job.leaseId, status, fields, transition);
  }

  async requeue(job: JobRow, reason: string): Promise<JobRow | undefined> {
    const { status, fields, transition } = requeueStep(job, reason, this.deps.clock());
    const row = await this.moveAlone(job, ["assigned"], status, fields, transition);
    if (row) this.deps.logger.warn({ jobId: job.id, agentId: job.agentId, reason, attempts: job.attempts, status }, "job handed back");
    return row;
  }

  async failNotHeld(job: JobRow): Promise<JobRow | undefined> {
    return this.moveAlone(
      job,
      ["assigned", "running"],
      "failed",
      { error: "the agent no longer holds the job (it restarted or lost it)", finishedAt: this.deps.clock(), leaseExpiresAt: null },
      "failed",
    );
  }

  async lose(job: JobRow): Promise<JobRow | undefined> {
    return this.moveAlone(
      job,
      ["running"],
      "lost",
      { finishedAt: this.deps.clock(), leaseExpiresAt: null, error: "the agent stopped renewing its lease" },
      "lost",
    );
  }

  async cancel(jobId: string): Promise<JobRow | null> {
    return (await this.begin(async (tx) => {
      const [raw] = await tx<Raw[]>`SELECT * FROM jobs WHERE id = ${jobId} FOR UPDATE`;
      if (!raw) return null;
      const job = fromPgRow<JobRow>(raw);
      if (job.status === "pending") {
        const fields = { cancelRequested: true, finishedAt: this.deps.clock(), error: "cancelled before it started" };
        return (await this.move(tx, jobId, ["pending"], null, "cancelled", fields, "cancelled")) ?? job;
      }
      if ((job.status !== "assigned" && job.status !== "running") || job.cancelRequested) return job;
      return (await this.move(tx, jobId, [job.status], null, job.status, { cancelRequested: true }, "cancel_requested")) ?? job;
    })) as JobRow | null;
  }

  async supersede(jobId: string, byDeploymentId: string): Promise<JobRow | undefined> {
    const fields = { cancelRequested: true, finishedAt: this.deps.clock(), error: `${SUPERSEDED}${byDeploymentId}` };
    return this.move(this.db, jobId, ["pending"], null, "cancelled", fields, "superseded");
  }

  /** Expired leases (requeue or lost), execution timeouts and queue timeouts; run by one controller (reaper lock). */
  async sweep(): Promise<void> {
    const now = this.deps.clock();
    const expired = await this.db<Raw[]>`
      SELECT * FROM jobs WHERE status IN ('assigned', 'running') AND lease_expires_at IS NOT NULL AND lease_expires_at < ${now}`;
    for (const job of expired.map((r) => fromPgRow<JobRow>(r))) {
      if (job.status === "assigned") await this.requeue(job, "lease expired before the job started");
      else await this.lose(job);
    }
    const timedOut = [
      ...(await this.changed(
        this.db,
        this.db`
          UPDATE jobs SET status = 'timed_out', finished_at = ${now}, lease_expires_at = NULL,
            error = 'exceeded its timeout of ' || timeout_seconds || ' s'
          WHERE status = 'running' AND started_at + timeout_seconds * 1000 < ${now}
          RETURNING *`,
        "timed_out",
      )),
      ...(await this.changed(
        this.db,
        this.db`
          UPDATE jobs SET status = 'timed_out', finished_at = ${now},
            -- a pending job's error is why it waited (an agent without volumes): kept after the reason
            error = 'no agent claimed the job in time' || coalesce('; ' || error, '')
          WHERE status = 'pending' AND queue_deadline < ${now}
          RETURNING *`,
        "timed_out",
      )),
    ];
    for (const row of timedOut) this.deps.logger.warn({ jobId: row.id, error: row.error }, "job timed out");
  }
}

/**
 * The services' job state on PostgreSQL: PgJobState's transitions joined to the facade's
 * transactions, and the lease bookkeeping in drizzle builders (DbJobLeases), as one object like
 * SqliteJobTransitions.
 */
export class PgJobTransitions extends PgJobState implements JobLeases {
  private readonly book: DbJobLeases;

  constructor(db: PgFacadeDb, deps: { clock: () => number; logger: Logger }) {
    super(db.$pg, deps, () => db.$pgOpen());
    this.book = new DbJobLeases(db);
  }

  /** SQLite's synchronous job state (benches and tests of that engine) does not exist here. */
  get state(): JobState {
    throw new Error("the synchronous job state exists on SQLite only; this controller runs on PostgreSQL");
  }

  heldBy(agentId: string) {
    return this.book.heldBy(agentId);
  }
  renewLease(jobId: string, until: number) {
    return this.book.renewLease(jobId, until);
  }
  renewHeld(agentId: string, ids: readonly string[], until: number) {
    return this.book.renewHeld(agentId, ids, until);
  }
  states(ids: readonly string[]) {
    return this.book.states(ids);
  }
  rearmLeases(until: number) {
    return this.book.rearmLeases(until);
  }
}
