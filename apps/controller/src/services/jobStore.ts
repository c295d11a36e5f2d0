import { and, eq, inArray, lt } from "drizzle-orm";
import type Database from "better-sqlite3";
import type { Db } from "../db/client";
import { jobs } from "../db/schema";

export type JobRow = typeof jobs.$inferSelect;
export type NewJob = typeof jobs.$inferInsert;

/** The columns a status write may set besides the status itself. */
export type JobFields = Partial<
  Pick<JobRow, "agentId" | "leaseId" | "leaseExpiresAt" | "assignedAt" | "finishedAt" | "error" | "cancelRequested">
>;

/**
 * Every statement that reads or writes a job's state, and nothing else: the job-state module
 * (jobState.ts) is its only user. One method is one statement (graphile-worker's "one SQL
 * operation per file" shape), so a second engine implements this interface and the transitions
 * stay as they are. Issue 15's PostgreSQL store would answer with promises (its driver is
 * asynchronous): the transitions are the only callers to adapt, `take` becomes
 * `FOR UPDATE SKIP LOCKED`, and `transaction` a client checked out for the duration.
 * SQLite keeps synchronous calls: a promise per statement costs about 1 µs, a claim+finish
 * cycle here about 80 µs, and a synchronous transaction cannot be interleaved by another request.
 */
export interface JobStore {
  /** Runs `fn` in one transaction (nested calls are savepoints). */
  transaction<T>(fn: () => T): T;
  insert(job: NewJob): JobRow;
  byId(id: string): JobRow | undefined;
  activeByDedupeKey(key: string): JobRow | undefined;
  heldBy(agentId: string): JobRow[];
  /**
   * The oldest pending job aimed at this host, or carrying exactly this label set (canonical
   * JSON). `withoutVolumes`: only jobs an agent without the `volumes` capability may run.
   */
  oldestPendingForHost(host: string, withoutVolumes?: boolean): string | undefined;
  oldestPendingForLabels(labelSet: string, withoutVolumes?: boolean): string | undefined;
  /** Pending jobs for this host or these label sets that an agent without the `volumes` capability must not get. */
  pendingNeedingCurrentAgent(host: string, labelSets: readonly string[]): Array<{ id: string; kind: string }>;
  pendingLabelSets(): string[];
  /** pending -> assigned, compare-and-swap on the status. */
  take(id: string, agentId: string, leaseId: string, leaseExpiresAt: number, now: number): JobRow | undefined;
  /** assigned|running -> running under this lease. */
  start(id: string, leaseId: string, now: number, leaseUntil: number): JobRow | undefined;
  /** assigned|running -> a final status under this lease; with `agentId`, only while that agent holds it. */
  finish(
    id: string,
    leaseId: string,
    f: { status: string; now: number; result: string | null; error: string | null; expectedLogLines: number | null; agentId: string | null },
  ): JobRow | undefined;
  /** `from` -> `status` (with `fields`), guarded by the lease when one is given. */
  move(id: string, from: readonly string[], leaseId: string | null, status: string, fields: JobFields): JobRow | undefined;
  /** Sets cancel_requested on a held job. */
  requestCancel(id: string): JobRow | undefined;
  expiredLeases(now: number): JobRow[];
  timeOutRunning(now: number): JobRow[];
  /** pending -> timed_out for the jobs whose queue deadline is before `now`. */
  timeOutQueued(now: number): JobRow[];
  /** The earliest queue deadline of a pending job; null when none is pending. */
  earliestQueueDeadline(): number | null;
  renewLease(id: string, until: number): void;
  renewHeld(agentId: string, ids: readonly string[], until: number): void;
  states(ids: readonly string[]): Array<Pick<JobRow, "id" | "status" | "agentId" | "cancelRequested">>;
  rearmLeases(until: number): number;
}

const HELD = ["assigned", "running"];

/**
 * The job kinds agents knew before the reconcile loop brought `start` and `scale`. Such an agent
 * fails those at once ("this agent does not know job kind 'start'"). It registers without the
 * `volumes` capability, which came later the same day (agent 0.1.0 throughout, no version to
 * tell them apart), so an agent without it is not handed a job of another kind either.
 */
export const LEGACY_JOB_KINDS: readonly string[] = ["deploy", "build", "run", "stop", "restart", "remove"];
/** The same as an SQL list, written into the statements of both engines (constants, no parameters) */
export const LEGACY_JOB_KINDS_SQL = `(${LEGACY_JOB_KINDS.map((k) => `'${k}'`).join(", ")})`;

