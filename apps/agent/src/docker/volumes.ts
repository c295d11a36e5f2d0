import { realpath, stat } from "node:fs/promises";
import { type HostVolume, isWithin, parseVolumeMount, protectedPathProblem, type RunSpec, type VolumeMount, volumeName } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import { hostScopeLabels, LABELS } from "./managedContainers";

/** What this host lets apps mount from its file system. */
export interface MountPolicy {
  /** directories bind mounts must resolve into (DEPLOYBOT_AGENT_BIND_ROOTS); empty: no bind at all */
  bindRoots: string[];
  /** more paths no bind may touch (the agent's state dir: its token and the secrets it caches) */
  protectedPaths: string[];
}

export const NO_BINDS: MountPolicy = { bindRoots: [], protectedPaths: [] };

/** The label naming an app's volume as apps.yaml does. */
export const VOLUME_LABEL = "deploybot.volume";

export type MountsOutcome = { ok: true; mounts: Dockerode.MountSettings[] } | { ok: false; reason: string };

/**
 * The Docker mounts of an app's `run.volumes`, checked on this host now: every bind source is
 * resolved (realpath: symlinks and `..` followed) and must land below an allowed root and outside
 * the protected paths, and is mounted by its resolved path, so a later symlink swap of the path
 * as written changes nothing. Binds are checked before any volume is created: a refused entry
 * leaves nothing behind. Named volumes are created on first use with the app's labels; one that
 * exists without them (made by hand, or another app's by a collision) is refused, not adopted.
 */
export async function prepareMounts(docker: Dockerode, app: string, run: RunSpec, policy: MountPolicy = NO_BINDS): Promise<MountsOutcome> {
  const parsed: VolumeMount[] = [];
  for (const spec of run.volumes ?? []) {
    const entry = parseVolumeMount(spec);
    if ("problem" in entry) return { ok: false, reason: `volume ${entry.problem}` };
    parsed.push(entry);
  }
  const mounts: Dockerode.MountSettings[] = [];
  for (const entry of parsed) {
    if (entry.kind !== "bind") continue;
    const checked = await checkBindSource(entry.source, policy);
    if (!checked.ok) return { ok: false, reason: `bind mount ${entry.source}:${entry.target} refused: ${checked.reason}` };
    mounts.push({ Type: "bind", Source: checked.path, Target: entry.target, ReadOnly: entry.readOnly });
  }
  for (const entry of parsed) {
    if (entry.kind !== "named") continue;
    const ensured = await ensureVolume(docker, app, entry.name);
    if (!ensured.ok) return ensured;
    mounts.push({ Type: "volume", Source: ensured.name, Target: entry.target, ReadOnly: entry.readOnly });
  }
  return { ok: true, mounts };
}

const resolved = (p: string) => realpath(p).catch(() => null);

async function checkBindSource(source: string, policy: MountPolicy): Promise<{ ok: true; path: string } | { ok: false; reason: string }> {
  if (policy.bindRoots.length === 0) {
    return { ok: false, reason: "this host allows no bind mounts (DEPLOYBOT_AGENT_BIND_ROOTS is empty on its agent); use a named volume, or list the allowed directories there" };
  }
  const path = await resolved(source);
  if (!path) return { ok: false, reason: `${source} does not exist on this host (create it below one of DEPLOYBOT_AGENT_BIND_ROOTS first)` };
  const roots = (await Promise.all(policy.bindRoots.map(resolved))).filter((r): r is string => r !== null);
  if (!roots.some((root) => isWithin(path, root))) {
    const via = path === source ? "" : ` (it resolves to ${path})`;
    return { ok: false, reason: `${source}${via} is outside the directories this host allows (DEPLOYBOT_AGENT_BIND_ROOTS=${policy.bindRoots.join(",")})` };
  }
  const extra = (await Promise.all(policy.protectedPaths.map(async (p) => [p, await resolved(p)]))).flat().filter((p): p is string => !!p);
  const problem = protectedPathProblem(path, extra);
  if (problem) return { ok: false, reason: `${source}${path === source ? "" : ` (it resolves to ${path})`} may not be mounted: ${problem}` };
  if ((await stat(path)).isSocket()) return { ok: false, reason: `${path} is a socket` };
  return { ok: true, path };
}

