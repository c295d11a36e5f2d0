import type { RunSpec } from "@deploybot/protocol";
import type Dockerode from "dockerode";

export interface PortBinding {
  hostIp: string;
  hostPort: string;
  containerPort: string; // "80/tcp"
}

/** "8080:80", "127.0.0.1:8080:80/udp" -> binding; the schema has checked the shape already. */
export function parsePort(spec: string): PortBinding {
  const [mapping, proto = "tcp"] = spec.split("/");
  const parts = (mapping ?? "").split(":");
  const containerPort = parts.pop() ?? "";
  const hostPort = parts.pop() ?? "";
  return { hostIp: parts.pop() ?? "", hostPort, containerPort: `${containerPort}/${proto}` };
}

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

export function parseMemory(value: string): number {
  const match = /^(\d+)([kmg]?)$/i.exec(value);
  if (!match) throw new Error(`bad memory size ${value}`);
  return Number(match[1]) * (UNITS[(match[2] ?? "").toLowerCase()] ?? 1);
}

/**
 * Container create options for an app. `publish: "temporary"` binds every container port the
 * app uses (and the health check port) to a random port on 127.0.0.1 instead of the real host
 * ports, so a candidate can be checked while the old container still holds them. `publish:
 * "none"` binds nothing: routed apps are reached by the host proxy on `network`.
 */
export function containerOptions(input: {
  name: string;
  image: string;
  run: RunSpec;
  secretEnv?: Record<string, string>;
  labels: Record<string, string>;
  publish: "real" | "temporary" | "none";
  /** a user-defined bridge network to attach the container to (instead of the default bridge) */
  network?: string;
  /** the app's volumes and binds, checked and resolved on this host (docker/volumes.ts prepareMounts) */
  mounts?: Dockerode.MountSettings[];
}): Dockerode.ContainerCreateOptions {
  const { run } = input;
  const bindings = run.ports.map(parsePort);
  const exposed = new Set(bindings.map((b) => b.containerPort));
  if (run.healthcheck) exposed.add(`${run.healthcheck.port}/tcp`);
  const portBindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  if (input.publish === "temporary") {
    for (const port of exposed) portBindings[port] = [{ HostIp: "127.0.0.1", HostPort: "" }];
  } else if (input.publish === "real") {
    for (const b of bindings) portBindings[b.containerPort] = [...(portBindings[b.containerPort] ?? []), { HostIp: b.hostIp, HostPort: b.hostPort }];
  }
  const env = { ...run.env, ...(input.secretEnv ?? {}) };
  return {
    name: input.name,
    Image: input.image,
    ...(run.command ? { Cmd: run.command } : {}),
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    Labels: input.labels,
    ExposedPorts: Object.fromEntries([...exposed].map((p) => [p, {}])),
    ...(input.network ? { NetworkingConfig: { EndpointsConfig: { [input.network]: {} } } } : {}),
    HostConfig: {
      PortBindings: portBindings,
      ...(input.network ? { NetworkMode: input.network } : {}),
      ...(input.mounts && input.mounts.length > 0 ? { Mounts: input.mounts } : {}),
      // The agent's reconcile loop owns restarts (with backoff, events and reasons); Docker's own
      // policy would restart a crash loop ~9 times in 2 minutes and treat `docker kill` as a
      // manual stop. `run.restart` tells reconcile which exits to restart (reconcile/policy.ts).
      RestartPolicy: { Name: "no" },
      ...(run.init ? { Init: true } : {}),
      ...(run.memory ? { Memory: parseMemory(run.memory) } : {}),
      ...(run.cpus ? { NanoCpus: Math.round(run.cpus * 1e9) } : {}),
    },
  };
}

/** Docker container names: [a-zA-Z0-9][a-zA-Z0-9_.-]*. Job ids come from the controller. */
export const containerName = (app: string, jobId: string, suffix = ""): string =>
  `${app}-${jobId}${suffix}`.replace(/[^a-zA-Z0-9_.-]/g, "-").replace(/^[^a-zA-Z0-9]+/, "c");
