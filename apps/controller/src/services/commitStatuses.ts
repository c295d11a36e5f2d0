import type { Deployment } from "@deploybot/protocol";
import type { Logger } from "pino";
import { ApiError } from "../lib/errors";
import type { Deps } from "./deps";
import type { CommitState, CommitStatus, GitHubClient } from "./github";

/** What a deployment's status means to GitHub: in progress, done, failed, or ended without a verdict. */
export function commitStateFor(status: Deployment["status"]): CommitState {
  switch (status) {
    case "pending":
    case "building":
    case "deploying":
      return "pending";
    case "succeeded":
      return "success";
    case "failed":
      return "failure";
    case "cancelled":
    case "superseded":
      return "error";
  }
}

function describe(d: Deployment): string {
  const where = d.hosts.length > 0 ? ` to ${d.hosts.join(", ")}` : "";
  switch (d.status) {
    case "pending":
      return `queued${where}`;
    case "building":
      return "building the image";
    case "deploying":
      return `deploying${where}`;
    case "succeeded":
      return `deployed${where}`;
    case "failed":
      return d.error ? `failed: ${d.error}` : "failed";
    case "superseded":
      return "superseded by a newer deployment";
    case "cancelled":
      return "cancelled";
  }
}

/**
 * Mirrors deployments onto their commits as GitHub commit statuses: an `external` consequence of
 * `deployment.changed` (drainer.ts), so a failed report is retried with backoff and never
 * changes the deployment. A report whose deployment has moved on since its event is skipped —
 * the newer event sends the newer state — so a retried `pending` never lands after `success`.
 */
export class CommitStatusReporter {
  /** the last state+description sent per deployment: a repeated change is not re-sent */
  private readonly lastSent = new Map<string, string>();
  private readonly logger: Logger;

  constructor(
    private readonly deps: Pick<Deps, "config" | "logger" | "apps">,
    private readonly github: GitHubClient,
    private readonly deploymentById: (id: string) => Promise<Deployment>,
  ) {
    this.logger = deps.logger.child({ component: "commit-status" });
  }

  /** Statuses need a token; without one there is nothing to report to. */
  get enabled(): boolean {
    return this.github.authenticated;
  }

  /** Sends the status of the deployment an event is about; throws when GitHub refuses it (retried). */
  async report(event: { subject: string | null; data: Record<string, unknown> }): Promise<void> {
    if (!event.subject) return;
    const d = await this.deploymentById(event.subject);
    if (d.status !== event.data.status) return;
    const repo = d.sha ? this.deps.apps().byName(d.app)?.repo : undefined;
    if (!d.sha || !repo) return;
    const status: CommitStatus = {
      state: commitStateFor(d.status),
      target_url: `${this.deps.config.publicUrl ?? "http://localhost:8080"}/v1/deployments/${d.id}`,
      description: describe(d),
      context: `deploybot/${d.app}`,
    };
    const key = `${status.state}|${status.description}`;
    if (this.lastSent.get(d.id) === key) return;
    try {
      await this.github.setCommitStatus(repo, d.sha, status);
    } catch (err) {
      const code = err instanceof ApiError ? err.code : "internal";
      const message = err instanceof ApiError ? err.message : "unexpected error";
      this.logger.warn({ deploymentId: d.id, state: status.state, code, message }, "could not report the commit status");
      throw new ApiError(502, code, `GitHub refused the commit status: ${message}`);
    }
    if (status.state === "pending") this.lastSent.set(d.id, key);
    else this.lastSent.delete(d.id);
  }
}
