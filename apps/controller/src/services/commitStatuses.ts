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

export interface DeploymentFeed {
  onChange(listener: (d: Deployment) => void): () => void;
}

/**
 * Mirrors deployments onto their commits as GitHub commit statuses. Reports go out in order per
 * deployment (a slow `pending` never lands after `success`); a failed report is logged and
 * changes nothing about the deployment.
 */
export class CommitStatusReporter {
  private readonly chains = new Map<string, Promise<void>>();
  /** the last state+description sent per unfinished deployment: a repeated change is not re-sent */
  private readonly lastSent = new Map<string, string>();
  private readonly logger: Logger;

  constructor(
    private readonly deps: Pick<Deps, "config" | "logger" | "apps">,
    private readonly github: GitHubClient,
  ) {
    this.logger = deps.logger.child({ component: "commit-status" });
  }

  /** Subscribes when a token is configured (statuses need one); returns the unsubscribe. */
  attach(feed: DeploymentFeed): () => void {
    if (!this.github.authenticated) return () => {};
    return feed.onChange((d) => this.report(d));
  }

  /** Resolves once every report queued so far has been sent (or has failed). */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.all(this.chains.values());
  }

  report(d: Deployment): void {
    const repo = d.sha ? this.deps.apps().byName(d.app)?.repo : undefined;
    if (!d.sha || !repo) return;
    const sha = d.sha;
    const status: CommitStatus = {
      state: commitStateFor(d.status),
      target_url: `${this.deps.config.publicUrl ?? "http://localhost:8080"}/v1/deployments/${d.id}`,
      description: describe(d),
      context: `deploybot/${d.app}`,
    };
    const key = `${status.state}|${status.description}`;
    if (this.lastSent.get(d.id) === key) return;
    if (status.state === "pending") this.lastSent.set(d.id, key);
    else this.lastSent.delete(d.id);
    const previous = this.chains.get(d.id) ?? Promise.resolve();
    const next = previous
      .then(() => this.github.setCommitStatus(repo, sha, status))
      .then(
        () => undefined,
        (err: unknown) => {
          const code = err instanceof ApiError ? err.code : "internal";
          const message = err instanceof ApiError ? err.message : "unexpected error";
          this.logger.warn({ deploymentId: d.id, state: status.state, code, message }, "could not report the commit status");
        },
      )
      .finally(() => {
        if (this.chains.get(d.id) === next) this.chains.delete(d.id);
      });
    this.chains.set(d.id, next);
  }
}
