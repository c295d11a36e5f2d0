import { randomUUID } from "node:crypto";
import type { JobChangedEvent, JobStatus } from "@deploybot/protocol";
import type { Deps } from "./deps";
import { GroupCommit } from "./groupCommit";
import { type JobFields, type JobRow, type JobStore, LEGACY_JOB_KINDS, type NewJob } from "./jobStore";
import type { FinishedAndClaimed, FinishReport } from "./jobTransitions";
import type { Outbox } from "./outbox";

export type JobTransition = JobChangedEvent["transition"];

export const SUPERSEDED = "superseded by ";

export function jobEvent(row: JobRow, transition: JobTransition): JobChangedEvent {
  return {
    id: row.id,
    kind: row.kind as JobChangedEvent["kind"],
    app: row.app,
    status: row.status as JobStatus,
    transition,
    host: row.targetHost,
    labels: row.targetLabels,
    agentId: row.agentId,
    deploymentId: row.deploymentId,
    attempts: row.attempts,
    cancelRequested: row.cancelRequested,
    error: row.error,
    expectedLogLines: row.expectedLogLines,
    // The row's times, so a consumer (metrics' claim latency and job duration) reads no job row:
    // that read, twice per claim+finish cycle, was 5.6% of an in-process cycle's profile. Epoch
    // ms as stored: ISO strings cost ~0.5 µs each to write and ~0.2 µs to parse back, about 4 µs
    // of a cycle (measured) — half of what the read cost.
    createdAtMs: row.createdAt,
    assignedAtMs: row.assignedAt,
    startedAtMs: row.startedAt,
    finishedAtMs: row.finishedAt,
  };
}

/** The canonical form of a label set, as stored in jobs.target_labels. */
/**
 * Where an assigned job its agent never started goes (both job engines): cancelled when a cancel
 * was asked meanwhile, failed once it has used its attempts, else back to pending.
 */
export function requeueStep(
  job: JobRow,
  reason: string,
  now: number,
): { status: JobStatus; fields: JobFields; transition: JobTransition } {
  const ended = { finishedAt: now, leaseExpiresAt: null };
  if (job.cancelRequested) return { status: "cancelled", fields: { ...ended, error: "cancelled before it started" }, transition: "cancelled" };
  if (job.attempts >= job.maxAttempts) {
    return { status: "failed", fields: { ...ended, error: `${reason}; gave up after ${job.attempts} attempts` }, transition: "failed" };
  }
  return { status: "pending", fields: { agentId: null, leaseId: null, leaseExpiresAt: null, assignedAt: null }, transition: "requeued" };
}

/** What a job claim needs to know of the agent: who and where it is, and what it can do. */
export type ClaimingAgent = {
  id: string;
  hostname: string;
  labels: readonly string[];
  /** as registered; without `volumes: true`, jobs with volumes, stop_first or a volume purge, or of a kind newer than LEGACY_JOB_KINDS, are not handed to it */
  capabilities?: Record<string, unknown>;
  version?: string;
};

/** The reason a job needing volumes shows while only an agent without them could take it. */
export const waitingForVolumes = (agent: Pick<ClaimingAgent, "hostname" | "version">) =>
  `waiting for an agent that supports volumes (run.volumes, stop_first, purging volumes); host ${agent.hostname} runs agent ${agent.version ?? "unknown"}, which would ignore them: upgrade it`;

/** Why a job of `kind` stays pending while only an agent without the volumes capability could take it. */
export const waitingForCurrentAgent = (agent: Pick<ClaimingAgent, "hostname" | "version">, kind: string) =>
  LEGACY_JOB_KINDS.includes(kind)
    ? waitingForVolumes(agent)
    : `waiting for an agent that knows '${kind}' jobs; host ${agent.hostname} runs agent ${agent.version ?? "unknown"}, which would fail it: upgrade it`;

export const canonicalLabels = (labels: readonly string[]): string[] => [...new Set(labels)].sort();

/**
 * The one owner of a job's status. Every transition — queue, claim, start, finish, requeue,
 * fail, lose, cancel, supersede, time out — is one synchronous transaction that writes the job
 * (guarded: compare-and-swap on status and lease) and appends its `job.changed` row to the
 * outbox. What follows from a change (deployment status, fan-out, releases, commit statuses,
 * wake-ups) is applied from the outbox by the drainer, never here: a transition cannot fail
 * because a consequence does, and a consequence is never lost because the process died.
 */
