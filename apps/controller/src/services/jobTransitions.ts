import { and, eq, inArray, lt } from "drizzle-orm";
import type { Db } from "../db/client";
import { jobs } from "../db/schema";
import type { JobRow, NewJob } from "./jobStore";
import type { ClaimingAgent, JobState } from "./jobState";

export interface FinishReport {
  status: "succeeded" | "failed" | "cancelled";
  result?: Record<string, unknown>;
  error?: string;
  logLines?: number;
}

/** A final report and the next claim of the same agent, in one transaction where the engine allows. */
export interface FinishedAndClaimed {
  /** the finished job; undefined: refused (stale lease, another agent's, already ended), nothing changed */
  finished: JobRow | undefined;
  /** the job claimed next, if any */
  claimed: JobRow | null;
  /** the claim ran (or threw and was rolled back alone); false: the caller claims as it would without the pair */
  claimTried: boolean;
}

/**
 * A job's status transitions, as the services see them whatever the engine. One call is one
 * transaction that writes the job (guarded by status and lease) and its `job.changed` outbox row.
 * The unit is the transition, not the statement: SQLite keeps its synchronous transactions inside
 * (no await between BEGIN and COMMIT, so no other request interleaves), PostgreSQL runs each on a
 * connection of its own, and the services pay one promise per transition (see
 * the bench figures in README "PostgreSQL").
 */
export interface JobTransitions {
  /** `first` runs inside the queueing transaction before anything else (an Idempotency-Key take). */
  queue(values: NewJob, dedupeKey: string | null, first?: () => void): Promise<{ row: JobRow; created: boolean }>;
  claim(agent: ClaimingAgent, leaseMs: number): Promise<JobRow | null>;
  start(jobId: string, leaseId: string, leaseMs: number): Promise<JobRow | undefined>;
  /** With `agentId`, a lease held by another agent changes nothing (undefined), like a stale one. */
  finish(jobId: string, leaseId: string, report: FinishReport, agentId?: string): Promise<JobRow | undefined>;
  /**
   * `finish` (with the agent's guard), then — when it was accepted and the agent holds nothing
   * else — `claim` for that agent; a claim that throws never undoes the finish.
   */
  finishAndClaim(jobId: string, leaseId: string, report: FinishReport, agent: ClaimingAgent, leaseMs: number): Promise<FinishedAndClaimed>;
  requeue(job: JobRow, reason: string): Promise<JobRow | undefined>;
  failNotHeld(job: JobRow): Promise<JobRow | undefined>;
  lose(job: JobRow): Promise<JobRow | undefined>;
  cancel(jobId: string): Promise<JobRow | null>;
  supersede(jobId: string, byDeploymentId: string): Promise<JobRow | undefined>;
  sweep(): Promise<void>;
  byId(jobId: string): Promise<JobRow | undefined>;
}

/** The lease bookkeeping around the transitions: reads and lease renewals, no status change. */
export interface JobLeases {
  heldBy(agentId: string): Promise<JobRow[]>;
  renewLease(jobId: string, until: number): Promise<void>;
  renewHeld(agentId: string, ids: readonly string[], until: number): Promise<void>;
  states(ids: readonly string[]): Promise<Array<Pick<JobRow, "id" | "status" | "agentId" | "cancelRequested">>>;
  /** Every held lease expires no earlier than `until`; answers how many moved. */
  rearmLeases(until: number): Promise<number>;
}

