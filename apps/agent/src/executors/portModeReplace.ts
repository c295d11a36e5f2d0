import { lastLogLines } from "../docker/containerLogs";
import { containerName, containerOptions } from "../docker/containerSpec";
import { waitHealthy } from "../docker/healthCheck";
import { LABELS, listAppContainers, type ManagedContainer, managedLabels, stopAndRemove } from "../docker/managedContainers";
import type { RollOutContext, RollOutOutcome, RollOutPlan } from "./rollOut";
import { CANCELLED } from "./types";

/**
 * Port mode (an app with published host ports and no domains): one container per host.
 * With `run.stop_first` step 1 is skipped: the new container is started only once the old one
 * has stopped (a volume's data is never opened twice), and a broken release costs downtime.
 *
 * The old container holds the app's host ports, so a true blue/green on the same host port is
 * impossible on one engine. We do "verify, then swap":
 *  1. start the new image as a *candidate* with its ports on random 127.0.0.1 ports and run the
 *     health check against it, while the old container keeps serving untouched. A broken build,
 *     a crash on boot or a failing /health is caught here with zero downtime.
 *  2. stop the old container(s) (kept, not removed), start the new one with the real ports and
 *     check it again. Requests fail during this gap: stop + start + the app's warm-up (issue 10
 *     measured 4-5 refused connections, ~1.2 s, per deploy). Give the app a domain to close it.
 *  3. healthy: remove the old ones. Not healthy (or start fails, e.g. the port is taken by
 *     something else, or the job is cancelled): remove the new one and start the old ones again.
 */
export async function portModeReplace(ctx: RollOutContext, plan: RollOutPlan): Promise<RollOutOutcome> {
  const { docker, signal, log } = ctx;
  const { run } = plan;
  const labels = managedLabels(plan.app, plan.jobId, plan.release);
  const old = await listAppContainers(docker, plan.app);
  const suffix = (plan.attempt ?? 1) > 1 ? `-${plan.attempt}` : "";
  const options = (publish: "real" | "temporary", name: string, extra: Record<string, string> = {}) =>
    containerOptions({ name, image: plan.image, run, secretEnv: plan.secretEnv, labels: { ...labels, ...extra }, publish, mounts: plan.mounts });

  // stop_first: the data may not be opened by two containers, so no candidate either.
  if (run.stop_first) log("system", "deploy: stop_first: the old container stops before the new one starts (no candidate)");
  else {
    log("system", "deploy: starting a candidate on temporary ports for the health check");
    let candidateId: string | undefined;
    try {
      const candidate = await docker.createContainer(options("temporary", containerName(plan.app, plan.jobId, `${suffix}-candidate`), { [LABELS.role]: "candidate" }));
      candidateId = candidate.id;
      await candidate.start();
      const health = await waitHealthy(docker, candidate.id, run.healthcheck, signal);
      if (!health.ok) return await failNew(ctx, candidate.id, health.reason);
      log("system", `deploy: candidate healthy${health.url ? ` at ${health.url}` : ""}`);
      // It never served traffic: no grace period (an app that ignores SIGTERM would cost 5 s).
      await stopAndRemove(docker, candidate.id, 0);
    } catch (err) {
      if (candidateId) await stopAndRemove(docker, candidateId, 0);
      return { ok: false, error: signal.aborted ? CANCELLED : `deploy: starting the candidate failed: ${(err as Error).message}` };
    }
  }

  const stepAside = old.filter((c) => c.state === "running");
  for (const c of stepAside) {
    log("system", `deploy: stopping ${c.name ?? c.id} (release ${c.release ?? "?"})`);
    await docker.getContainer(c.id).stop({ t: 10 }).catch(() => undefined);
  }
  let newId: string | undefined;
  let healthUrl: string | undefined;
  try {
    if (signal.aborted) throw new Error(CANCELLED);
    const created = await docker.createContainer(options("real", containerName(plan.app, plan.jobId, suffix)));
    newId = created.id;
    await created.start();
    const health = await waitHealthy(docker, created.id, run.healthcheck, signal);
    if (!health.ok) {
      const outcome = await failNew(ctx, created.id, health.reason);
      await restoreOld(ctx, stepAside);
      return outcome;
    }
    healthUrl = health.url;
  } catch (err) {
    if (newId) await stopAndRemove(docker, newId, 0);
    await restoreOld(ctx, stepAside);
    return { ok: false, error: signal.aborted ? CANCELLED : `deploy: starting the new container failed: ${(err as Error).message}` };
  }

  for (const c of old) {
    log("system", `deploy: removing ${c.name ?? c.id}`);
    // The new release serves already; a leftover old container is reported, not fatal.
    await stopAndRemove(docker, c.id, 10).catch((err: Error) => log("stderr", `deploy: could not remove ${c.id}: ${err.message}`));
  }
  return { ok: true, containers: [newId], removed: old.map((c) => c.id), ...(healthUrl ? { healthUrl } : {}) };
}

/** The new container failed: keep its last words for the error, then remove it. */
export async function failNew(ctx: RollOutContext, id: string, reason: string): Promise<RollOutOutcome & { ok: false }> {
  const lines = reason === CANCELLED ? [] : await lastLogLines(ctx.docker, id, 20);
  await stopAndRemove(ctx.docker, id, 0);
  if (reason === CANCELLED) return { ok: false, error: CANCELLED };
  ctx.log("system", `deploy: new container failed: ${reason}`);
  const tail = lines.length > 0 ? `\nlast log lines of the new container:\n${lines.join("\n")}` : " (the new container logged nothing)";
  return { ok: false, error: `${reason}${tail}`, lastLogLines: lines };
}

/** Brings back what we stopped; never takes the job signal, since it runs on cancel too. */
async function restoreOld(ctx: RollOutContext, stopped: ManagedContainer[]): Promise<void> {
  for (const c of stopped) {
    ctx.log("system", `deploy: restarting previous ${c.name ?? c.id}`);
    await ctx.docker
      .getContainer(c.id)
      .start()
      .catch((err: Error) => ctx.log("stderr", `deploy: could not restart ${c.name ?? c.id}: ${err.message}`));
  }
}
