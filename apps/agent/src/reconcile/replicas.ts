import { randomBytes } from "node:crypto";
import { type DesiredApp, runSpec } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import { containerName, containerOptions } from "../docker/containerSpec";
import { LABELS, managedLabels } from "../docker/managedContainers";
import { type MountPolicy, prepareMounts } from "../docker/volumes";
import type { HostProxy } from "../proxy";

/** The job label of containers reconcile (or an app operation) created rather than a deploy. */
export const RECONCILE_JOB = "reconcile";

export type ServingContainer = Dockerode.ContainerInfo;

/** The containers of an app that serve it: not a deploy's candidate, not the running job's. */
export function servingContainers(all: Dockerode.ContainerInfo[], app: string, busyJobId: string | null): ServingContainer[] {
  return all.filter((c) => c.Labels?.[LABELS.app] === app && !c.Labels?.[LABELS.role] && (!busyJobId || c.Labels?.[LABELS.job] !== busyJobId));
}

/** Those of the desired release (all of them when the entry names none: state from before releases). */
export const ofRelease = (containers: ServingContainer[], release: string | null): ServingContainer[] =>
  release ? containers.filter((c) => c.Labels?.[LABELS.release] === release) : containers;

/**
 * One more container of the desired release, created from its image and config, started. An app
 * with domains joins the proxy's network and its route (HAProxy's own check keeps it out of
 * traffic until it answers); others publish their ports as a deploy does.
 */
export async function createReplica(docker: Dockerode, entry: DesiredApp, proxy?: HostProxy, mountPolicy?: MountPolicy): Promise<string> {
  if (!entry.image) throw new Error(`no image is known for release ${entry.release ?? "?"} of ${entry.app}; deploy it again`);
  const run = entry.run ?? runSpec.parse({});
  // the recreated container finds the data its predecessor left in the app's named volumes
  const mounts = await prepareMounts(docker, entry.app, run, mountPolicy);
  if (!mounts.ok) throw new Error(mounts.reason);
  const options = containerOptions({
    name: containerName(entry.app, `r${randomBytes(4).toString("hex")}`),
    image: entry.image,
    run,
    secretEnv: entry.secretEnv,
    mounts: mounts.mounts,
    labels: managedLabels(entry.app, RECONCILE_JOB, entry.release ?? "unknown"),
    ...(entry.route && proxy ? { publish: "none" as const, network: proxy.network } : { publish: "real" as const }),
  });
  const created = await docker.createContainer(options);
  try {
    await created.start();
    if (entry.route && proxy) {
      const info = await created.inspect();
      const ip = info.NetworkSettings.Networks?.[proxy.network]?.IPAddress;
      if (!ip) throw new Error(`no address on network ${proxy.network}`);
      await proxy.addUpstream(entry.app, { container: created.id, ip, port: entry.route.proxy.port, release: entry.release ?? "unknown" });
    }
  } catch (err) {
    await created.remove({ force: true }).catch(() => undefined);
    throw err;
  }
  return created.id;
}
