import type { IdempotencyHandle } from "./idempotency";
import {
  type Agent,
  type AppHostStatus,
  type AppOperation,
  type AppOperationRequest,
  type AppStatus,
  appStatus,
  type DesiredRunState,
  type Job,
  jobSpec,
  type RunSpec,
} from "@deploybot/protocol";
import { z } from "zod";
import { ApiError } from "../lib/errors";
import type { AgentService } from "./agents";
import type { AppDefinition } from "./appsConfig";
import type { AppStateService } from "./appStates";
import { type Deps, iso } from "./deps";
import type { JobService } from "./jobs";

/** Operations that need a release on the host to act on. */
const NEEDS_RELEASE: AppOperation[] = ["start", "restart", "scale"];

const reportedContainer = z.object({ app: z.string().optional(), release: z.string().optional(), state: z.string().optional() }).passthrough();

/**
 * stop / start / restart / scale / remove an app on some or all of its hosts (one job per host,
 * health-gated on the agent like a deploy; the desired state changes when the job succeeds
 * there), and the per-host status: desired against actual, restarts, the last exit and why.
 */
export class AppOperationService {
  constructor(
    private readonly deps: Deps,
    private readonly jobs: JobService,
    private readonly states: AppStateService,
    private readonly agents: AgentService,
  ) {}

  private appOf(name: string): AppDefinition {
    const app = this.deps.apps().byName(name);
    if (!app) throw new ApiError(404, "unknown_app", `no app '${name}' in ${this.deps.config.configPath}`);
    return app;
  }

  /** apps.yaml's hosts plus every host that has (or had) a desired state for the app. */
  async hostsOf(app: AppDefinition): Promise<string[]> {
    return [...new Set([...app.hosts, ...(await this.states.rows({ app: app.name })).map((r) => r.host)])].sort();
  }

  /** `idempotency` takes the request's key inside the transaction that queues the jobs. */
  async operate(name: string, op: AppOperation, body: AppOperationRequest, idempotency?: IdempotencyHandle): Promise<{ jobs: Job[] }> {
    const app = this.appOf(name);
    if (op === "scale" && body.replicas === undefined) throw new ApiError(400, "invalid_body", "scale needs 'replicas'");
    if (op !== "scale" && body.replicas !== undefined) throw new ApiError(400, "invalid_body", `'replicas' belongs to scale, not ${op}`);
    if (op !== "remove" && body.purgeVolumes !== undefined) throw new ApiError(400, "invalid_body", `'purgeVolumes' belongs to remove, not ${op}`);
    const states = new Map((await this.states.rows({ app: app.name })).map((r) => [r.host, r]));
    const hosts = body.hosts ?? (await this.hostsOf(app)).filter((h) => states.get(h)?.state !== "removed");
    if (hosts.length === 0) throw new ApiError(409, "no_hosts", `app '${app.name}' runs on no host; deploy it first`);
    for (const host of hosts) {
      const entry = states.get(host);
      if (NEEDS_RELEASE.includes(op) && (!entry || entry.state === "removed" || !entry.image)) {
        throw new ApiError(409, "not_deployed", `app '${app.name}' has no deployed release on host '${host}'; deploy it there first`);
      }
      const ports = ((entry?.run as RunSpec | null)?.ports ?? app.run.ports).length;
      if (op === "scale" && (body.replicas ?? 1) > 1 && ports > 0) {
        throw new ApiError(409, "ports_conflict", `app '${app.name}' publishes host ports: only one container per host can hold them, so it cannot scale past 1`);
      }
    }
    const created = await this.deps.db.write(async () => {
      await idempotency?.take();
      const queued: Job[] = [];
      for (const host of hosts) {
        const { job } = await this.jobs.create({
          spec: jobSpec.parse({
            kind: op,
            app: app.name,
            ...(op === "scale" ? { replicas: body.replicas } : {}),
            ...(op === "remove" && body.purgeVolumes ? { purgeVolumes: true } : {}),
          }),
          target: { host },
          dedupe: false,
        });
        queued.push(job);
      }
      await idempotency?.made({ jobIds: queued.map((j) => j.id) });
      return queued;
    });
    this.deps.logger.info({ app: app.name, op, hosts, jobs: created.map((j) => j.id) }, "app operation queued");
    return { jobs: created };
  }

  /** Per host: what should run and what does, as the agents last reported it. */
  async status(name: string, agentList?: Agent[]): Promise<AppHostStatus[]> {
    const app = this.appOf(name);
    const agents = agentList ?? (await this.agents.list());
    // One query for the app's desired states and a map of the hosts: GET /v1/apps calls this for
    // every app (200 apps on 500 hosts: 1.1 s with a query and a scan per host, see the dashboard's scale test).
    const rows = await this.states.rows({ app: app.name });
    const byHost = new Map(agents.map((a) => [a.hostname, a]));
    const hosts = [...new Set([...app.hosts, ...rows.map((r) => r.host)])].sort();
    return hosts.map((host) => {
      const agent = byHost.get(host);
      const entry = rows.find((r) => r.host === host);
      const containers = (agent?.containers ?? []).flatMap((c) => {
        const parsed = reportedContainer.safeParse(c);
        return parsed.success && parsed.data.app === app.name ? [parsed.data] : [];
      });
      const reported = (agent?.appStatus ?? []).flatMap((s): AppStatus[] => {
        const parsed = appStatus.safeParse(s);
        return parsed.success && parsed.data.app === app.name ? [parsed.data] : [];
      })[0];
      const running = containers.filter((c) => c.state === "running").length;
      return {
        host,
        online: agent?.online ?? false,
        desired: entry
          ? { release: entry.releaseId, replicas: entry.replicas, state: entry.state as DesiredRunState, updatedAt: iso(entry.updatedAt)! }
          : null,
        actual: {
          releases: [...new Set(containers.map((c) => c.release).filter((r): r is string => !!r))],
          containers: containers.length,
          running,
          healthy: Math.min(running, reported?.healthy ?? running),
          restarts: reported?.restarts ?? 0,
          lastExitCode: reported?.lastExitCode ?? null,
          lastReason: reported?.lastReason ?? null,
          since: reported?.since ?? null,
          nextRestartAt: reported?.nextRestartAt ?? null,
        },
      };
    });
  }
}