/**
 * A job an agent without the `volumes` capability would run wrong (jobs.spec is JSON text): it
 * would ignore its volumes, or not know its kind.
 */
const NEEDS_CURRENT_AGENT = `(coalesce(json_array_length(spec, '$.run.volumes'), 0) > 0 OR coalesce(json_extract(spec, '$.run.stop_first'), 0) <> 0 OR coalesce(json_extract(spec, '$.purgeVolumes'), 0) <> 0 OR kind NOT IN ${LEGACY_JOB_KINDS_SQL})`;

/** A `jobs` row as a raw statement returns it: the values in the statement's column order. */
type RawJob = unknown[];

/** Where each column of a `jobs` row sits in a raw statement's result (its `columns()`). */
type Positions = Record<(typeof JOB_COLUMNS)[number], number>;

const JOB_COLUMNS = [
  "id",
  "deployment_id",
  "kind",
  "app",
  "target_host",
  "target_labels",
  "spec",
  "status",
  "agent_id",
  "lease_id",
  "lease_expires_at",
  "attempts",
  "max_attempts",
  "cancel_requested",
  "dedupe_key",
  "result",
  "error",
  "timeout_seconds",
  "queue_deadline",
  "log_offset",
  "log_bytes",
  "log_truncated",
  "expected_log_lines",
  "created_at",
  "assigned_at",
  "started_at",
  "finished_at",
] as const;

function positions(statement: Database.Statement): Positions {
  const names = statement.columns().map((c) => c.name);
  const at = {} as Positions;
  for (const column of JOB_COLUMNS) {
    const i = names.indexOf(column);
    if (i < 0) throw new Error(`jobs statement without column ${column}: ${statement.source}`);
    at[column] = i;
  }
  return at;
}

/**
 * A row read by a raw statement, in drizzle's shape (camelCase, JSON and booleans decoded), built
 * as one plain object literal. The spec used to be decoded lazily through accessors defined per
 * row; V8 turns such an object into a slow one, and building it cost 15-22 µs against 2-3 µs for
 * this literal with the spec parsed at once (measured per row, same machine).
 * The statements return arrays (better-sqlite3's raw mode), read here by position: better-sqlite3
 * builds a named object of 27 properties per row otherwise, and an `UPDATE … RETURNING *` of one
 * row cost 13-14 CPU µs that way against 9 µs as an array (5,000 takes in one transaction, same
 * file as the jobs bench, three rounds) — two of them per claim + finish cycle.
 */
function fromRaw(r: RawJob, at: Positions): JobRow {
  return {
    id: r[at.id] as string,
    deploymentId: r[at.deployment_id] as string | null,
    kind: r[at.kind] as string,
    app: r[at.app] as string,
    targetHost: r[at.target_host] as string | null,
    targetLabels: r[at.target_labels] === null ? null : (JSON.parse(r[at.target_labels] as string) as string[]),
    spec: JSON.parse(r[at.spec] as string) as Record<string, unknown>,
    status: r[at.status] as string,
    agentId: r[at.agent_id] as string | null,
    leaseId: r[at.lease_id] as string | null,
    leaseExpiresAt: r[at.lease_expires_at] as number | null,
    attempts: r[at.attempts] as number,
    maxAttempts: r[at.max_attempts] as number,
    cancelRequested: r[at.cancel_requested] === 1,
    dedupeKey: r[at.dedupe_key] as string | null,
    result: r[at.result] === null ? null : (JSON.parse(r[at.result] as string) as Record<string, unknown>),
    error: r[at.error] as string | null,
    timeoutSeconds: r[at.timeout_seconds] as number,
    queueDeadline: r[at.queue_deadline] as number,
    logOffset: r[at.log_offset] as number,
    logBytes: r[at.log_bytes] as number,
    logTruncated: r[at.log_truncated] === 1,
    expectedLogLines: r[at.expected_log_lines] as number | null,
    createdAt: r[at.created_at] as number,
    assignedAt: r[at.assigned_at] as number | null,
    startedAt: r[at.started_at] as number | null,
    finishedAt: r[at.finished_at] as number | null,
  };
}

