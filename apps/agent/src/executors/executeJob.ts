import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { cleanupJob } from "../docker/managedContainers";
import { freeSpace, isDiskFull, localIoReason } from "../diskFull";
import { fileSafe } from "../leftovers";
import { purgeAppVolumes } from "../docker/volumes";
import { buildJob } from "./buildJob";
import { deployJob } from "./deployJob";
import { appOperationJob } from "../reconcile/operations";
import { lifecycleJob } from "./lifecycleJobs";
import { runJob } from "./runJob";
import { CANCELLED, type ClaimedJob, type JobContext, type JobOutcome } from "./types";

/**
 * The one entry point the daemon calls. Owns the job's work dir (`<workRoot>/<jobId>`, removed
 * afterwards whatever happens) and the cancellation contract: when `ctx.signal` aborts, work in
 * flight is cut, every container labelled with the job is stopped and removed, and the outcome
 * is `{ok:false, error:"cancelled"}`. Unexpected errors (engine gone, disk full) also come back
 * as a failed outcome rather than a throw, so the daemon has one path to report.
 */
export async function executeJob(job: ClaimedJob, ctx: JobContext): Promise<JobOutcome> {
  const missing = missingSecrets(job);
  if (missing.length > 0) {
    const list = missing.map((k) => `'${k}'`).join(", ");
    ctx.log("system", `job ${job.id}: secret ${list} was not handed to this host; nothing was run`);
    return { ok: false, error: `secret ${list} of app '${job.app}' is declared but the controller sent no value (not set, or this host is not one of the app's hosts); nothing was run` };
  }
  const workDir = path.join(ctx.workRoot, fileSafe(job.id));
  let outcome: JobOutcome;
  try {
    await rm(workDir, { recursive: true, force: true });
    await mkdir(workDir, { recursive: true });
    ctx.log("system", `job ${job.id}: ${job.kind} ${job.app} (attempt ${job.attempt})`);
    outcome = await runByKind(job, ctx, workDir);
  } catch (err) {
    const reason = isDiskFull(err) ? localIoReason(err, workDir) : (err as Error).message;
    outcome = { ok: false, error: ctx.signal.aborted ? CANCELLED : `${job.kind} failed: ${reason}` };
  }
  if (!outcome.ok && outcome.error !== CANCELLED && isDiskFull(outcome.error) && !outcome.error.includes("the disk is full")) {
    outcome = { ...outcome, error: `${outcome.error} (${await whichDiskIsFull(ctx)})` };
  }
  await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
  if (!outcome.ok && ctx.signal.aborted) {
    const removed = await cleanupJob(ctx.docker, job.id, outcome.keepContainers).catch(() => []);
    if (removed.length > 0) ctx.log("system", `cancelled: removed ${removed.length} container(s) of job ${job.id}`);
    return { ok: false, error: CANCELLED, ...(outcome.result ? { result: outcome.result } : {}) };
  }
  return outcome;
}

/**
 * A tool (git) or the engine (a build step, a pull) ran out of space: say where each of the two
 * disks a job writes to stands, measured before the work dir is removed and frees its part.
 */
async function whichDiskIsFull(ctx: JobContext): Promise<string> {
  const engineRoot = await ctx.docker.info().then((i: { DockerRootDir?: string }) => i.DockerRootDir, () => undefined);
  const agent = freeSpace(ctx.workRoot);
  return `the disk is full: the agent's state dir at ${path.dirname(ctx.workRoot)} has ${agent || "an unknown amount"} free${engineRoot ? `; the Docker engine keeps images and build layers under ${engineRoot}` : ""}`;
}

/** Declared secrets without a value: running without them would start the app misconfigured. */
function missingSecrets(job: ClaimedJob): string[] {
  if (job.kind !== "deploy" && job.kind !== "run") return [];
  const given = job.spec.secretEnv ?? {};
  return (job.spec.run?.secrets ?? []).filter((k) => !(k in given));
}

/** `remove` with `purgeVolumes`: once the containers are gone, the app's named volumes go too. */
async function purgeVolumes(job: ClaimedJob, ctx: JobContext, removed: JobOutcome): Promise<JobOutcome> {
  if (!removed.ok || !job.spec.purgeVolumes) return removed;
  const { removed: volumes, errors } = await purgeAppVolumes(ctx.docker, job.app);
  for (const v of volumes) ctx.log("system", `remove: deleted volume ${v}`);
  const result = { ...removed.result, purgedVolumes: volumes };
  if (errors.length > 0) return { ok: false, error: `remove: could not delete volume ${errors.join("; ")}`, result };
  if (volumes.length === 0) ctx.log("system", `remove: ${job.app} has no volumes on this host`);
  return { ok: true, result };
}

async function runByKind(job: ClaimedJob, ctx: JobContext, workDir: string): Promise<JobOutcome> {
  switch (job.kind) {
    case "deploy":
      return deployJob(job, ctx, workDir);
    case "build":
      return buildJob(job, ctx, workDir);
    case "run":
      return runJob(job, ctx, workDir);
    case "stop":
    case "restart":
      return ctx.desired ? appOperationJob(job, ctx, ctx.desired, job.kind) : lifecycleJob(job, ctx, job.kind);
    case "remove":
      return purgeVolumes(job, ctx, await (ctx.desired ? appOperationJob(job, ctx, ctx.desired, job.kind) : lifecycleJob(job, ctx, job.kind)));
    case "start":
    case "scale":
      if (!ctx.desired) return Promise.resolve({ ok: false, error: `${job.kind} needs the agent's desired state` });
      return appOperationJob(job, ctx, ctx.desired, job.kind);
    default:
      // a job kind from a newer controller: refused with a reason, never a crash
      return Promise.resolve({ ok: false, error: `this agent does not know job kind '${String((job as { kind: unknown }).kind)}'; upgrade it` });
  }
}