async function ensureVolume(docker: Dockerode, app: string, name: string): Promise<{ ok: true; name: string } | { ok: false; reason: string }> {
  const dockerName = volumeName(app, name);
  const labels = { [LABELS.managed]: "true", [LABELS.app]: app, [VOLUME_LABEL]: name, ...hostScopeLabels() };
  const inspect = () =>
    docker
      .getVolume(dockerName)
      .inspect()
      .catch((err: { statusCode?: number }) => {
        if (err.statusCode === 404) return null;
        throw err;
      });
  let volume = await inspect();
  if (!volume) {
    // Creating an existing local volume returns it unchanged (no 409): a race with another replica is harmless.
    await docker.createVolume({ Name: dockerName, Labels: labels });
    volume = await inspect();
  }
  const found = volume?.Labels ?? {};
  if (found[LABELS.app] !== app || found[VOLUME_LABEL] !== name) {
    return { ok: false, reason: `Docker volume ${dockerName} exists but is not app ${app}'s volume '${name}' (its labels say otherwise); rename or remove it` };
  }
  return { ok: true, name: dockerName };
}

interface VolumeInfo {
  Name: string;
  Labels?: Record<string, string> | null;
  CreatedAt?: string;
  UsageData?: { Size: number; RefCount: number } | null;
}

async function listVolumeInfo(docker: Dockerode, app?: string): Promise<VolumeInfo[]> {
  const scope = Object.entries(hostScopeLabels()).map(([k, v]) => `${k}=${v}`);
  const filters = { label: [`${LABELS.managed}=true`, ...(app ? [`${LABELS.app}=${app}`] : []), ...scope] };
  const answer = (await docker.listVolumes({ filters })) as { Volumes?: VolumeInfo[] | null };
  return (answer.Volumes ?? []).filter((v) => v.Labels?.[VOLUME_LABEL]);
}

/**
 * Deletes an app's named volumes (a purge). Their containers must be gone: the engine refuses
 * a volume in use (409), which is reported, never forced.
 */
export async function purgeAppVolumes(docker: Dockerode, app: string): Promise<{ removed: string[]; errors: string[] }> {
  const removed: string[] = [];
  const errors: string[] = [];
  for (const v of await listVolumeInfo(docker, app)) {
    try {
      await docker.getVolume(v.Name).remove();
      removed.push(v.Name);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) continue;
      errors.push(`${v.Name}: ${(err as { json?: { message?: string } }).json?.message ?? (err as Error).message}`);
    }
  }
  return { removed, errors };
}

/**
 * The host's named volumes with their sizes. Sizes come from the engine's disk usage report
 * (`GET /system/df`), which walks every volume: 0.3 s with a handful here, so callers measure
 * every few minutes, not every heartbeat.
 */
export async function measureVolumes(docker: Dockerode, now: () => Date = () => new Date()): Promise<HostVolume[]> {
  const volumes = await listVolumeInfo(docker);
  if (volumes.length === 0) return [];
  const df = (await docker.df().catch(() => ({ Volumes: [] }))) as { Volumes?: VolumeInfo[] | null };
  const sizes = new Map((df.Volumes ?? []).map((v) => [v.Name, v.UsageData?.Size]));
  const at = now().toISOString();
  return volumes
    .map((v) => {
      const size = sizes.get(v.Name);
      return {
        name: v.Name,
        app: v.Labels?.[LABELS.app] ?? "",
        volume: v.Labels?.[VOLUME_LABEL] ?? "",
        sizeBytes: typeof size === "number" && size >= 0 ? size : null,
        createdAt: v.CreatedAt ?? null,
        measuredAt: at,
      };
    })
    .sort((a, b) => a.app.localeCompare(b.app) || a.volume.localeCompare(b.volume));
}