/** The embedded engine: better-sqlite3, statements prepared once. */
export class SqliteJobStore implements JobStore {
  private readonly probeHost;
  private readonly probeLabels;
  private readonly probeHostWithoutVolumes;
  private readonly probeLabelsWithoutVolumes;
  private readonly needingCurrentAgentStatement;
  private readonly takeStatement;
  private readonly startStatement;
  private readonly finishStatement;
  private readonly byIdStatement;
  private readonly heldStatement;
  private readonly dedupeStatement;
  private readonly expiredStatement;
  private readonly timeOutStatement;
  private readonly timeOutQueuedStatement;
  private readonly earliestDeadlineStatement;
  private readonly renewStatement;
  private readonly requestCancelStatement;
  /** column positions of the statements that return whole rows (one table, one order) */
  private readonly at: Positions;
  /**
   * One transaction wrapper, made once: better-sqlite3 builds a new wrapper (and its BEGIN,
   * COMMIT and SAVEPOINT bindings) on every `db.transaction(fn)` call — 3% of a cycle, measured.
   * Nested calls become savepoints, as with a fresh wrapper.
   */
  private readonly inTransaction: (fn: () => unknown) => unknown;

  constructor(private readonly db: Db) {
    const sqlite = db.$client;
    this.inTransaction = sqlite.transaction((fn: () => unknown) => fn());
    // A claim is index probes (by host, then by each label set the agent satisfies; partial
    // indexes hold pending rows only) and one compare-and-swap UPDATE: two agents can never
    // hold the same job, and probing label sets by exact key keeps a claim O(label sets).
    this.probeHost = sqlite.prepare("SELECT id FROM jobs WHERE status = 'pending' AND target_host = ? ORDER BY id LIMIT 1").pluck();
    this.probeLabels = sqlite.prepare("SELECT id FROM jobs WHERE status = 'pending' AND target_labels = ? ORDER BY id LIMIT 1").pluck();
    // Agents without the volumes capability (older than volumes) probe with the filter; current
    // agents keep the plain probes above, so the filter costs them nothing. INDEXED BY: with the
    // filter the planner scanned the table (2.3 ms with 5,000 pending jobs, against 0.1 ms on
    // the claim index, measured).
    this.probeHostWithoutVolumes = sqlite
      .prepare(
        `SELECT id FROM jobs INDEXED BY jobs_claim_host_idx WHERE status = 'pending' AND target_host = ? AND target_host IS NOT NULL AND NOT ${NEEDS_CURRENT_AGENT} ORDER BY id LIMIT 1`,
      )
      .pluck();
    this.probeLabelsWithoutVolumes = sqlite
      .prepare(
        `SELECT id FROM jobs INDEXED BY jobs_claim_labels_idx WHERE status = 'pending' AND target_labels = ? AND target_labels IS NOT NULL AND NOT ${NEEDS_CURRENT_AGENT} ORDER BY id LIMIT 1`,
      )
      .pluck();
    this.needingCurrentAgentStatement = sqlite
      .prepare(
        `SELECT id, kind FROM jobs INDEXED BY jobs_claim_host_idx WHERE status = 'pending' AND target_host = ? AND target_host IS NOT NULL AND ${NEEDS_CURRENT_AGENT}
         UNION ALL
         SELECT id, kind FROM jobs INDEXED BY jobs_claim_labels_idx WHERE status = 'pending' AND target_labels IN (SELECT value FROM json_each(?)) AND target_labels IS NOT NULL AND ${NEEDS_CURRENT_AGENT}
         ORDER BY id LIMIT 100`,
      );
    this.takeStatement = sqlite.prepare(`
      UPDATE jobs SET status = 'assigned', agent_id = @agentId, lease_id = @leaseId,
        lease_expires_at = @leaseExpiresAt, assigned_at = @now, attempts = attempts + 1, error = NULL
      WHERE id = @id AND status = 'pending'
      RETURNING *`);
    this.startStatement = sqlite.prepare(`
      UPDATE jobs SET status = 'running', started_at = @now, lease_expires_at = @until
      WHERE id = @id AND lease_id = @leaseId AND status IN ('assigned', 'running')
      RETURNING *`);
    // result is a JSON column: the parameter is its text (or NULL) as stored
    this.finishStatement = sqlite.prepare(`
      UPDATE jobs SET status = @status, finished_at = @now, lease_expires_at = NULL, result = @result, error = @error,
        expected_log_lines = @expectedLogLines, started_at = coalesce(started_at, @now)
      WHERE id = @id AND lease_id = @leaseId AND status IN ('assigned', 'running') AND (@agentId IS NULL OR agent_id = @agentId)
      RETURNING *`);
    this.byIdStatement = sqlite.prepare("SELECT * FROM jobs WHERE id = ?");
    this.heldStatement = sqlite.prepare("SELECT * FROM jobs WHERE agent_id = ? AND status IN ('assigned', 'running')");
    this.expiredStatement = sqlite.prepare(
      "SELECT * FROM jobs WHERE status IN ('assigned', 'running') AND lease_expires_at IS NOT NULL AND lease_expires_at < ?",
    );
    this.timeOutStatement = sqlite.prepare(`
      UPDATE jobs SET status = 'timed_out', finished_at = @now, lease_expires_at = NULL,
        error = 'exceeded its timeout of ' || timeout_seconds || ' s'
      WHERE status IN ('assigned', 'running') AND status = 'running' AND started_at + timeout_seconds * 1000 < @now
      RETURNING *`);
    // Queue deadlines: every pending job is in one of the two claim indexes, or (no target) in
    // jobs_untargeted_pending_idx, each with queue_deadline in its entries; read through them
    // alone. SQLite uses a partial index only when the WHERE implies the index's own, hence the
    // conditions spelled out (INDEXED BY fails the prepare if one stops matching). There is no
    // index on queue_deadline across pending jobs any more: each claim wrote a page of it
    // (jobs_queue_deadline_idx), and JobState runs these only once the earliest deadline passed.
    // queue_deadline trailing the claim indexes costs a claim nothing measurable: production path
    // 1 agent 9,788 vs 9,058 cycles per CPU second without it, 64 agents 14,334 vs 14,523 (same
    // run, 5 passes, within the noise); without it the look reads every pending row of the table.
    const pendingThrough = (select: string, where: string) =>
      [
        `SELECT ${select} FROM jobs INDEXED BY jobs_claim_host_idx WHERE status = 'pending' AND target_host IS NOT NULL${where}`,
        `SELECT ${select} FROM jobs INDEXED BY jobs_claim_labels_idx WHERE status = 'pending' AND target_labels IS NOT NULL${where}`,
        `SELECT ${select} FROM jobs INDEXED BY jobs_untargeted_pending_idx WHERE status = 'pending' AND target_host IS NULL AND target_labels IS NULL${where}`,
      ].join(" UNION ALL ");
    // a pending job's error is why it waited (an agent without volumes): kept after the reason
    this.timeOutQueuedStatement = sqlite.prepare(`
      UPDATE jobs SET status = 'timed_out', finished_at = @now, error = 'no agent claimed the job in time' || coalesce('; ' || error, '')
      WHERE status = 'pending' AND id IN (${pendingThrough("id", " AND queue_deadline < @now")})
      RETURNING *`);
    this.earliestDeadlineStatement = sqlite.prepare(`SELECT min(d) FROM (${pendingThrough("min(queue_deadline) AS d", "")})`).pluck();
    this.dedupeStatement = sqlite.prepare(
      "SELECT * FROM jobs WHERE dedupe_key = ? AND dedupe_key IS NOT NULL AND status IN ('pending', 'assigned', 'running') LIMIT 1",
    );
    this.renewStatement = sqlite.prepare("UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND status IN ('assigned', 'running')");
    this.requestCancelStatement = sqlite.prepare(
      "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status IN ('assigned', 'running') RETURNING *",
    );
    const whole = [
      this.byIdStatement,
      this.dedupeStatement,
      this.heldStatement,
      this.takeStatement,
      this.startStatement,
      this.finishStatement,
      this.requestCancelStatement,
      this.expiredStatement,
      this.timeOutStatement,
      this.timeOutQueuedStatement,
    ];
    this.at = positions(this.byIdStatement);
    for (const statement of whole) {
      statement.raw(true);
      if (JSON.stringify(positions(statement)) !== JSON.stringify(this.at)) throw new Error(`jobs statement with another column order: ${statement.source}`);
    }
  }

