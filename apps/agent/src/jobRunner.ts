import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ClaimedJob, type FinishedAnswer, type FinishedReport, type RegistryCredentials, resultUploadHeaders } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import type { Logger } from "pino";
import { type ControllerClient, ControllerError } from "./controllerClient";
import { copyResultFile } from "./docker/resultFile";
import { CANCELLED, cleanupJob, executeJob, type JobOutcome, type ManagedContainer } from "./executors";
import type { JobLogSpool } from "./logSpool";
import type { HostProxy } from "./proxy";
import type { Redactor } from "./redact";
import type { MountPolicy } from "./docker/volumes";
import type { DesiredStore } from "./reconcile/desiredStore";
import type { AgentState, HeldJob } from "./state";
import { localIoReason } from "./diskFull";
import { fileSafe, recordBuiltImage } from "./leftovers";

export interface RunnerDeps {
  docker: Dockerode;
  client: ControllerClient;
  spool: JobLogSpool;
  state: AgentState;
  logger: Logger;
  stateDir: string;
  registries: RegistryCredentials[];
  proxy?: HostProxy;
  retrying: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
  /** masks the job's secrets in the error and result, as in its log lines */
  redactor: Redactor;
  desired?: DesiredStore;
  mountPolicy?: MountPolicy;
  /** resolves once reconcile is not acting on the app; the job touches the engine only after */
  settled?: (app: string, signal: AbortSignal) => Promise<void>;
  /** a job succeeded here (before it is reported): a deploy changes the host's desired state */
  succeeded?: (job: ClaimedJob, result: Record<string, unknown>) => void;
  /**
   * Reports the final status in the next heartbeat (one request per job instead of two): the
   * controller's answer to it, or null when it cannot travel that way (the controller never
   * named the feature, or its answer did not read the report): then the status route reports it.
   */
  finishInHeartbeat?: (report: FinishedReport) => Promise<FinishedAnswer | null>;
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
      .then(
        (final) => (final ? this.finish(final) : this.deps.state.clearHeldJob()),
        // an unexpected failure on our side is still the job's end, reported with its reason
        (err) => this.finish({ status: "failed", error: `agent error: ${(err as Error).message}` }),
      )
      .catch((err) => this.deps.logger.error({ err: (err as Error).message }, "job runner failed"));
  }

  /** `localError`: the job could not even be recorded on disk (a full state disk); it fails with that. */
  static start(job: ClaimedJob, deps: RunnerDeps, localError?: string): JobRunner {
    return new JobRunner(job, deps, async (r) => (localError ? { status: "failed", error: localError } : r.execute(job)));
  }

  /** Picks up a job held before a restart: finish reporting it, re-attach to it, or fail it. */
  static recovered(held: HeldJob, container: ManagedContainer | null, deps: RunnerDeps): JobRunner {
    return new JobRunner(held, deps, async (r) => {
      if (held.final) return held.final;
      if (container && held.kind === "run") return r.reattach(container, held.resultFile);
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
      await deps.settled?.(job.app, this.abort.signal);
      outcome = await executeJob(job, {
        docker: deps.docker,
        workRoot: join(deps.stateDir, "work"),
        cacheRoot: join(deps.stateDir, "cache"),
        log: (stream, line) => deps.spool.append(stream, line),
        signal: this.abort.signal,
        registries: deps.registries,
        ...(deps.proxy ? { proxy: deps.proxy } : {}),
        desired: deps.desired,
        recordLayer: (imageId) => recordBuiltImage(deps.stateDir, job.id, imageId),
        ...(deps.mountPolicy ? { mountPolicy: deps.mountPolicy } : {}),
      });
    } finally {
      clearTimeout(timer);
    }
    if (outcome.resultFile) this.keepResultFile(outcome.resultFile.content);
    if (outcome.ok) {
      deps.succeeded?.(job, outcome.result);
      return { status: "succeeded", result: outcome.result };
    }
    const result = outcome.result ? { result: outcome.result } : {};
    if (outcome.error === CANCELLED) {
      return this.cancelReason === "cancel requested"
        ? { status: "cancelled", error: "cancelled", ...result }
        : { status: "failed", error: this.cancelReason ?? "cancelled", ...result };
    }
    return { status: "failed", error: outcome.error, ...result };
  }

  /** A `run` job's container outlived the agent: wait for it and report its exit code. */
  private async reattach(container: ManagedContainer, resultFile: string | undefined): Promise<Final> {
    const { deps } = this;
    deps.spool.append("system", `re-attached to container ${container.id.slice(0, 12)} after an agent restart`);
    const handle = deps.docker.getContainer(container.id);
    const { StatusCode } = (await handle.wait()) as { StatusCode: number };
    const result: Record<string, unknown> = { exitCode: StatusCode, reattached: true };
    if (resultFile) {
      const copied = await copyResultFile(deps.docker, container.id, resultFile);
      if (copied.ok) {
        this.keepResultFile(copied.content);
        result.resultFile = { path: copied.path, size: copied.size, stored: copied.content.length, truncated: copied.truncated };
      } else result.resultFile = { path: copied.path, error: copied.error };
    }
    await handle.remove({ force: true }).catch(() => undefined);
    return StatusCode === 0 ? { status: "succeeded", result } : { status: "failed", error: `container exited with code ${StatusCode}`, result };
  }

  /** A run's result file waits on disk (state dir) until it is uploaded, so an agent restart keeps it. */
  private get resultPath(): string {
    return join(this.deps.stateDir, "results", fileSafe(this.job.id));
  }

  private keepResultFile(content: Buffer): void {
    mkdirSync(join(this.deps.stateDir, "results"), { recursive: true, mode: 0o700 });
    writeFileSync(this.resultPath, content, { mode: 0o600 });
  }

  /**
   * Uploads the result file on its own path, fenced by the lease, before the final status. A
   * controller of the previous version has no such path (404): the file then travels inside the
   * status report as it used to, cut to what that report allowed (256 KiB).
   */
  private async uploadResultFile(final: Final, deadline: number): Promise<void> {
    let content: Buffer;
    try {
      content = readFileSync(this.resultPath);
    } catch {
      return;
    }
    const meta = (final.result?.resultFile ?? {}) as { path?: string; size?: number };
    const path = meta.path ?? "result";
    try {
      await this.deps.retrying("upload result file", async () => {
        if (Date.now() > deadline) throw new ControllerError(408, "gave_up", "controller unreachable for too long");
        return this.deps.client.put(`/v1/jobs/${this.job.id}/result`, content, {
          [resultUploadHeaders.lease]: this.job.leaseId,
          [resultUploadHeaders.path]: encodeURIComponent(path),
          [resultUploadHeaders.size]: String(meta.size ?? content.length),
        }, { timeoutMs: 60_000 });
      });
    } catch (err) {
      if (err instanceof ControllerError && err.status === 404 && err.code === "not_found" && final.result) {
        const inline = content.subarray(0, 256 * 1024);
        final.result.resultFile = { ...meta, content: inline.toString("utf8"), ...(inline.length < content.length ? { truncated: true } : {}) };
      } else {
        this.deps.logger.warn({ err: (err as Error).message }, "result file not accepted");
      }
    }
    rmSync(this.resultPath, { force: true });
  }

  /** Persists the outcome, flushes the log, and reports the final status until it lands. */
  private async finish(outcome: Final): Promise<void> {
    const { deps, job } = this;
    // The error and result carry container output (a crashed app's last lines): they leave the
    // host like log lines do, so they are redacted like log lines, before they reach the disk.
    let final: Final = deps.redactor.redactDeep(outcome);
    const ioErrors = [deps.spool.ioError];
    try {
      deps.state.saveHeldJob({ id: job.id, leaseId: job.leaseId, kind: job.kind, app: job.app, startedAt: Date.now(), final });
    } catch (err) {
      ioErrors.push(localIoReason(err, deps.stateDir));
    }
    const ioError = ioErrors.find((e) => e);
    if (ioError) {
      // ENOSPC and friends: the job's record and log on this host are incomplete; say so in
      // the job itself rather than only in the agent's own log
      const note = ioError;
      final = { ...final, status: final.status === "cancelled" ? "cancelled" : "failed", error: final.error ? `${final.error}; ${note}` : note };
    }
    deps.logger.info({ status: final.status, error: final.error }, "job ended");
    const deadline = Date.now() + REPORT_FOR_MS;
    await deps.spool.close(60_000);
    await this.uploadResultFile(final, deadline);
    const report = { leaseId: job.leaseId, ...final, logLines: deps.spool.lines };
    // after the log and the result file, as on the status route: the report is the job's last word
    const answer = (await deps.finishInHeartbeat?.({ jobId: job.id, ...report })) ?? null;
    if (answer && !answer.accepted) {
      deps.logger.warn({ err: answer.error?.message, code: answer.error?.code }, "final status not accepted");
    } else if (!answer) {
      try {
        await deps.retrying("report final status", async () => {
          if (Date.now() > deadline) throw new ControllerError(408, "gave_up", "controller unreachable for too long");
          return deps.client.post(`/v1/jobs/${job.id}/status`, report);
        });
      } catch (err) {
        // 409 job_finished: the controller already ended it (timeout, cancel); nothing more to say
        deps.logger.warn({ err: (err as Error).message }, "final status not accepted");
      }
    }
    try {
      deps.state.clearHeldJob();
    } catch {
      // nothing was written, nothing to remove
    }
  }
}
