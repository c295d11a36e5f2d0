import type { AcmeAccount, ProxySpec, RunSpec, TlsMode } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import { containerName, containerOptions } from "../docker/containerSpec";
import { waitHealthy } from "../docker/healthCheck";
import { listAppContainers, type ManagedContainer, managedLabels, stopAndRemove } from "../docker/managedContainers";
import { ensureNetwork } from "../docker/network";
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
}

export interface RollOutContext {
  docker: Dockerode;
  log: JobLog;
  signal: AbortSignal;
  /** the host proxy; required for routed plans */
  proxy?: HostProxy;
}

export type RollOutOutcome =
  | { ok: true; containers: string[]; removed: string[]; healthUrl?: string }
  | { ok: false; error: string; lastLogLines?: string[] };

/**
 * The one way an app's containers are replaced on a host (deploy, rollback, restart, scale).
 * Routed apps follow kamal-proxy's order for each replica: start the new container, health-gate
 * it on the deploybot network, add it to the route, then take one old container out (drain:
 * no new requests, in-flight ones finish up to `drain_seconds`) and stop it. One in, one out:
 * with N >= 2 replicas the route never has fewer than N healthy upstreams, and a release that
 * never becomes healthy never enters the route (the old containers keep serving; the new ones
 * are removed). Apps with published ports and no domains keep port mode (portModeReplace).
 */
export async function rollOut(ctx: RollOutContext, plan: RollOutPlan): Promise<RollOutOutcome> {
  if (!plan.route && plan.run.ports.length > 0) {
    if (plan.replicas > 1) return { ok: false, error: "replicas > 1 needs domains: a published host port can be bound by one container only" };
    return portModeReplace(ctx, plan);
  }
  const { docker, log, signal, proxy } = ctx;
  const route = plan.route;
  if (route && !proxy) return { ok: false, error: "this app has domains, but this agent runs no proxy (DEPLOYBOT_PROXY=off)" };
  if (route && proxy) {
    await ensureNetwork(docker, proxy.network);
    await proxy.ensureRoute({
      app: plan.app,
      domains: route.domains,
      tls: route.tls,
      healthPath: route.proxy.health_path,
      responseTimeoutSeconds: route.proxy.response_timeout_seconds,
      ...(route.acme ? { acme: route.acme } : {}),
    });
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
  let healthUrl: string | undefined;

  /** A failure: take what this rollout added out of the route and remove it; the old ones keep serving. */
  const undo = async (outcome: RollOutOutcome): Promise<RollOutOutcome> => {
    for (const id of started) {
      if (route && proxy) await proxy.removeUpstream(plan.app, id, 0).catch(() => undefined);
      await stopAndRemove(docker, id, 0);
    }
    return outcome;
  };

  const takeOut = async (c: ManagedContainer) => {
    const drain = route?.proxy.drain_seconds ?? 0;
    if (route && proxy) {
      const drained = await proxy.removeUpstream(plan.app, c.id, drain);
      log("system", `deploy: ${c.name ?? c.id} out of the route (drained in ${drained.waitedMs} ms${drained.sessionsLeft ? `, ${drained.sessionsLeft} request(s) cut` : ""})`);
    }
    // The route sends it nothing any more: its own stop grace only covers the app's shutdown.
    await stopAndRemove(docker, c.id, 10).catch((err: Error) => log("stderr", `deploy: could not remove ${c.id}: ${err.message}`));
  };

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
    if (next) await takeOut(next);
  }
  // More old containers than new ones (a scale down, or N shrank): the rest leave the same way.
  for (const c of old) await takeOut(c);
  if (route && proxy) {
    // Upstreams whose container went away by other means (removed by hand, an older agent).
    const live = new Set([...kept.map((c) => c.id), ...started]);
    for (const u of proxy.table.get(plan.app)?.upstreams ?? []) {
      if (!live.has(u.container)) await proxy.removeUpstream(plan.app, u.container, 0);
    }
  }
  return { ok: true, containers: [...kept.map((c) => c.id), ...started], removed: replaced.map((c) => c.id), ...(healthUrl ? { healthUrl } : {}) };
}
