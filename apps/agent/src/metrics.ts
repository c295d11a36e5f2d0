import { readdirSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import type Dockerode from "dockerode";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { listManagedContainers } from "./docker/managedContainers";

/** One registry per agent process: the daemon, its reconcile queue and its Docker client count into it. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });
// gauges named *_total fail `promtool check metrics`; each has a per-type twin without the suffix
for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) registry.removeSingleMetric(name);

export const jobsRun = new Counter({ name: "deploybot_agent_jobs_total", help: "Jobs this agent ran to their end, by kind", labelNames: ["kind"], registers: [registry] });
export const reconcileActions = new Counter({
  name: "deploybot_agent_reconcile_actions_total",
  help: "Reconcile actions by kind (started, restarted, crash_looping, ...)",
  labelNames: ["action"],
  registers: [registry],
});
const dockerCalls = new Histogram({
  name: "deploybot_agent_docker_call_duration_seconds",
  help: "Docker Engine API calls by HTTP method and resource (containers, images, ...), to the response",
  labelNames: ["method", "resource"],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120],
  registers: [registry],
});

/** Times every call dockerode makes through its modem; the label is the path's first segment, never an id. */
export function instrumentDocker(docker: Dockerode): Dockerode {
  const modem = docker.modem as unknown as { dial(options: { method?: string; path?: string }, cb: (...args: unknown[]) => void): unknown };
  const dial = modem.dial.bind(modem);
  modem.dial = (options, cb) => {
    const started = performance.now();
    const resource = /^\/(?:v[\d.]+\/)?([a-z]+)/.exec(options.path ?? "")?.[1] ?? "other";
    const method = /^(GET|HEAD|POST|PUT|DELETE)$/.test(options.method ?? "") ? options.method! : "OTHER";
    return dial(options, (...args: unknown[]) => {
      dockerCalls.observe({ method, resource: resource.slice(0, 20) }, (performance.now() - started) / 1000);
      cb(...args);
    });
  };
  return docker;
}

function dirBytes(dir: string): number {
  let total = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const n of names) {
    try {
      const s = statSync(join(dir, n));
      total += s.isDirectory() ? dirBytes(join(dir, n)) : s.size;
    } catch {
      // a spool file removed between readdir and stat
    }
  }
  return total;
}

/** A container's `State` as the engine reports it. */
const DOCKER_STATES = ["created", "running", "paused", "restarting", "removing", "exited", "dead"] as const;

/** Serves GET /metrics on 127.0.0.1:`port` (DEPLOYBOT_AGENT_METRICS_PORT): never on another address. */
export function serveAgentMetrics(port: number, docker: Dockerode, spoolDir: string): Promise<Server> {
  new Gauge({
    name: "deploybot_agent_spool_bytes",
    help: "Job log lines spooled on disk, not yet acknowledged by the controller",
    registers: [registry],
    collect() {
      this.set(dirBytes(spoolDir));
    },
  });
  new Gauge({
    name: "deploybot_agent_containers",
    help: "Containers deploybot manages on this host, by state",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      this.reset();
      // every state Docker knows is a series, 0 when no container is in it: an alert on
      // {state="running"} == 0 must fire when the last container is gone. An engine that does
      // not answer gives no series (not zeros).
      const listed = await listManagedContainers(docker).catch(() => null);
      if (!listed) return;
      const counts = new Map<string, number>(DOCKER_STATES.map((state) => [state, 0]));
      for (const c of listed) counts.set(c.state ?? "unknown", (counts.get(c.state ?? "unknown") ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  const server = createServer((req, res) => {
    if (req.method !== "GET" || req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}