  transaction<T>(fn: () => T): T {
    return this.inTransaction(fn) as T;
  }

  insert(job: NewJob): JobRow {
    return this.db.insert(jobs).values(job).returning().get();
  }

  byId(id: string): JobRow | undefined {
    const raw = this.byIdStatement.get(id) as RawJob | undefined;
    return raw && fromRaw(raw, this.at);
  }

  activeByDedupeKey(key: string): JobRow | undefined {
    const raw = this.dedupeStatement.get(key) as RawJob | undefined;
    return raw && fromRaw(raw, this.at);
  }

  heldBy(agentId: string): JobRow[] {
    return (this.heldStatement.all(agentId) as RawJob[]).map((r) => fromRaw(r, this.at));
  }

  oldestPendingForHost(host: string, withoutVolumes = false): string | undefined {
    return (withoutVolumes ? this.probeHostWithoutVolumes : this.probeHost).get(host) as string | undefined;
  }

  oldestPendingForLabels(labelSet: string, withoutVolumes = false): string | undefined {
    return (withoutVolumes ? this.probeLabelsWithoutVolumes : this.probeLabels).get(labelSet) as string | undefined;
  }

  pendingNeedingCurrentAgent(host: string, labelSets: readonly string[]): Array<{ id: string; kind: string }> {
    return this.needingCurrentAgentStatement.all(host, JSON.stringify(labelSets)) as Array<{ id: string; kind: string }>;
  }

