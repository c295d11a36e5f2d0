import { type ClaimedJob, isFinal, type JobStatus } from "@deploybot/protocol";
import { ApiError, notFound } from "../lib/errors";
import type { Deps } from "./deps";
import type { ClaimingAgent } from "./jobState";
import type { JobLeases, JobTransitions } from "./jobTransitions";
import type { JobRow } from "./jobStore";

/**
 * The lease is the lock: a job belongs to one agent while its lease lives, every write for the
 * job names the lease id (compare-and-swap), and an expired lease hands the job back. Status
 * changes themselves go through the job-state module.
 */
export class LeaseService {
  constructor(
    private readonly deps: Deps,
    private readonly state: JobTransitions & JobLeases,
    private readonly secretsFor: (app: string, names: readonly string[], host: string) => Promise<Record<string, string>> = async () => ({}),
  ) {}

  get leaseMs(): number {
    return this.deps.config.heartbeatIntervalSeconds * 3 * 1000;
  }

  /** Takes the oldest pending job this agent may run, or returns null. */
  async claimNextJob(agent: ClaimingAgent): Promise<ClaimedJob | null> {
    const row = await this.state.claim(agent, this.leaseMs);
    return row && this.handOut(row, agent);
  }

  /** A claimed row as its agent gets it: the lease, and the spec with credentials. */
  private async handOut(row: JobRow, agent: ClaimingAgent): Promise<ClaimedJob> {
    return {
      id: row.id,
      kind: row.kind as ClaimedJob["kind"],
      app: row.app,
      leaseId: row.leaseId!,
      spec: await this.withCredentials(row.spec as ClaimedJob["spec"], agent.hostname),
      timeoutSeconds: row.timeoutSeconds,
      attempt: row.attempts,
      logOffset: row.logOffset,
    };
  }

  /** Credentials exist only in the copy handed to the claiming agent, never in the stored spec. */
  private async withCredentials(spec: ClaimedJob["spec"], host: string): Promise<ClaimedJob["spec"]> {
    let out = spec;
    const registry = this.deps.config.registry;
    if (registry) {
      const host = registry.url.split("/")[0];
      const images = [spec.image, spec.source?.type === "image" ? spec.source.image : undefined];
      if (images.some((i) => i?.startsWith(`${host}/`))) out = { ...out, registry };
    }
    const names = spec.run?.secrets ?? [];
    if (names.length > 0) {
      const values = await this.secretsFor(spec.app, names, host);
      const missing = names.filter((n) => !(n in values));
      if (missing.length > 0) this.deps.logger.warn({ app: spec.app, host, missing }, "secrets withheld: not set, or not a host of the app");
      out = { ...out, secretEnv: values };
    }
    return out;
  }

  /**
   * Makes the controller's view agree with what the agent says it holds: a job it no longer
   * holds is handed back (never started) or failed (it was running). Returns the ids the
   * agent must drop: cancel requests, jobs that ended here, and jobs that are not its own.
   */
  async reconcile(agentId: string, heldJobIds: readonly string[]): Promise<string[]> {
    for (const job of await this.state.heldBy(agentId)) {
      if (heldJobIds.includes(job.id)) continue;
      if (job.status === "assigned") await this.state.requeue(job, "the agent did not take the job");
      else await this.state.failNotHeld(job);
    }
    if (heldJobIds.length === 0) return [];
    await this.state.renewHeld(agentId, heldJobIds, this.deps.clock() + this.leaseMs);
    const known = await this.state.states(heldJobIds);
    return heldJobIds.filter((id) => {
      const j = known.find((k) => k.id === id);
      return !j || j.agentId !== agentId || j.cancelRequested || isFinal(j.status as JobStatus);
    });
  }

  async hasActiveJob(agentId: string): Promise<boolean> {
    return (await this.state.heldBy(agentId)).length > 0;
  }

  /**
   * The reaper: expired leases, execution timeouts and queue timeouts. Runs every second in
   * the server and directly in tests with a fake clock.
   */
  async sweep(): Promise<void> {
    await this.state.sweep();
  }

  /**
   * After a controller restart, every lease gets a grace period so agents can check in. At least
   * a minute: agents back off for up to 30 s while the controller is away.
   */
  async rearmLeases(): Promise<number> {
    return this.state.rearmLeases(this.deps.clock() + Math.max(this.leaseMs, 60_000));
  }

