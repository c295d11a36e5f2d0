import type Dockerode from "dockerode";

/** Every container the agent creates carries these, so it can list, replace and report them. */
export const LABELS = {
  managed: "deploybot.managed",
  app: "deploybot.app",
  job: "deploybot.job",
  release: "deploybot.release",
  /** "candidate" while a deploy health-checks on a temporary port, "run" for a run's terminating container; absent for serving containers */
  role: "deploybot.role",
  /** the agent (host name) that owns the container, so agents sharing one engine never touch each other's */
  host: "deploybot.host",
} as const;

let agentHost: string | null = null;

/** The labels of a container created before `deploybot.host` existed (agents before 2026-11-22). */
export type LegacyOwnership = (labels: Record<string, string>) => boolean;
let ownsLegacy: LegacyOwnership = () => false;

/**
 * Scopes every container this process creates and lists to one agent. Set once by the daemon;
 * unset (executor tests) means every managed container on the engine.
 *
 * `legacy` decides about managed containers without the host label: an agent upgraded from a
 * version before that label must still see the containers it started, or a deploy's replace
 * leaves the old one holding the host port and the new one cannot start. The daemon claims only
 * those of apps this host runs (its desired state) or of the job it holds, so a container of
 * another agent on a shared engine is still never touched.
 */
export function scopeToHost(hostname: string | null, legacy: LegacyOwnership = () => false): void {
  agentHost = hostname;
  ownsLegacy = legacy;
}

/** The host label of what this agent creates (empty when unscoped): volumes carry it too. */
export const hostScopeLabels = (): Record<string, string> => (agentHost ? { [LABELS.host]: agentHost } : {});

/** Same shape as `managedContainer` in @deploybot/protocol (heartbeats). */
export interface ManagedContainer {
  id: string;
  name?: string;
  app?: string;
  job?: string;
  release?: string;
  image?: string;
  state?: string;
}

export const managedLabels = (app: string, jobId: string, release: string): Record<string, string> => ({
  [LABELS.managed]: "true",
  [LABELS.app]: app,
  [LABELS.job]: jobId,
  [LABELS.release]: release,
  ...(agentHost ? { [LABELS.host]: agentHost } : {}),
});

/** A container summary as a heartbeat reports it. */
export const toManaged = (c: Dockerode.ContainerInfo): ManagedContainer => ({
  id: c.Id,
  name: c.Names?.[0]?.replace(/^\//, ""),
  app: c.Labels?.[LABELS.app],
  job: c.Labels?.[LABELS.job],
  release: c.Labels?.[LABELS.release],
  image: c.Image,
  state: c.State,
});

async function listByLabels(docker: Dockerode, labels: string[]): Promise<Dockerode.ContainerInfo[]> {
  const all = await docker.listContainers({ all: true, filters: { label: [`${LABELS.managed}=true`, ...labels] } });
  if (!agentHost) return all;
  return all.filter((c) => {
    const host = c.Labels?.[LABELS.host];
    return host === agentHost || (host === undefined && ownsLegacy(c.Labels ?? {}));
  });
}

/** The engine's own summaries of this agent's managed containers (labels, state), for reconcile. */
export const listManagedInfo = (docker: Dockerode): Promise<Dockerode.ContainerInfo[]> => listByLabels(docker, []);

export async function listManagedContainers(docker: Dockerode): Promise<ManagedContainer[]> {
  return (await listByLabels(docker, [])).map(toManaged);
}

export async function listAppContainers(docker: Dockerode, app: string): Promise<ManagedContainer[]> {
  return (await listByLabels(docker, [`${LABELS.app}=${app}`])).map(toManaged);
}

/** For restart recovery: the container a held job started, if it still exists. */
export async function findJobContainer(docker: Dockerode, jobId: string): Promise<ManagedContainer | null> {
  const found = (await listByLabels(docker, [`${LABELS.job}=${jobId}`])).map(toManaged);
  // A deploy may briefly own a candidate and the serving container; report the serving one.
  return found.find((c) => c.state === "running") ?? found[0] ?? null;
}

/**
 * Stops (SIGTERM, `stopSeconds` grace, then the engine's SIGKILL), kills if it still runs, and
 * removes. Never takes the job's signal: cleanup must run precisely when the job was aborted.
 */
export async function stopAndRemove(docker: Dockerode, id: string, stopSeconds = 5): Promise<void> {
  const container = docker.getContainer(id);
  await container.stop({ t: stopSeconds }).catch(() => undefined);
  const state = await container.inspect().catch(() => null);
  if (state?.State.Running) await container.kill().catch(() => undefined);
  await container.remove({ force: true, v: true }).catch((err: { statusCode?: number }) => {
    if (err.statusCode !== 404 && err.statusCode !== 409) throw err;
  });
}

/** Removes every container labelled with the job id; returns their ids. */
export async function cleanupJob(docker: Dockerode, jobId: string, keep: string[] = []): Promise<string[]> {
  const containers = (await listByLabels(docker, [`${LABELS.job}=${jobId}`])).filter((c) => !keep.includes(c.Id));
  await Promise.all(containers.map((c) => stopAndRemove(docker, c.Id)));
  return containers.map((c) => c.Id);
}
