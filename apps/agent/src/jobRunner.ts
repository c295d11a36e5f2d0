import { join } from "node:path";
import type { ClaimedJob, RegistryCredentials } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import type { Logger } from "pino";
import { type ControllerClient, ControllerError } from "./controllerClient";
import { CANCELLED, cleanupJob, executeJob, type JobOutcome, type ManagedContainer } from "./executors";
import type { JobLogSpool } from "./logSpool";
import type { AgentState, HeldJob } from "./state";

export interface RunnerDeps {
  docker: Dockerode;
  client: ControllerClient;
  spool: JobLogSpool;
  state: AgentState;
  logger: Logger;
  stateDir: string;
  registries: RegistryCredentials[];
  retrying: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
}

type Final = NonNullable<HeldJob["final"]>;

/** How long a final status is retried while the controller is away (the protocol asks >= 1 h). */
const REPORT_FOR_MS = 2 * 3600 * 1000;

/** Runs one job from claim to reported end, and owns its cancellation and timeout. */
export class JobRunner {
  readonly finished: Promise<void>;
  private readonly abort = new AbortController();
  private cancelReason: string | null = null;

  private constructor(
    readonly job: { id: string; leaseId: string; kind: string; app: string },
    private readonly deps: RunnerDeps,
    body: (runner: JobRunner) => Promise<Final | null>,
  ) {
    this.finished = body(this)
      .then((final) => (final ? this.finish(final) : this.deps.state.clearHeldJob()))
      .catch((err) => this.deps.logger.error({ err: (err as Error).message }, "job runner failed"));
  }

  static start(job: ClaimedJob, deps: RunnerDeps): JobRunner {
    return new JobRunner(job, deps, (r) => r.execute(job));
  }

  /** Picks up a job held before a restart: finish reporting it, re-attach to it, or fail it. */
  static recovered(held: HeldJob, container: ManagedContainer | null, deps: RunnerDeps): JobRunner {
    return new JobRunner(held, deps, async (r) => {
      if (held.final) return held.final;
      if (container && held.kind === "run") return r.reattach(container);
      const removed = await cleanupJob(deps.docker, held.id).catch(() => []);
      const error = `the agent restarted while the job was running; removed ${removed.length} container(s) it had started`;
      deps.spool.append("system", error);
      return { status: "failed", error };
    });
  }

  cancel(reason: string): void {
    if (this.cancelReason) return;
    this.cancelReason = reason;
    this.deps.logger.info({ reason }, "cancelling job");
    this.abort.abort();
  }

  private async execute(job: ClaimedJob): Promise<Final | null> {
    const { deps } = this;
    try {
      await deps.retrying("report running", () =>
        deps.client.post(`/v1/jobs/${job.id}/status`, { leaseId: job.leaseId, status: "running" }),
      );
    } catch (err) {
      deps.logger.warn({ err: (err as Error).message }, "controller refused the job start; dropping it");
      await deps.spool.close(5000);
      return null;
    }
    const timer = setTimeout(() => this.cancel(`timed out after ${job.timeoutSeconds} s`), job.timeoutSeconds * 1000);
    let outcome: JobOutcome;
    try {
      outcome = await executeJob(job, {
        docker: deps.docker,
        workRoot: join(deps.stateDir, "work"),
        cacheRoot: join(deps.stateDir, "cache"),
        log: (stream, line) => deps.spool.append(stream, line),
        signal: this.abort.signal,
        registries: deps.registries,
      });
    } finally {
      clearTimeout(timer);
    }
    if (outcome.ok) return { status: "succeeded", result: outcome.result };
    const result = outcome.result ? { result: outcome.result } : {};
    if (outcome.error === CANCELLED) {
      return this.cancelReason === "cancel requested"
        ? { status: "cancelled", error: "cancelled", ...result }
        : { status: "failed", error: this.cancelReason ?? "cancelled", ...result };
    }
    return { status: "failed", error: outcome.error, ...result };
  }

  /** A `run` job's container outlived the agent: wait for it and report its exit code. */
  private async reattach(container: ManagedContainer): Promise<Final> {
    const { deps } = this;
    deps.spool.append("system", `re-attached to container ${container.id.slice(0, 12)} after an agent restart`);
    const handle = deps.docker.getContainer(container.id);
    const { StatusCode } = (await handle.wait()) as { StatusCode: number };
    await handle.remove({ force: true }).catch(() => undefined);
    return StatusCode === 0
      ? { status: "succeeded", result: { exitCode: 0, reattached: true } }
      : { status: "failed", error: `container exited with code ${StatusCode}`, result: { exitCode: StatusCode, reattached: true } };
  }

  /** Persists the outcome, flushes the log, and reports the final status until it lands. */
  private async finish(final: Final): Promise<void> {
    const { deps, job } = this;
    deps.state.saveHeldJob({ id: job.id, leaseId: job.leaseId, kind: job.kind, app: job.app, startedAt: Date.now(), final });
    deps.logger.info({ status: final.status, error: final.error }, "job ended");
    const deadline = Date.now() + REPORT_FOR_MS;
    await deps.spool.close(60_000);
    try {
      await deps.retrying("report final status", async () => {
        if (Date.now() > deadline) throw new ControllerError(408, "gave_up", "controller unreachable for too long");
        return deps.client.post(`/v1/jobs/${job.id}/status`, { leaseId: job.leaseId, ...final, logLines: deps.spool.lines });
      });
    } catch (err) {
      // 409 job_finished: the controller already ended it (timeout, cancel); nothing more to say
      deps.logger.warn({ err: (err as Error).message }, "final status not accepted");
    }
    deps.state.clearHeldJob();
  }
}
