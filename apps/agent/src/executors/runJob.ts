import { type RunSpec, runSpec } from "@deploybot/protocol";
import { streamContainerLogs } from "../docker/containerLogs";
import { containerName, containerOptions } from "../docker/containerSpec";
import { LABELS, managedLabels, stopAndRemove } from "../docker/managedContainers";
import { copyResultFile } from "../docker/resultFile";
import { prepareMounts } from "../docker/volumes";
import { imageResult, prepareImage } from "./prepareImage";
import { CANCELLED, type ClaimedJob, type JobContext, type JobOutcome, type ResultFileContent } from "./types";

/**
 * run = a terminating container: its output is the job log, its exit code the verdict, and an
 * optional result file is copied out after it stopped. A run publishes no ports and has no
 * health check: it shares the host with the app's own containers, which hold those ports.
 * The container is removed afterwards; on timeout or cancel the job's signal fires and
 * executeJob removes it.
 */
export async function runJob(job: ClaimedJob, ctx: JobContext, workDir: string): Promise<JobOutcome> {
  const { docker, signal, log } = ctx;
  const run: RunSpec = job.spec.run ?? runSpec.parse({});
  // a run sees the app's volumes, as its serving containers do (a migration, a backup)
  const mounts = await prepareMounts(docker, job.app, run, ctx.mountPolicy);
  if (!mounts.ok) return { ok: false, error: `run: ${mounts.reason}; nothing was started` };
  const prepared = await prepareImage(job, ctx, workDir);
  if (!prepared.ok) return { ok: false, error: prepared.reason };
  const result: Record<string, unknown> = imageResult(prepared);
  const options = containerOptions({
    name: containerName(job.app, job.id, job.attempt > 1 ? `-run-${job.attempt}` : "-run"),
    image: prepared.image,
    run: { ...run, ports: [], healthcheck: undefined, restart: "no" },
    secretEnv: job.spec.secretEnv,
    // role=run: never counted as one of the app's serving replicas (reconcile, drift)
    labels: { ...managedLabels(job.app, job.id, job.spec.release ?? prepared.version), [LABELS.role]: "run" },
    publish: "real",
    mounts: mounts.mounts,
  });
  const container = await docker.createContainer(options);
  const started = Date.now();
  try {
    await container.start();
    // a cancel during the start cuts the log stream; its rejection means nothing more
    const logsDone = streamContainerLogs(docker, container.id, log, signal).catch(() => undefined);
    // the signal may have fired already (cancelled while the container was being created)
    const aborted = new Promise<null>((resolve) => {
      if (signal.aborted) resolve(null);
      else signal.addEventListener("abort", () => resolve(null), { once: true });
    });
    const exit = await Promise.race([container.wait() as Promise<{ StatusCode: number }>, aborted]);
    if (exit === null || signal.aborted) return { ok: false, error: CANCELLED, result };
    await logsDone;
    result.exitCode = exit.StatusCode;
    result.durationMs = Date.now() - started;
    let resultFile: ResultFileContent | undefined;
    if (run.result_file) {
      const copied = await copyResultFile(docker, container.id, run.result_file);
      if (copied.ok) {
        resultFile = copied;
        result.resultFile = { path: copied.path, size: copied.size, stored: copied.content.length, truncated: copied.truncated };
        log("system", `run: result file ${copied.path}: ${copied.size} bytes${copied.truncated ? `, first ${copied.content.length} kept` : ""}`);
      } else {
        result.resultFile = { path: copied.path, error: copied.error };
        log("stderr", `run: result file ${copied.path}: ${copied.error}`);
      }
    }
    const outcome = exit.StatusCode === 0 ? { ok: true as const, result } : { ok: false as const, error: `container exited with code ${exit.StatusCode}`, result };
    return resultFile ? { ...outcome, resultFile } : outcome;
  } finally {
    await stopAndRemove(docker, container.id);
  }
}
