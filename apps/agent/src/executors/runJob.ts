import { type RunSpec, runSpec } from "@deploybot/protocol";
import { streamContainerLogs } from "../docker/containerLogs";
import { containerName, containerOptions } from "../docker/containerSpec";
import { managedLabels, stopAndRemove } from "../docker/managedContainers";
import { readTar } from "../sources/tarReader";
import { imageResult, prepareImage } from "./prepareImage";
import { CANCELLED, type ClaimedJob, type JobContext, type JobOutcome } from "./types";

/** A result file larger than this is cut: it travels inside the job's status report. */
const RESULT_FILE_LIMIT = 256 * 1024;

/** run = a terminating container: its output is the job log, its exit code the verdict. */
export async function runJob(job: ClaimedJob, ctx: JobContext, workDir: string): Promise<JobOutcome> {
  const { docker, signal, log } = ctx;
  const run: RunSpec = job.spec.run ?? runSpec.parse({});
  const prepared = await prepareImage(job, ctx, workDir);
  if (!prepared.ok) return { ok: false, error: prepared.reason };
  const result: Record<string, unknown> = imageResult(prepared);
  const options = containerOptions({
    name: containerName(job.app, job.id, job.attempt > 1 ? `-run-${job.attempt}` : "-run"),
    image: prepared.image,
    run,
    secretEnv: job.spec.secretEnv,
    labels: managedLabels(job.app, job.id, job.spec.release ?? prepared.version),
    publish: "real",
  });
  options.HostConfig = { ...options.HostConfig, RestartPolicy: { Name: "no" } };
  const container = await docker.createContainer(options);
  try {
    await container.start();
    const logsDone = streamContainerLogs(docker, container.id, log, signal);
    const aborted = new Promise<null>((resolve) => signal.addEventListener("abort", () => resolve(null), { once: true }));
    const exit = await Promise.race([container.wait() as Promise<{ StatusCode: number }>, aborted]);
    if (exit === null || signal.aborted) return { ok: false, error: CANCELLED, result };
    await logsDone;
    result.exitCode = exit.StatusCode;
    if (run.result_file) result.resultFile = await copyResultFile(ctx, container.id, run.result_file);
    return exit.StatusCode === 0 ? { ok: true, result } : { ok: false, error: `container exited with code ${exit.StatusCode}`, result };
  } finally {
    await stopAndRemove(docker, container.id);
  }
}

/** getArchive returns a tar of the path; the first regular file in it is the result. */
async function copyResultFile(ctx: JobContext, id: string, file: string): Promise<{ path: string; content?: string; truncated?: boolean; error?: string }> {
  try {
    const stream = (await ctx.docker.getContainer(id).getArchive({ path: file })) as NodeJS.ReadableStream;
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
    const parsed = await readTar(Buffer.concat(chunks));
    const entry = parsed.ok ? parsed.entries.find((e) => e.type === "file") : undefined;
    if (entry?.type !== "file") return { path: file, error: "not a regular file" };
    const truncated = entry.data.length > RESULT_FILE_LIMIT;
    return { path: file, content: entry.data.subarray(0, RESULT_FILE_LIMIT).toString("utf8"), ...(truncated ? { truncated } : {}) };
  } catch (err) {
    ctx.log("stderr", `run: result file ${file}: ${(err as Error).message}`);
    return { path: file, error: (err as Error).message };
  }
}
