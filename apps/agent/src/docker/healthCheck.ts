import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { RunSpec } from "@deploybot/protocol";
import type Dockerode from "dockerode";

export type HealthResult = { ok: true; url?: string } | { ok: false; reason: string };
type Healthcheck = NonNullable<RunSpec["healthcheck"]>;

/** Without an HTTP check, a container that is still running after this long counts as started. */
const SETTLE_MS = 2000;

/**
 * Polls GET http://<host>:<port><path> until a 2xx answer, the timeout, the container exiting,
 * or the signal. The port is the host port the engine mapped to `healthcheck.port`; when that
 * port is not published (the app publishes nothing), the container's IP on `network` is used
 * (the deploybot network the proxy reaches it on), else its IP on its only network.
 */
export async function waitHealthy(
  docker: Dockerode,
  containerId: string,
  check: Healthcheck | undefined,
  signal: AbortSignal,
  network?: string,
): Promise<HealthResult> {
  const container = docker.getContainer(containerId);
  if (!check) {
    await sleep(SETTLE_MS, undefined, { signal }).catch(() => undefined);
    if (signal.aborted) return { ok: false, reason: "cancelled" };
    const info = await container.inspect();
    return info.State.Running ? { ok: true } : { ok: false, reason: `container exited with code ${info.State.ExitCode}` };
  }
  const deadline = Date.now() + check.timeout_seconds * 1000;
  let last = "no answer yet";
  let url: string | undefined;
  while (!signal.aborted) {
    const info = await container.inspect();
    if (!info.State.Running) return { ok: false, reason: `container exited with code ${info.State.ExitCode} before it became healthy` };
    url ??= healthUrl(info, check, network);
    if (url) {
      const status = await httpStatus(url, Math.min(2000, check.timeout_seconds * 1000));
      if (typeof status === "number" && status >= 200 && status < 300) return { ok: true, url };
      last = typeof status === "number" ? `HTTP ${status}` : status;
    } else {
      last = `port ${check.port} is neither published nor reachable on a bridge IP`;
    }
    if (Date.now() >= deadline) break;
    await sleep(check.interval_seconds * 1000, undefined, { signal }).catch(() => undefined);
  }
  if (signal.aborted) return { ok: false, reason: "cancelled" };
  return { ok: false, reason: `health check GET ${url ?? `:${check.port}${check.path}`} did not answer 2xx within ${check.timeout_seconds}s (last: ${last})` };
}

export function healthUrl(info: Dockerode.ContainerInspectInfo, check: Healthcheck, network?: string): string | undefined {
  const binding = info.NetworkSettings.Ports?.[`${check.port}/tcp`]?.[0];
  if (binding?.HostPort) {
    const host = !binding.HostIp || binding.HostIp === "0.0.0.0" || binding.HostIp === "::" ? "127.0.0.1" : binding.HostIp;
    return `http://${host.includes(":") ? `[${host}]` : host}:${binding.HostPort}${check.path}`;
  }
  const networks = info.NetworkSettings.Networks ?? {};
  // With several networks the first one is arbitrary: the one the proxy uses decides.
  const ip = network ? networks[network]?.IPAddress : Object.values(networks).find((n) => n.IPAddress)?.IPAddress;
  return ip ? `http://${ip}:${check.port}${check.path}` : undefined;
}

/** The status code, or a short reason when no HTTP answer came back. */
function httpStatus(url: string, timeoutMs: number): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? "no status");
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** One GET of a running container's health URL (reconcile's periodic check). */
export async function probeOnce(docker: Dockerode, containerId: string, check: Healthcheck, timeoutMs: number): Promise<HealthResult> {
  const info = await docker.getContainer(containerId).inspect();
  if (!info.State.Running) return { ok: false, reason: `container is ${info.State.Status}` };
  const url = healthUrl(info, check);
  if (!url) return { ok: false, reason: `port ${check.port} is neither published nor reachable on a bridge IP` };
  const status = await httpStatus(url, timeoutMs);
  if (typeof status === "number" && status >= 200 && status < 300) return { ok: true, url };
  return { ok: false, reason: `GET ${url} ${typeof status === "number" ? `answered HTTP ${status}` : `failed: ${status}`}` };
}
