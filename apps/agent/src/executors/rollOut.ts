import type { AcmeAccount, ProxySpec, RunSpec, TlsMode } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import { containerName, containerOptions } from "../docker/containerSpec";
import { waitHealthy } from "../docker/healthCheck";
import { listAppContainers, type ManagedContainer, managedLabels, stopAndRemove } from "../docker/managedContainers";
import { ensureNetwork } from "../docker/network";
import { type MountPolicy, prepareMounts } from "../docker/volumes";
import type { HostProxy } from "../proxy/hostProxy";
import { failNew, portModeReplace } from "./portModeReplace";
import { CANCELLED, type JobLog } from "./types";

/** What to run: one release of an app, `replicas` times, routed or not. */
export interface RollOutPlan {
  app: string;
  /** the release id the containers are labelled with */
  release: string;
  image: string;
  run: RunSpec;
  secretEnv?: Record<string, string>;
  replicas: number;
  /** routed through the host proxy; absent: port mode (published ports) or no traffic at all */
  route?: { domains: string[]; proxy: ProxySpec; tls: TlsMode; acme?: AcmeAccount };
  /** new containers carry this job id (a cancelled job's containers are found by it) */
  jobId: string;
  attempt?: number;
  /**
   * Keep running containers of this same release (scale up/down touches only the difference).
   * Default false: every container is replaced (deploy, rollback, restart).
   */
  keepSameRelease?: boolean;
  /** the app's volumes resolved on this host; set by rollOut itself */
  mounts?: Dockerode.MountSettings[];
}

export interface RollOutContext {
  docker: Dockerode;
  log: JobLog;
  signal: AbortSignal;
  /** the host proxy; required for routed plans */
  proxy?: HostProxy;
  mountPolicy?: MountPolicy;
}

export type RollOutOutcome =
  | { ok: true; containers: string[]; removed: string[]; healthUrl?: string }
  | { ok: false; error: string; lastLogLines?: string[]; keepContainers?: string[] };

/**
 * The one way an app's containers are replaced on a host (deploy, rollback, restart, scale).
 * Routed apps follow kamal-proxy's order for each replica: start the new container, health-gate
 * it on the deploybot network, add it to the route, then take one old container out (drain:
 * no new requests, in-flight ones finish up to `drain_seconds`) and stop it. One in, one out:
 * with N >= 2 replicas the route never has fewer than N healthy upstreams, and a release that
 * never becomes healthy never enters the route (the old containers keep serving; the new ones
 * are removed). Apps with published ports and no domains keep port mode (portModeReplace).
 */
export async function rollOut(ctx: RollOutContext, input: RollOutPlan): Promise<RollOutOutcome> {
  const outcome = await rollOutContainers(ctx, input);
  if (outcome.ok && !input.route) await leaveRoute(ctx, input.app);
  return outcome;
}

/**
 * An app deployed without domains whose earlier release had them (domains taken out of
 * apps.yaml): once its new containers serve, its route leaves the host proxy, so the proxy no
 * longer answers its old domains with a 503 from containers that are gone, nor keeps claiming
 * them for this app. Its certificate stays on disk, reused if the domains come back.
 */
async function leaveRoute(ctx: RollOutContext, app: string): Promise<void> {
  const route = ctx.proxy?.table.get(app);
  if (!ctx.proxy || !route) return;
  try {
    await ctx.proxy.removeRoute(app);
    ctx.log("system", `deploy: ${app} has no domains now: ${route.domains.join(", ")} left this host's proxy`);
  } catch (err) {
    // the new containers serve already; the next deploy of the app tries again
    ctx.log("stderr", `deploy: ${app} has no domains now, but its route for ${route.domains.join(", ")} could not leave this host's proxy: ${(err as Error).message}`);
  }
}

