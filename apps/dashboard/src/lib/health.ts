import type { Agent, App, HostContainer } from "./types";

export type Health = "running" | "stopped" | "missing" | "removed" | "not deployed" | "offline" | "unknown";

/**
 * No container runs: stopped when one exists or it was stopped on purpose, removed or never
 * deployed when that is what the controller wants, missing only when one should be there.
 */
export function idleState(actualContainers: number, desired: string | undefined | null): Health {
  if (actualContainers > 0 || desired === "stopped") return "stopped";
  if (desired === "removed") return "removed";
  return desired ? "missing" : "not deployed";
}

/** Hosts by name, for the per-host health of many apps in one pass (500 hosts x 200 apps). */
export function indexHosts(hosts: Agent[]): Map<string, Agent> {
  return new Map(hosts.map((h) => [h.hostname, h]));
}

/**
 * An app's state on one host, from the containers its agent last reported: running when a
 * container of the app runs, else `idleState`.
 */
export function appHealth(app: Pick<App, "name" | "status">, host: Agent | undefined, hostname = host?.hostname): Health {
  // a controller that keeps desired state says what runs where, including stopped on purpose
  const st = app.status?.find((x) => x.host === hostname);
  if (st) {
    if (!st.online) return "offline";
    if (st.actual.running > 0) return "running";
    return idleState(st.actual.containers, st.desired?.state ?? null);
  }
  if (!host) return "unknown";
  if (!host.online) return "offline";
  const mine = (host.containers as HostContainer[]).filter((c) => c.app === app.name);
  if (mine.some((c) => c.state === "running")) return "running";
  return mine.length > 0 ? "stopped" : "missing";
}