/** The embedded engine: the synchronous JobState, one resolved promise per transition. */
export class SqliteJobTransitions implements JobTransitions, JobLeases {
  constructor(readonly state: JobState) {}
  async queue(values: NewJob, dedupeKey: string | null, first?: () => void) {
    return this.state.queue(values, dedupeKey, first);
  }
  // The agents' transitions share a COMMIT with the others of their turn (groupCommit.ts).
  claim(agent: ClaimingAgent, leaseMs: number): Promise<JobRow | null> {
    // An empty queue (most heartbeats) answers at once: its probe writes nothing, so it waits for
    // no group and never takes the write lock. With group commit the first bench run had empty
    // heartbeats at 199 µs CPU against 165 µs without it.
    const candidate = this.state.claimCandidate(agent);
    if (candidate === undefined) return Promise.resolve(null);
    return this.state.group.run(() => this.state.claim(agent, leaseMs, candidate === "ask-claim" ? undefined : candidate), agent.id);
  }
  start(jobId: string, leaseId: string, leaseMs: number) {
    return this.state.group.run(() => this.state.start(jobId, leaseId, leaseMs));
  }
  finish(jobId: string, leaseId: string, report: FinishReport, agentId?: string) {
    return this.state.group.run(() => this.state.finish(jobId, leaseId, report, agentId), agentId);
  }
  // One member of a group: the pair shares its COMMIT with the other agents' transitions.
  finishAndClaim(jobId: string, leaseId: string, report: FinishReport, agent: ClaimingAgent, leaseMs: number) {
    return this.state.group.run(() => this.state.finishAndClaim(jobId, leaseId, report, agent, leaseMs), agent.id);
  }
  async requeue(job: JobRow, reason: string) {
    return this.state.requeue(job, reason);
  }
  async failNotHeld(job: JobRow) {
    return this.state.failNotHeld(job);
  }
  async lose(job: JobRow) {
    return this.state.lose(job);
  }
  async cancel(jobId: string) {
    return this.state.cancel(jobId);
  }
  async supersede(jobId: string, byDeploymentId: string) {
    return this.state.supersede(jobId, byDeploymentId);
  }
  async sweep() {
    this.state.sweep();
  }
  async byId(jobId: string) {
    return this.state.store.byId(jobId);
  }
  async heldBy(agentId: string) {
    return this.state.store.heldBy(agentId);
  }
  async renewLease(jobId: string, until: number) {
    this.state.store.renewLease(jobId, until);
  }
  async renewHeld(agentId: string, ids: readonly string[], until: number) {
    this.state.store.renewHeld(agentId, ids, until);
  }
  async states(ids: readonly string[]) {
    return this.state.store.states(ids);
  }
  async rearmLeases(until: number) {
    return this.state.store.rearmLeases(until);
  }
}

const HELD = ["assigned", "running"];

/**
 * The lease bookkeeping in drizzle builders only, for an engine without SQLite's prepared store
 * (PostgreSQL): the same statements SqliteJobStore runs, one code path for both dialects.
 */
export class DbJobLeases implements JobLeases {
  constructor(private readonly db: Db) {}
  async heldBy(agentId: string): Promise<JobRow[]> {
    return this.db.select().from(jobs).where(and(eq(jobs.agentId, agentId), inArray(jobs.status, HELD)));
  }
  async renewLease(jobId: string, until: number): Promise<void> {
    await this.db.update(jobs).set({ leaseExpiresAt: until }).where(and(eq(jobs.id, jobId), inArray(jobs.status, HELD)));
  }
  async renewHeld(agentId: string, ids: readonly string[], until: number): Promise<void> {
    if (ids.length === 0) return;
    await this.db
      .update(jobs)
      .set({ leaseExpiresAt: until })
      .where(and(eq(jobs.agentId, agentId), inArray(jobs.id, [...ids]), inArray(jobs.status, HELD)));
  }
  async states(ids: readonly string[]) {
    if (ids.length === 0) return [];
    return this.db
      .select({ id: jobs.id, status: jobs.status, agentId: jobs.agentId, cancelRequested: jobs.cancelRequested })
      .from(jobs)
      .where(inArray(jobs.id, [...ids]));
  }
  async rearmLeases(until: number): Promise<number> {
    const moved = await this.db
      .update(jobs)
      .set({ leaseExpiresAt: until })
      .where(and(inArray(jobs.status, HELD), lt(jobs.leaseExpiresAt, until)))
      .returning({ id: jobs.id });
    return moved.length;
  }
}
