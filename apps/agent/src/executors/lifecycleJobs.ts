import { listAppContainers, stopAndRemove } from "../docker/managedContainers";
import type { ClaimedJob, JobContext, JobOutcome } from "./types";

export type LifecycleAction = "stop" | "restart" | "remove";

/**
 * stop / restart / remove every managed container of the app (found by label, so containers
 * created by older agents or by hand with the labels are included). Stop and remove are
 * idempotent: nothing to act on is success. Restart with nothing to restart is a failure.
 */
export async function lifecycleJob(job: ClaimedJob, ctx: JobContext, action: LifecycleAction): Promise<JobOutcome> {
  const containers = await listAppContainers(ctx.docker, job.app);
  if (containers.length === 0) {
    ctx.log("system", `${action}: no managed containers for ${job.app}`);
    return action === "restart" ? { ok: false, error: `no managed containers for ${job.app}` } : { ok: true, result: { containers: [] } };
  }
  const errors: string[] = [];
  for (const c of containers) {
    if (ctx.signal.aborted) break;
    ctx.log("system", `${action}: ${c.name ?? c.id} (release ${c.release ?? "?"}, ${c.state ?? "?"})`);
    const container = ctx.docker.getContainer(c.id);
    try {
      if (action === "remove") await stopAndRemove(ctx.docker, c.id, 10);
      else if (action === "restart") await container.restart({ t: 10 });
      else if (c.state === "running") await container.stop({ t: 10 });
    } catch (err) {
      errors.push(`${c.name ?? c.id}: ${(err as Error).message}`);
    }
  }
  const result = { containers: containers.map((c) => c.id) };
  if (ctx.signal.aborted) return { ok: false, error: "cancelled", result };
  return errors.length === 0 ? { ok: true, result } : { ok: false, error: `${action} failed for ${errors.join("; ")}`, result };
}