  pendingLabelSets(): string[] {
    return this.db.$client
      .prepare("SELECT DISTINCT target_labels FROM jobs WHERE status = 'pending' AND target_labels IS NOT NULL")
      .pluck()
      .all() as string[];
  }

  take(id: string, agentId: string, leaseId: string, leaseExpiresAt: number, now: number): JobRow | undefined {
    const raw = this.takeStatement.get({ id, agentId, leaseId, leaseExpiresAt, now }) as RawJob | undefined;
    return raw && fromRaw(raw, this.at);
  }

  start(id: string, leaseId: string, now: number, until: number): JobRow | undefined {
    const raw = this.startStatement.get({ id, leaseId, now, until }) as RawJob | undefined;
    return raw && fromRaw(raw, this.at);
  }

  finish(
    id: string,
    leaseId: string,
    f: { status: string; now: number; result: string | null; error: string | null; expectedLogLines: number | null; agentId: string | null },
  ): JobRow | undefined {
    const raw = this.finishStatement.get({ id, leaseId, ...f }) as RawJob | undefined;
    return raw && fromRaw(raw, this.at);
  }

  move(id: string, from: readonly string[], leaseId: string | null, status: string, fields: JobFields): JobRow | undefined {
    return this.db
      .update(jobs)
      .set({ ...fields, status })
      .where(and(eq(jobs.id, id), inArray(jobs.status, [...from]), leaseId === null ? undefined : eq(jobs.leaseId, leaseId)))
      .returning()
      .get();
  }

  requestCancel(id: string): JobRow | undefined {
    const raw = this.requestCancelStatement.get(id) as RawJob | undefined;
    return raw && fromRaw(raw, this.at);
  }

  // The reaper's looks at held jobs (once a second) scan only those: literal statuses let SQLite
  // use the partial jobs_held_idx instead of reading every job ever run.
  expiredLeases(now: number): JobRow[] {
    return (this.expiredStatement.all(now) as RawJob[]).map((r) => fromRaw(r, this.at));
  }

  timeOutRunning(now: number): JobRow[] {
    return (this.timeOutStatement.all({ now }) as RawJob[]).map((r) => fromRaw(r, this.at));
  }

  timeOutQueued(now: number): JobRow[] {
    return (this.timeOutQueuedStatement.all({ now }) as RawJob[]).map((r) => fromRaw(r, this.at));
  }

  earliestQueueDeadline(): number | null {
    return this.earliestDeadlineStatement.get() as number | null;
  }

  renewLease(id: string, until: number): void {
    this.renewStatement.run(until, id);
  }

  renewHeld(agentId: string, ids: readonly string[], until: number): void {
    this.db
      .update(jobs)
      .set({ leaseExpiresAt: until })
      .where(and(eq(jobs.agentId, agentId), inArray(jobs.id, [...ids]), inArray(jobs.status, HELD)))
      .run();
  }

  states(ids: readonly string[]) {
    return this.db
      .select({ id: jobs.id, status: jobs.status, agentId: jobs.agentId, cancelRequested: jobs.cancelRequested })
      .from(jobs)
      .where(inArray(jobs.id, [...ids]))
      .all();
  }

  rearmLeases(until: number): number {
    return this.db
      .update(jobs)
      .set({ leaseExpiresAt: until })
      .where(and(inArray(jobs.status, HELD), lt(jobs.leaseExpiresAt, until)))
      .run().changes;
  }
}
