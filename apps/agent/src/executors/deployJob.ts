import { type RunSpec, runSpec } from "@deploybot/protocol";
import { lastLogLines } from "../docker/containerLogs";
import { containerName, containerOptions } from "../docker/containerSpec";
import { waitHealthy } from "../docker/healthCheck";
import { pruneAppImages } from "../docker/pruneImages";
import { LABELS, listAppContainers, type ManagedContainer, managedLabels, stopAndRemove } from "../docker/managedContainers";
import { imageResult, prepareImage } from "./prepareImage";
import { CANCELLED, type ClaimedJob, type JobContext, type JobOutcome } from "./types";

/**
 * deploy = source -> image -> replace the app's containers.
 *
 * The replace strategy, and why: the old container holds the app's host ports, so a true
 * blue/green on the same host port is impossible on one engine. We do "verify, then swap":
 *  1. start the new image as a *candidate* with its ports on random 127.0.0.1 ports and run the
 *     health check against it, while the old container keeps serving untouched. A broken build,
 *     a crash on boot or a failing /health is caught here with zero downtime.
 *  2. stop the old container(s) (kept, not removed), start the new one with the real ports and
 *     check it again. Downtime is this gap only: stop + start + the app's warm-up.
 *  3. healthy: remove the old ones. Not healthy (or start fails, e.g. the port is taken by
 *     something else, or the job is cancelled): remove the new one and start the old ones again.
 * The trade-off: the app boots twice per deploy (side effects at start-up run twice) and there
 * is a short gap in step 2; in exchange a bad release never takes the old one down, and no
 * proxy is needed. An app that publishes no ports has no conflict: its new container starts
 * next to the old one and the old one is stopped only after the check (no gap at all).
 */
export async function deployJob(job: ClaimedJob, ctx: JobContext, workDir: string): Promise<JobOutcome> {
  const { docker, signal, log } = ctx;
  const run: RunSpec = job.spec.run ?? runSpec.parse({});
  const prepared = await prepareImage(job, ctx, workDir);
  if (!prepared.ok) return { ok: false, error: prepared.reason };
  const release = job.spec.release ?? prepared.version;
  const result: Record<string, unknown> = { ...imageResult(prepared), release };
  const labels = managedLabels(job.app, job.id, release);
  const old = await listAppContainers(docker, job.app);
  const suffix = job.attempt > 1 ? `-${job.attempt}` : "";
  const options = (publish: "real" | "temporary", name: string, extra: Record<string, string> = {}) =>
    containerOptions({ name, image: prepared.image, run, secretEnv: job.spec.secretEnv, labels: { ...labels, ...extra }, publish });

  if (run.ports.length > 0) {
    log("system", "deploy: starting a candidate on temporary ports for the health check");
    let candidateId: string | undefined;
    try {
      const candidate = await docker.createContainer(options("temporary", containerName(job.app, job.id, `${suffix}-candidate`), { [LABELS.role]: "candidate" }));
      candidateId = candidate.id;
      await candidate.start();
      const health = await waitHealthy(docker, candidate.id, run.healthcheck, signal);
      if (!health.ok) return await failNew(ctx, candidate.id, health.reason, result);
      log("system", `deploy: candidate healthy${health.url ? ` at ${health.url}` : ""}`);
      // It never served traffic: no grace period (an app that ignores SIGTERM would cost 5 s).
      await stopAndRemove(docker, candidate.id, 0);
    } catch (err) {
      if (candidateId) await stopAndRemove(docker, candidateId, 0);
      return { ok: false, error: signal.aborted ? CANCELLED : `deploy: starting the candidate failed: ${(err as Error).message}`, result };
    }
  }

  // The old containers step aside only when the new one needs their host ports.
  const stepAside = run.ports.length > 0 ? old.filter((c) => c.state === "running") : [];
  for (const c of stepAside) {
    log("system", `deploy: stopping ${c.name ?? c.id} (release ${c.release ?? "?"})`);
    await docker.getContainer(c.id).stop({ t: 10 }).catch(() => undefined);
  }
  let newId: string | undefined;
  try {
    if (signal.aborted) throw new Error(CANCELLED);
    const created = await docker.createContainer(options("real", containerName(job.app, job.id, suffix)));
    newId = created.id;
    await created.start();
    const health = await waitHealthy(docker, created.id, run.healthcheck, signal);
    if (!health.ok) {
      const outcome = await failNew(ctx, created.id, health.reason, result);
      await restoreOld(ctx, stepAside);
      return outcome;
    }
    result.healthUrl = health.url;
  } catch (err) {
    if (newId) await stopAndRemove(docker, newId, 0);
    await restoreOld(ctx, stepAside);
    return { ok: false, error: signal.aborted ? CANCELLED : `deploy: starting the new container failed: ${(err as Error).message}`, result };
  }

  for (const c of old) {
    log("system", `deploy: removing ${c.name ?? c.id}`);
    // The new release serves already; a leftover old container is reported, not fatal.
    await stopAndRemove(docker, c.id, 10).catch((err: Error) => log("stderr", `deploy: could not remove ${c.id}: ${err.message}`));
  }
  log("system", `deploy: ${job.app} release ${release} is serving (${newId.slice(0, 12)})`);
  if (job.spec.keepImages) {
    const repositories = [prepared.image, job.spec.image, `deploybot/${job.app.toLowerCase()}`].filter((r): r is string => !!r);
    const protect = [...(job.spec.protectImages ?? []), prepared.image];
    result.prunedImages = (await pruneAppImages(docker, { repositories, keep: job.spec.keepImages, protect }, log)).length;
  }
  return { ok: true, result: { ...result, containerId: newId, containerName: containerName(job.app, job.id, suffix), replaced: old.map((c) => c.id) } };
}

/** The new container failed: keep its last words for the error, then remove it. */
async function failNew(ctx: JobContext, id: string, reason: string, result: Record<string, unknown>): Promise<JobOutcome> {
  const lines = reason === CANCELLED ? [] : await lastLogLines(ctx.docker, id, 20);
  await stopAndRemove(ctx.docker, id, 0);
  if (reason === CANCELLED) return { ok: false, error: CANCELLED, result };
  ctx.log("system", `deploy: new container failed: ${reason}`);
  const tail = lines.length > 0 ? `\nlast log lines of the new container:\n${lines.join("\n")}` : " (the new container logged nothing)";
  return { ok: false, error: `${reason}${tail}`, result: { ...result, lastLogLines: lines } };
}

/** Brings back what we stopped; never takes the job signal, since it runs on cancel too. */
async function restoreOld(ctx: JobContext, stopped: ManagedContainer[]): Promise<void> {
  for (const c of stopped) {
    ctx.log("system", `deploy: restarting previous ${c.name ?? c.id}`);
    await ctx.docker
      .getContainer(c.id)
      .start()
      .catch((err: Error) => ctx.log("stderr", `deploy: could not restart ${c.name ?? c.id}: ${err.message}`));
  }
}
