import { type ClaimedJob, FEATURES, type FinishedAnswer, type HeartbeatRequest, type ReportStatusRequest } from "@deploybot/protocol";
import { ApiError } from "../lib/errors";
import type { Services } from ".";
import type { AgentCaller } from "./agents";
import type { JobRow } from "./jobStore";

/** What this controller can do beyond protocol v1, named in its register and heartbeat answers. */
export const CONTROLLER_FEATURES: string[] = [FEATURES.finishedInHeartbeat];

type Reporting = Pick<Services, "leases" | "redaction" | "runs">;

/**
 * An agent's status report, whether it came on `POST /v1/jobs/{id}/status` or inside a heartbeat:
 * one path, so both are fenced by the lease, idempotent on retry and redacted the same way.
 */
export async function reportJobStatus(s: Reporting, agentId: string, jobId: string, body: ReportStatusRequest): Promise<JobRow> {
  const row = await s.leases.reportStatus(agentId, jobId, await s.redaction.statusReport(jobId, body));
  await s.runs.adoptInlineResult(row);
  return row;
}

/**
 * A heartbeat's `finished` report, applied before the heartbeat itself. The agent described
 * itself as it was before the report (busy, holding the job), so an older controller that ignores
 * the field renews the lease and hands out nothing. Once the report is accepted the job is no
 * longer held, and an agent that held nothing else is idle: the same heartbeat may claim its
 * next job, one request per job instead of two. A refused report (the status route's 4xx: a
 * stale lease, another agent's job, a job that already ended) leaves the heartbeat as it was and
 * travels back in the answer; anything else fails the whole heartbeat, which the agent retries.
 *
 * `claimFor`: the caller's identity (the route passes it). When the agent will be idle after the
 * report, its next claim runs in the finish's transaction (LeaseService.finishAndClaimNext), one
 * COMMIT per job; `claimed` then carries what that claim took (null: nothing), and the heartbeat
 * must not run its own reconcile/claim round again (AgentService.heartbeat): that round would see
 * the job just claimed as not held and hand it back.
 */
export async function finishInHeartbeat(
  s: Reporting,
  agentId: string,
  body: HeartbeatRequest,
  claimFor?: AgentCaller,
): Promise<{ heartbeat: HeartbeatRequest; finished?: FinishedAnswer; claimed?: ClaimedJob | null }> {
  const report = body.finished;
  if (!report) return { heartbeat: body };
  const { jobId, ...status } = report;
  const heldJobIds = body.heldJobIds.filter((id) => id !== jobId);
  const state = body.status === "busy" && heldJobIds.length === 0 ? "idle" : body.status;
  // as AgentService.heartbeat decides whether the agent may claim
  const claimNext = claimFor !== undefined && claimFor.id === agentId && state === "idle" && heldJobIds.length === 0;
  try {
    let row: JobRow;
    let claimed: ClaimedJob | null | undefined;
    if (claimNext) {
      ({ row, claimed } = await s.leases.finishAndClaimNext(claimFor, jobId, await s.redaction.statusReport(jobId, status)));
      await s.runs.adoptInlineResult(row);
    } else {
      row = await reportJobStatus(s, agentId, jobId, status);
    }
    return {
      heartbeat: { ...body, heldJobIds, status: state },
      finished: { jobId, accepted: true, status: row.status as FinishedAnswer["status"] },
      ...(claimed !== undefined ? { claimed } : {}),
    };
  } catch (err) {
    if (!(err instanceof ApiError) || err.status >= 500) throw err;
    return { heartbeat: body, finished: { jobId, accepted: false, error: { httpStatus: err.status, code: err.code, message: err.message } } };
  }
}