export class JobState {
  /** label sets (canonical JSON) pending jobs may carry; probed one by one at claim time */
  private readonly labelSets = new Set<string>();
  /** the waiting reason last written per job, so a legacy agent's heartbeats do not rewrite it */
  private readonly waitingNoted = new Map<string, string>();
  /** when each agent without volumes last had its held-back jobs listed (that lookup reads every pending row of the host) */
  private readonly waitingScannedAt = new Map<string, number>();
  /** the agents' transitions (claim, start, finish) of one turn share a COMMIT under load (groupCommit.ts) */
  readonly group: GroupCommit;
  /**
   * No pending job has a queue deadline before this (ms): the reaper looks for queue timeouts only
   * once `now` passes it. -Infinity: not known yet (the first sweep looks); +Infinity: nothing is
   * pending. Lowered by every transition to pending (queue, requeue), raised only by the look
   * itself. Valid because this object makes every status change of its SQLite file (one
   * controller per file); a stale low value only costs one look too many.
   *
   * Why: a pending-only index on queue_deadline (jobs_queue_deadline_idx) gave the look its rows,
   * and every claim wrote a page of it at its COMMIT: 5.85 WAL frames per job with it, 4.83
   * without (finishAndClaim loop, 2,000 jobs, WAL size counted). bench:jobs, production path,
   * 10,000 jobs, against the code with the index in the same run (its own migrations), load
   * 2-3.5, cycles per CPU second, three runs (5, 5, 7 passes): 1 agent 1.14x, 1.07x, 1.06x
   * (8,638 vs 7,586; 9,640 vs 9,012; 10,011 vs 9,440); 64 agents 1.17x, 1.03x, 0.99x (13,927 vs
   * 11,945; 13,361 vs 12,943; 13,882 vs 14,002) — within the noise there: a group of 64 writes
   * the index leaf once per COMMIT, not once per job. The look itself, once a deadline passed,
   * reads the claim indexes alone: ~1 ms per 10,000 pending jobs (0.5 ms for the earliest, 0.46
   * ms for the timeout statement with nothing due; 5 and 3.6 ms at 100,000).
   */
  private queueDeadlinesFrom = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly deps: Deps,
    readonly store: JobStore,
    private readonly outbox: Outbox,
  ) {
    for (const key of store.pendingLabelSets()) this.labelSets.add(key);
    this.group = new GroupCommit(deps.db.$client, deps.logger, deps.config.groupCommit);
  }

  private emit(row: JobRow, transition: JobTransition): JobRow {
    this.outbox.appendNow("job.changed", { app: row.app, subject: row.id }, jobEvent(row, transition));
    return row;
  }

  /** Queues a job; with a dedupe key, the active job with that key is returned instead (`created: false`). */
  queue(values: NewJob, dedupeKey: string | null, first?: () => void): { row: JobRow; created: boolean } {
    const result = this.store.transaction(() => {
      first?.(); // the request's Idempotency-Key, taken in the transaction that creates the job
      const existing = dedupeKey ? this.store.activeByDedupeKey(dedupeKey) : undefined;
      if (existing) return { row: existing, created: false };
      const row = this.store.insert({ ...values, status: "pending", dedupeKey });
      this.pendingUntil(row.queueDeadline);
      return { row: this.emit(row, "queued"), created: true };
    });
    if (result.created && result.row.targetLabels) this.labelSets.add(JSON.stringify(result.row.targetLabels));
    return result;
  }

  private matchingLabelSets(agent: { labels: readonly string[] }): string[] {
    return [...this.labelSets].filter((key) => (JSON.parse(key) as string[]).every((l) => agent.labels.includes(l)));
  }

  private oldestMatching(agent: { hostname: string; labels: readonly string[] }, withoutVolumes: boolean): string | undefined {
    let best = this.store.oldestPendingForHost(agent.hostname, withoutVolumes);
    for (const key of this.labelSets) {
      const wanted = JSON.parse(key) as string[];
      if (!wanted.every((l) => agent.labels.includes(l))) continue;
      const id = this.store.oldestPendingForLabels(key, withoutVolumes);
      // Nothing pending for this set any more: forget it until a job brings it back (a filtered
      // probe cannot tell: jobs with volumes may still wait in the set).
      if (id === undefined) {
        if (!withoutVolumes) this.labelSets.delete(key);
      }
      else if (best === undefined || id < best) best = id;
    }
    return best;
  }

  /**
   * pending -> assigned: the oldest pending job this agent may run, under a new lease. The probe
   * runs outside any transaction, so an empty queue (most heartbeats) costs no write; the take
   * and its event commit together, and a take that lost a race tries the next candidate.
   * `candidate`: a first id already probed (claimCandidate); a stale one just costs a retry.
   */
  claim(agent: ClaimingAgent, leaseMs: number, candidate?: string, inSavepoint = false): JobRow | null {
    // Decided from the capabilities loaded with the agent's identity: a current agent's claim
    // runs the same probes as before; only an agent from before volumes pays for the filter.
    const withoutVolumes = agent.capabilities?.volumes !== true;
    for (let tries = 0; tries < 3; tries++) {
      const id = tries === 0 && candidate !== undefined ? candidate : this.oldestMatching(agent, withoutVolumes);
      if (withoutVolumes && tries === 0) this.noteHeldBack(agent, id);
      if (id === undefined) return null;
      const now = this.deps.clock();
      // randomUUID draws from a cached entropy pool: 0.8 µs against 10 µs for randomBytes(12), measured
      const leaseId = `lse_${randomUUID()}`;
      // `inSavepoint`: the caller's savepoint already undoes a take whose event failed (finishAndClaim)
      const take = () => {
        const taken = this.store.take(id, agent.id, leaseId, now + leaseMs, now);
        return taken && this.emit(taken, "claimed");
      };
      const row = inSavepoint ? take() : this.store.transaction(take);
      if (row) {
        this.deps.logger.info({ jobId: row.id, agentId: agent.id, attempt: row.attempts }, "job assigned");
        return row;
      }
    }
    return null;
  }

  /**
   * The job `claim` would try first, by index probes only (no write); undefined when none waits.
   * An agent without volumes gets "ask-claim": its claim also notes the jobs held back for it, so
   * it always goes through `claim`.
   */
  claimCandidate(agent: ClaimingAgent): string | undefined | "ask-claim" {
    if (agent.capabilities?.volumes !== true) return "ask-claim";
    return this.oldestMatching(agent, false);
  }

  /**
   * Jobs this agent would take but must not (it would ignore their volumes, or not know their
   * kind) stay pending and say why, on the job and in the log, once per job and reason: an agent
   * that can run them takes them, or the queue timeout ends them with that reason still visible.
   */
  private noteHeldBack(agent: ClaimingAgent, eligible: string | undefined): void {
    // Index probes only: is a job this agent must not run ahead of what it may run? Listing them
    // reads every pending row of the host, so it runs only then, at most once a minute per agent.
    const oldest = this.oldestMatching(agent, false);
    if (oldest === undefined || oldest === eligible) return;
    const now = this.deps.clock();
    if (now - (this.waitingScannedAt.get(agent.id) ?? Number.NEGATIVE_INFINITY) < 60_000) return;
    this.waitingScannedAt.set(agent.id, now);
    const held = this.store.pendingNeedingCurrentAgent(agent.hostname, this.matchingLabelSets(agent));
    if (held.length === 0) return;
    if (this.waitingNoted.size > 10_000) this.waitingNoted.clear();
    for (const { id, kind } of held) {
      const reason = waitingForCurrentAgent(agent, kind);
      if (this.waitingNoted.get(id) === reason) continue;
      this.waitingNoted.set(id, reason);
      if (this.store.move(id, ["pending"], null, "pending", { error: reason })) {
        this.deps.logger.warn({ jobId: id, kind, agentId: agent.id, hostname: agent.hostname, version: agent.version }, "job held back: the agent is too old for it");
      }
    }
  }

  /** assigned|running -> running, under the caller's lease; undefined when the lease no longer holds it. */
  start(jobId: string, leaseId: string, leaseMs: number): JobRow | undefined {
    const now = this.deps.clock();
    return this.store.transaction(() => {
      const row = this.store.start(jobId, leaseId, now, now + leaseMs);
      return row && this.emit(row, "started");
    });
  }

  /**
   * assigned|running -> succeeded | failed | cancelled, as the agent holding the lease reports.
   * With `agentId`, a lease held by another agent changes nothing (undefined), like a stale one.
   */
  finish(jobId: string, leaseId: string, report: FinishReport, agentId?: string): JobRow | undefined {
    return this.store.transaction(() => this.finishRow(jobId, leaseId, report, agentId));
  }

  /**
   * The finish's write and its event, in the caller's transaction. The agent is guarded in the
   * UPDATE itself: before, a write under another agent's lease was undone by a throw out of a
   * savepoint of its own, one more SAVEPOINT/RELEASE on every finish. With the pair's take in
   * the claim's savepoint (claim's `inSavepoint`) that is 2 of a pair's 5 savepoints gone
   * (~1-2 µs each, measured alone); the production path rows did not resolve it: 1 agent 7,837
   * vs 8,261 cycles per CPU second (0.95x), 64 agents 11,435 vs 11,122 (1.03x), same run, 5
   * passes — within the noise. Kept for the simpler guard.
   */
  private finishRow(jobId: string, leaseId: string, report: FinishReport, agentId: string | undefined): JobRow | undefined {
    const now = this.deps.clock();
    const row = this.store.finish(jobId, leaseId, {
      status: report.status,
      now,
      result: report.result ? JSON.stringify(report.result) : null,
      error: report.error ?? (report.status === "cancelled" ? "cancelled" : null),
      expectedLogLines: report.logLines ?? null,
      agentId: agentId ?? null,
    });
    return row && this.emit(row, "finished");
  }

  /**
   * An agent's final report and its next claim in ONE transaction: one COMMIT per job on the
   * heartbeat path instead of two (finish, then the claim of the next heartbeat round). The
   * finish is exactly `finish` (guarded by lease and agent, its own `job.changed` row). The claim
   * runs only when the finish was accepted and the agent then holds nothing — what the
   * heartbeat's reconcile would see — and in a savepoint of its own: a claim that throws is
   * rolled back alone (logged), and the finish commits all the same. `claimTried` false: no claim
   * ran (finish refused, or the agent still holds another job), the caller claims as before.
   */
  finishAndClaim(jobId: string, leaseId: string, report: FinishReport, agent: ClaimingAgent, leaseMs: number): FinishedAndClaimed {
    return this.store.transaction(() => {
      // no savepoints of their own inside this transaction: the finish needs none (its guard is in
      // the UPDATE), and the claim's take runs in the claim's savepoint below
      const finished = this.finishRow(jobId, leaseId, report, agent.id);
      if (!finished || this.store.heldBy(agent.id).length > 0) return { finished, claimed: null, claimTried: false };
      let claimed: JobRow | null = null;
      try {
        const candidate = this.claimCandidate(agent);
        if (candidate !== undefined) claimed = this.store.transaction(() => this.claim(agent, leaseMs, candidate === "ask-claim" ? undefined : candidate, true));
      } catch (err) {
        this.deps.logger.error({ err, jobId, agentId: agent.id }, "claiming the next job after a finish failed; the finish stands");
      }
      return { finished, claimed, claimTried: true };
    });
  }

  /**
   * An assigned job its agent never started goes back to pending (attempts count), unless it
   * was cancelled meanwhile or has used its attempts.
   */
  requeue(job: JobRow, reason: string): JobRow | undefined {
    const { status, fields, transition } = requeueStep(job, reason, this.deps.clock());
    const row = this.move(job, ["assigned"], status, fields, transition);
    if (row?.status === "pending") this.pendingUntil(row.queueDeadline);
    if (row) this.deps.logger.warn({ jobId: job.id, agentId: job.agentId, reason, attempts: job.attempts, status }, "job handed back");
    return row;
  }

  /** running -> failed: the agent says it no longer holds the job (it restarted or lost it). */
  failNotHeld(job: JobRow): JobRow | undefined {
    const row = this.move(
      job,
      ["assigned", "running"],
      "failed",
      { error: "the agent no longer holds the job (it restarted or lost it)", finishedAt: this.deps.clock(), leaseExpiresAt: null },
      "failed",
    );
    if (row) this.deps.logger.warn({ jobId: job.id, agentId: job.agentId }, "job failed: agent no longer holds it");
    return row;
  }

  /** running -> lost: the agent stopped renewing its lease. */
  lose(job: JobRow): JobRow | undefined {
    const row = this.move(
      job,
      ["running"],
      "lost",
      { finishedAt: this.deps.clock(), leaseExpiresAt: null, error: "the agent stopped renewing its lease" },
      "lost",
    );
    if (row) this.deps.logger.warn({ jobId: job.id, agentId: job.agentId }, "job lost: lease expired");
    return row;
  }

  private move(job: JobRow, from: readonly string[], status: string, fields: JobFields, transition: JobTransition) {
    return this.store.transaction(() => {
      const row = this.store.move(job.id, from, job.leaseId, status, fields);
      return row && this.emit(row, transition);
    });
  }

  /**
   * A pending job is cancelled at once; a held one is asked to stop (its agent hears on the next
   * heartbeat). Answers the job as it is now; null when it no longer exists.
   */
  cancel(jobId: string): JobRow | null {
    for (let tries = 0; tries < 3; tries++) {
      const row = this.store.transaction(() => {
        const job = this.store.byId(jobId);
        if (!job) return null;
        if (job.status === "pending") {
          const moved = this.store.move(jobId, ["pending"], null, "cancelled", {
            cancelRequested: true,
            finishedAt: this.deps.clock(),
            error: "cancelled before it started",
          });
          return moved ? this.emit(moved, "cancelled") : undefined;
        }
        if (job.status !== "assigned" && job.status !== "running") return job;
        if (job.cancelRequested) return job;
        const asked = this.store.requestCancel(jobId);
        return asked ? this.emit(asked, "cancel_requested") : undefined;
      });
      // undefined: the job moved on between the read and the guarded write; look again
      if (row !== undefined) {
        if (row) this.deps.logger.info({ jobId, status: row.status }, "job cancel requested");
        return row;
      }
    }
    return this.store.byId(jobId) ?? null;
  }

  /** pending -> cancelled because a newer deployment of the app replaces this one (coalescing). */
  supersede(jobId: string, byDeploymentId: string): JobRow | undefined {
    return this.store.transaction(() => {
      const row = this.store.move(jobId, ["pending"], null, "cancelled", {
        cancelRequested: true,
        finishedAt: this.deps.clock(),
        error: `${SUPERSEDED}${byDeploymentId}`,
      });
      return row && this.emit(row, "superseded");
    });
  }

  /** A job became pending with this queue deadline (called before its transaction commits: a rollback leaves the bound low, which is safe). */
  private pendingUntil(queueDeadline: number): void {
    if (queueDeadline < this.queueDeadlinesFrom) this.queueDeadlinesFrom = queueDeadline;
  }

  /** Expired leases (requeue or lost), execution timeouts and queue timeouts, at `now`. */
  sweep(): void {
    const now = this.deps.clock();
    for (const job of this.store.expiredLeases(now)) {
      if (job.status === "assigned") this.requeue(job, "lease expired before the job started");
      else this.lose(job);
    }
    // `queue_deadline < now` times a job out: none can while now <= the earliest deadline
    const lookAtQueue = now > this.queueDeadlinesFrom;
    let earliest: number | null = null;
    const timedOut = this.store.transaction(() => {
      const rows = this.store.timeOutRunning(now).map((row) => this.emit(row, "timed_out"));
      if (!lookAtQueue) return rows;
      rows.push(...this.store.timeOutQueued(now).map((row) => this.emit(row, "timed_out")));
      earliest = this.store.earliestQueueDeadline();
      return rows;
    });
    // Raised only once the look committed on its own: inside a caller's transaction it could
    // still roll back, and the jobs it timed out would be pending again below the new bound.
    if (lookAtQueue && !this.deps.db.$client.inTransaction) this.queueDeadlinesFrom = earliest ?? Number.POSITIVE_INFINITY;
    for (const row of timedOut) this.deps.logger.warn({ jobId: row.id, error: row.error }, "job timed out");
  }
}