  /**
   * Fencing for an agent's call about a job: the job must be this agent's (403 otherwise)
   * under this lease (409 otherwise, changing nothing).
   */
  async fence(jobId: string, agentId: string, leaseId: string): Promise<JobRow> {
    const job = await this.state.byId(jobId);
    if (!job) throw notFound("job", jobId);
    if (job.agentId !== agentId) throw new ApiError(403, "forbidden", `job ${jobId} is not held by this agent`);
    if (job.leaseId !== leaseId) throw new ApiError(409, "stale_lease", `lease ${leaseId} no longer holds job ${jobId}`);
    return job;
  }

  /**
   * running | succeeded | failed | cancelled from the agent holding the lease. Only the job's
   * own state decides the answer: what follows (a deployment, a release) is applied from the
   * outbox, so a config change since the claim can never refuse the report.
   */
  async reportStatus(
    agentId: string,
    jobId: string,
    body: {
      leaseId: string;
      status: "running" | "succeeded" | "failed" | "cancelled";
      result?: Record<string, unknown>;
      error?: string;
      logLines?: number;
    },
  ): Promise<JobRow> {
    if (body.status !== "running") {
      // The common case first: the guarded write is the fence (lease, held status, this agent),
      // so a report that holds its lease costs no read before it (the read and fromRaw were 11%
      // of an in-process claim+finish cycle). Anything else reads the job below and answers why.
      const done = await this.state.finish(jobId, body.leaseId, { ...body, status: body.status }, agentId);
      if (done) {
        this.deps.logger.info({ jobId, agentId, status: body.status }, "job status");
        return done;
      }
    }
    return this.reportFenced(agentId, jobId, body);
  }

  /**
   * A final report and, when it is accepted and the agent then holds nothing, the agent's next
   * job, in one transaction (JobTransitions.finishAndClaim): the heartbeat path's one COMMIT per
   * job. `claimed` undefined: no claim ran (the report was refused or retried, or the agent holds
   * another job), so the heartbeat claims as it would without the report. A refused report
   * throws the same ApiError as reportStatus; a claim that failed leaves the finish accepted
   * (claimed null).
   */
  async finishAndClaimNext(
    agent: ClaimingAgent,
    jobId: string,
    body: { leaseId: string; status: "succeeded" | "failed" | "cancelled"; result?: Record<string, unknown>; error?: string; logLines?: number },
  ): Promise<{ row: JobRow; claimed?: ClaimedJob | null }> {
    const pair = await this.state.finishAndClaim(jobId, body.leaseId, body, agent, this.leaseMs);
    if (!pair.finished) return { row: await this.reportFenced(agent.id, jobId, body) };
    this.deps.logger.info({ jobId, agentId: agent.id, status: body.status }, "job status");
    if (!pair.claimTried) return { row: pair.finished };
    return { row: pair.finished, claimed: pair.claimed && (await this.handOut(pair.claimed, agent)) };
  }

  /** A report the guarded write did not take at once: read the job, answer why, or apply it. */
  private async reportFenced(
    agentId: string,
    jobId: string,
    body: { leaseId: string; status: "running" | "succeeded" | "failed" | "cancelled"; result?: Record<string, unknown>; error?: string; logLines?: number },
  ): Promise<JobRow> {
    const job = await this.fence(jobId, agentId, body.leaseId);
    const current = job.status as JobStatus;
    if (current === body.status && isFinal(current)) return job; // a retried final report
    if (isFinal(current)) throw new ApiError(409, "job_finished", `job ${jobId} already ended ${current}`, { status: current });
    if (body.status === "running" && current === "running") return this.renew(job);
    const updated =
      body.status === "running"
        ? await this.state.start(jobId, body.leaseId, this.leaseMs)
        : await this.state.finish(jobId, body.leaseId, { ...body, status: body.status });
    if (!updated) throw new ApiError(409, "stale_lease", `job ${jobId} changed while reporting; fetch it again`);
    this.deps.logger.info({ jobId, agentId, status: body.status }, "job status");
    return updated;
  }

  async renew(job: JobRow): Promise<JobRow> {
    const until = this.deps.clock() + this.leaseMs;
    await this.state.renewLease(job.id, until);
    return { ...job, leaseExpiresAt: until };
  }
}
