import { runSpec } from "@deploybot/protocol";
import { listManagedInfo, stopAndRemove } from "../docker/managedContainers";
import { type RollOutPlan, rollOut } from "../executors/rollOut";
import type { ClaimedJob, JobContext, JobOutcome } from "../executors/types";
import type { DesiredStore } from "./desiredStore";
import { servingContainers } from "./replicas";

export type AppOperationKind = "stop" | "start" | "restart" | "scale" | "remove";

/**
 * stop / start / restart / scale / remove of an app on this host, as a job. start, restart and
 * scale go through `rollOut`, the one path that replaces an app's containers (health-gated, and
 * through the host proxy for apps with domains): restart replaces every container, start and
 * scale keep the running ones of the current release. On success the host's desired state is
 * changed here at once, so the reconcile loop agrees before the controller's copy arrives.
 */
export async function appOperationJob(job: ClaimedJob, ctx: JobContext, store: DesiredStore, kind: AppOperationKind): Promise<JobOutcome> {
  const { docker, log, proxy } = ctx;
  const entry = store.get(job.app);
  const containers = servingContainers(await listManagedInfo(docker), job.app, job.id);
  const result = { release: entry?.release ?? null, containers: containers.map((c) => c.Id) };
  const routed = entry?.route && proxy?.table.get(job.app) ? proxy : null;

  if (kind === "stop" || kind === "remove") {
    for (const c of containers) {
      log("system", `${kind}: ${c.Names?.[0]?.replace(/^\//, "") ?? c.Id.slice(0, 12)} (${c.State})`);
      // out of the route first, its requests drained, then stopped
      if (routed) await routed.removeUpstream(job.app, c.Id, entry?.route?.proxy.drain_seconds ?? 0).catch(() => undefined);
      if (kind === "remove") await stopAndRemove(docker, c.Id, 10);
      else if (c.State === "running") await docker.getContainer(c.Id).stop({ t: 10 });
    }
    if (kind === "remove" && routed) await routed.removeRoute(job.app).catch(() => undefined);
    if (containers.length === 0) log("system", `${kind}: no containers of ${job.app} on this host`);
    store.setLocal(job.app, job.id, { state: kind === "stop" ? "stopped" : "removed" });
    return { ok: true, result };
  }

  if (!entry?.image) return { ok: false, error: `${job.app} has no deployed release on this host; deploy it first`, result };
  const replicas = kind === "scale" ? (job.spec.replicas ?? 1) : Math.max(1, entry.replicas);
  const plan: RollOutPlan = {
    app: job.app,
    release: entry.release ?? "unknown",
    image: entry.image,
    run: entry.run ?? runSpec.parse({}),
    ...(entry.secretEnv ? { secretEnv: entry.secretEnv } : {}),
    replicas,
    jobId: job.id,
    attempt: job.attempt,
    keepSameRelease: kind !== "restart",
    ...(entry.route ? { route: entry.route } : {}),
  };
  log("system", `${kind}: ${job.app} release ${plan.release}, ${replicas} container(s)${kind === "restart" ? ", each replaced" : ""}`);
  const outcome = await rollOut(ctx, plan);
  if (!outcome.ok) {
    const keep = outcome.keepContainers ? { keepContainers: outcome.keepContainers } : {};
    return { ok: false, error: outcome.error, result: { ...result, ...(outcome.lastLogLines ? { lastLogLines: outcome.lastLogLines } : {}) }, ...keep };
  }
  store.setLocal(job.app, job.id, { state: "running", ...(kind === "scale" ? { replicas } : {}) });
  return { ok: true, result: { ...result, containers: outcome.containers, replaced: outcome.removed } };
}