async function rollOutContainers(ctx: RollOutContext, input: RollOutPlan): Promise<RollOutOutcome> {
  // Every container of the app, old and new, mounts the same named volumes (kept across deploys).
  const mounts = await prepareMounts(ctx.docker, input.app, input.run, ctx.mountPolicy);
  if (!mounts.ok) return { ok: false, error: `deploy: ${mounts.reason}; nothing was started` };
  const plan: RollOutPlan = { ...input, mounts: mounts.mounts };
  if (!plan.route && plan.run.ports.length > 0) {
    if (plan.replicas > 1) return { ok: false, error: "replicas > 1 needs domains: a published host port can be bound by one container only" };
    return portModeReplace(ctx, plan);
  }
  const { docker, log, signal, proxy } = ctx;
  const route = plan.route;
  if (route && !proxy) return { ok: false, error: "this app has domains, but this agent runs no proxy (DEPLOYBOT_PROXY=off)" };
  if (route && proxy) {
    await ensureNetwork(docker, proxy.network);
    const { certificateWarning } = await proxy.ensureRoute({
      app: plan.app,
      domains: route.domains,
      tls: route.tls,
      healthPath: route.proxy.health_path,
      responseTimeoutSeconds: route.proxy.response_timeout_seconds,
      ...(route.acme ? { acme: route.acme } : {}),
    });
    if (certificateWarning) log("stderr", `deploy: ${certificateWarning}`);
  }
  const existing = await listAppContainers(docker, plan.app);
  const kept = plan.keepSameRelease ? existing.filter((c) => c.release === plan.release && c.state === "running").slice(0, plan.replicas) : [];
  const replaced: ManagedContainer[] = existing.filter((c) => !kept.includes(c));
  const old = [...replaced];
  const toStart = plan.replicas - kept.length;
  const check = route
    ? {
        path: route.proxy.health_path,
        port: route.proxy.port,
        timeout_seconds: plan.run.healthcheck?.timeout_seconds ?? 30,
        interval_seconds: plan.run.healthcheck?.interval_seconds ?? 0.5,
      }
    : plan.run.healthcheck;
  const labels = managedLabels(plan.app, plan.jobId, plan.release);
  const suffix = (plan.attempt ?? 1) > 1 ? `-${plan.attempt}` : "";
  const started: string[] = [];
  /** old containers taken out of the route and stopped, each with the new one that took its place; removed only at the end */
  const swapped: { old: ManagedContainer; replacement: string | null }[] = [];
  let healthUrl: string | undefined;
  const drainSeconds = route?.proxy.drain_seconds ?? 0;

  const takeOut = async (c: ManagedContainer, how: "stop" | "remove") => {
    if (route && proxy) {
      const drained = await proxy.removeUpstream(plan.app, c.id, drainSeconds);
      log("system", `deploy: ${c.name ?? c.id} out of the route (drained in ${drained.waitedMs} ms${drained.sessionsLeft ? `, ${drained.sessionsLeft} request(s) cut` : ""})`);
    }
    // The route sends it nothing any more: its own stop grace only covers the app's shutdown.
    if (how === "remove") await stopAndRemove(docker, c.id, 10).catch((err: Error) => log("stderr", `deploy: could not remove ${c.id}: ${err.message}`));
    else await docker.getContainer(c.id).stop({ t: 10 }).catch(() => undefined);
  };

  /**
   * Puts a stopped old container back into the route (a rollback). Not under the job's signal,
   * which is what fired: bounded by the health check's own timeout instead.
   */
  const bringBack = async (c: ManagedContainer): Promise<boolean> => {
    try {
      await docker.getContainer(c.id).start();
      const health = await waitHealthy(docker, c.id, check, AbortSignal.timeout(((check?.timeout_seconds ?? 30) + 5) * 1000), route && proxy ? proxy.network : undefined);
      if (!health.ok) throw new Error(health.reason);
      if (route && proxy) {
        const info = await docker.getContainer(c.id).inspect();
        const ip = info.NetworkSettings.Networks?.[proxy.network]?.IPAddress;
        if (!ip) throw new Error(`no address on network ${proxy.network}`);
        await proxy.addUpstream(plan.app, { container: c.id, ip, port: route.proxy.port, release: c.release ?? "unknown" });
      }
      return true;
    } catch (err) {
      log("stderr", `deploy: could not bring ${c.name ?? c.id} back: ${(err as Error).message}`);
      return false;
    }
  };

  /**
   * A failure or a cancel: the new containers that never replaced an old one leave at once (they
   * are not needed for N); each one that did is swapped back for its old container (started,
   * health-gated, in the route, then the new one drained out), so the app never has fewer than N
   * upstreams. An old container that does not come back keeps its replacement serving, which the
   * job's cleanup must then leave alone (keepContainers).
   */
  const undo = async (outcome: RollOutOutcome & { ok: false }): Promise<RollOutOutcome> => {
    const replacements = new Set(swapped.map((s) => s.replacement).filter((id): id is string => id !== null));
    for (const id of started.filter((id) => !replacements.has(id))) {
      if (route && proxy) await proxy.removeUpstream(plan.app, id, 0).catch(() => undefined);
      await stopAndRemove(docker, id, 0);
    }
    const keep: string[] = [];
    for (const { old, replacement } of swapped.reverse()) {
      if (await bringBack(old)) {
        log("system", `deploy: ${old.name ?? old.id} (release ${old.release ?? "?"}) is back in the route`);
        if (replacement) await takeOut({ id: replacement }, "remove");
      } else if (replacement) {
        keep.push(replacement);
        await stopAndRemove(docker, old.id, 0).catch(() => undefined);
      }
    }
    if (keep.length > 0) log("system", `deploy: ${keep.length} container(s) of release ${plan.release} keep serving in place of old ones that did not come back`);
    return { ...outcome, ...(keep.length > 0 ? { keepContainers: keep } : {}) };
  };

  // stop_first: the old containers leave (drained, stopped, kept for an undo) before a new one
  // starts, so the app's data is never opened by two containers; a failure brings them back.
  if (plan.run.stop_first) {
    for (const c of old.filter((c) => c.state === "running")) {
      old.splice(old.indexOf(c), 1);
      log("system", `deploy: stop_first: stopping ${c.name ?? c.id} before the new container starts`);
      await takeOut(c, "stop");
      swapped.push({ old: c, replacement: null });
    }
  }

  for (let i = 0; i < toStart; i++) {
    if (signal.aborted) return undo({ ok: false, error: CANCELLED });
    const name = containerName(plan.app, plan.jobId, `${suffix}${plan.replicas > 1 ? `-r${kept.length + i + 1}` : ""}`);
    let id: string;
    try {
      const created = await docker.createContainer(
        containerOptions({
          name,
          image: plan.image,
          run: plan.run,
          secretEnv: plan.secretEnv,
          labels,
          publish: "none",
          ...(route && proxy ? { network: proxy.network } : {}),
          mounts: plan.mounts,
        }),
      );
      id = created.id;
      started.push(id);
      await created.start();
    } catch (err) {
      return undo({ ok: false, error: signal.aborted ? CANCELLED : `deploy: starting ${name} failed: ${(err as Error).message}` });
    }
    const health = await waitHealthy(docker, id, check, signal, route && proxy ? proxy.network : undefined);
    if (!health.ok) {
      started.splice(started.indexOf(id), 1);
      const failed = await failNew(ctx, id, signal.aborted ? CANCELLED : health.reason);
      return undo(failed);
    }
    healthUrl ??= health.url;
    log("system", `deploy: ${name} healthy${health.url ? ` at ${health.url}` : ""}`);
    if (route && proxy) {
      const info = await docker.getContainer(id).inspect();
      const ip = info.NetworkSettings.Networks?.[proxy.network]?.IPAddress;
      if (!ip) return undo({ ok: false, error: `deploy: ${name} has no address on network ${proxy.network}` });
      await proxy.addUpstream(plan.app, { container: id, ip, port: route.proxy.port, release: plan.release });
      log("system", `deploy: ${name} is in the route for ${route.domains.join(", ")}`);
    }
    const next = old.shift();
    // Not cut by a cancel: the step in flight finishes, so the route is back to N before undo.
    if (next) {
      await takeOut(next, "stop");
      swapped.push({ old: next, replacement: id });
    }
  }
  // More old containers than new ones (a scale down, or N shrank): the rest leave the same way.
  for (const c of old) await takeOut(c, "remove");
  // Kept stopped until now, so that a cancel could still put them back.
  for (const { old: c } of swapped) await stopAndRemove(docker, c.id, 0).catch((err: Error) => log("stderr", `deploy: could not remove ${c.id}: ${err.message}`));
  if (route && proxy) {
    // Upstreams whose container went away by other means (removed by hand, an older agent).
    const live = new Set([...kept.map((c) => c.id), ...started]);
    for (const u of proxy.table.get(plan.app)?.upstreams ?? []) {
      if (!live.has(u.container)) await proxy.removeUpstream(plan.app, u.container, 0);
    }
  }
  return { ok: true, containers: [...kept.map((c) => c.id), ...started], removed: replaced.map((c) => c.id), ...(healthUrl ? { healthUrl } : {}) };
}
