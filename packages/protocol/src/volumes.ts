import { z } from "zod";

/**
 * One entry of an app's `run.volumes`, as written in apps.yaml:
 *   `data:/var/lib/app`            a named volume, kept across deploys, removed only by a purge
 *   `/srv/app/uploads:/uploads:ro` a bind mount of a host directory (only below the roots the agent allows)
 * A trailing `:ro` mounts read-only (`:rw`, the default, may be written out).
 */
export type VolumeMount =
  | { kind: "named"; name: string; target: string; readOnly: boolean }
  | { kind: "bind"; source: string; target: string; readOnly: boolean };

/**
 * A named volume's name: no '.', so `deploybot.<app>.<name>` (volumeName) can only come from one
 * app and one name, and two apps never share a volume by accident.
 */
export const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/;

/**
 * Host paths no bind may be, be inside or contain, whatever the agent's roots say: the system's
 * configuration and kernel interfaces, Docker's and containerd's state and sockets (a container
 * with the Docker socket owns the host). Checked on the text at config load and on the resolved
 * path (realpath) on the agent.
 */
export const PROTECTED_HOST_PATHS = [
  "/etc",
  "/proc",
  "/sys",
  "/dev",
  "/boot",
  "/root",
  "/bin",
  "/sbin",
  "/lib",
  "/lib64",
  "/usr",
  "/run",
  "/var/run",
  "/var/lib/docker",
  "/var/lib/containerd",
] as const;

/** `a` is `b` or inside it (both absolute and normalised). */
export const isWithin = (a: string, b: string): boolean => a === b || b === "/" || a.startsWith(`${b}/`);

/** Why a bind source (absolute, normalised) may never be mounted; null when it may. */
export function protectedPathProblem(path: string, extra: readonly string[] = []): string | null {
  if (path === "/") return "it is the host's root directory";
  if (/(^|\/)(docker|containerd|podman)\.sock$/.test(path)) return "it is a container engine's socket";
  for (const p of [...PROTECTED_HOST_PATHS, ...extra]) {
    if (isWithin(path, p)) return `it is inside ${p}, which no app may mount`;
    if (isWithin(p, path)) return `it contains ${p}, which no app may mount`;
  }
  return null;
}

function pathProblem(path: string, what: string): string | null {
  if (!path.startsWith("/")) return `${what} must be an absolute path`;
  if (path.includes("\0")) return `${what} contains a NUL byte`;
  if (path.length > 1024) return `${what} is longer than 1024 characters`;
  const parts = path.split("/").slice(1);
  if (parts.some((p) => p === "." || p === "..")) return `${what} may not contain '.' or '..' segments`;
  if (path !== "/" && parts.some((p) => p === "")) return `${what} may not contain '//' or end with '/'`;
  return null;
}

/** Parses one entry; `{problem}` says what is wrong with it. */
export function parseVolumeMount(spec: string): VolumeMount | { problem: string } {
  const parts = spec.split(":");
  let readOnly = false;
  if (parts.length === 3) {
    const mode = parts.pop();
    if (mode !== "ro" && mode !== "rw") return { problem: `'${spec}': the mode after the second ':' must be 'ro' or 'rw'` };
    readOnly = mode === "ro";
  }
  if (parts.length !== 2) return { problem: `'${spec}' must look like NAME:/path, /host/path:/path or either with ':ro'` };
  const [source, target] = parts as [string, string];
  const targetProblem = pathProblem(target, "the container path");
  if (targetProblem) return { problem: `'${spec}': ${targetProblem}` };
  if (target === "/") return { problem: `'${spec}': the container path may not be '/'` };
  if (!source.startsWith("/")) {
    if (!VOLUME_NAME.test(source)) {
      return { problem: `'${spec}': a volume name must start with a letter or digit and use only letters, digits, '_' and '-' (64 at most); a host path starts with '/'` };
    }
    return { kind: "named", name: source, target, readOnly };
  }
  const sourceProblem = pathProblem(source, "the host path");
  if (sourceProblem) return { problem: `'${spec}': ${sourceProblem}` };
  const refused = protectedPathProblem(source);
  if (refused) return { problem: `'${spec}': ${source} may not be mounted: ${refused}` };
  return { kind: "bind", source, target, readOnly };
}

export const volumeMountSpec = z
  .string()
  .max(2100)
  .superRefine((spec, ctx) => {
    const parsed = parseVolumeMount(spec);
    if ("problem" in parsed) ctx.addIssue({ code: "custom", message: parsed.problem });
  });

export const volumeList = z
  .array(volumeMountSpec)
  .max(32)
  .superRefine((list, ctx) => {
    const targets = new Map<string, number>();
    list.forEach((spec, i) => {
      const parsed = parseVolumeMount(spec);
      if ("problem" in parsed) return;
      const first = targets.get(parsed.target);
      if (first !== undefined) ctx.addIssue({ code: "custom", path: [i], message: `container path ${parsed.target} is mounted twice (entries ${first} and ${i})` });
      else targets.set(parsed.target, i);
    });
  });

/** The Docker volume behind an app's named volume. */
export const volumeName = (app: string, name: string): string => `deploybot.${app}.${name}`;

/** One named volume on a host, as the agent reports it in heartbeats (sizes measured every few minutes). */
export const hostVolume = z.object({
  /** the Docker volume */
  name: z.string().max(256),
  app: z.string().max(128),
  /** the name in apps.yaml */
  volume: z.string().max(128),
  /** bytes used; null until measured (or when the engine cannot tell) */
  sizeBytes: z.number().int().nullable().default(null),
  createdAt: z.string().max(40).nullable().default(null),
  /** when sizeBytes was measured */
  measuredAt: z.string().max(40).nullable().default(null),
});
export type HostVolume = z.infer<typeof hostVolume>;

/** `GET /v1/volumes` and `deploybot volumes`: one row per named volume per host. */
export const listedVolume = hostVolume.extend({ host: z.string(), online: z.boolean() });
export type ListedVolume = z.infer<typeof listedVolume>;
export const volumesAnswer = z.object({ volumes: z.array(listedVolume) });

/** The named volumes the hosts reported (an agent from before volumes reports none), by host, app and name. */
export function volumesOnHosts(hosts: readonly { hostname: string; online: boolean; volumes?: unknown[] }[], filter: { app?: string; host?: string } = {}): ListedVolume[] {
  return hosts
    .filter((h) => !filter.host || h.hostname === filter.host)
    .flatMap((h) =>
      (h.volumes ?? []).flatMap((v) => {
        const parsed = hostVolume.safeParse(v);
        return parsed.success && (!filter.app || parsed.data.app === filter.app) ? [{ ...parsed.data, host: h.hostname, online: h.online }] : [];
      }),
    )
    .sort((a, b) => a.host.localeCompare(b.host) || a.app.localeCompare(b.app) || a.volume.localeCompare(b.volume));
}
