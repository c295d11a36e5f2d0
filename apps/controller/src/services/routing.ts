import { type RouteInfo, routeInfo } from "@deploybot/protocol";
import { z } from "zod";
import { agents } from "../db/schema";
import type { AgentService } from "./agents";
import type { Deps } from "./deps";

/** One host's route for an app, as its agent last reported it. */
export interface HostRoute extends RouteInfo {
  host: string;
  online: boolean;
  /** how many upstreams the host proxy finds healthy */
  healthy: number;
}

const reported = z.array(z.unknown());

/** Read side of the host proxies: what each agent says its proxy routes (heartbeat `routes`). */
export class RouteReports {
  constructor(
    private readonly deps: Deps,
    private readonly agentService: AgentService,
  ) {}

  async forApp(app: string): Promise<HostRoute[]> {
    const online = new Map((await this.agentService.list()).map((a) => [a.id, a.online]));
    const rows = await this.deps.db.select({ id: agents.id, hostname: agents.hostname, routes: agents.routes }).from(agents).orderBy(agents.hostname);
    const out: HostRoute[] = [];
    for (const row of rows) {
      // Each entry is checked on its own: one an older or newer agent shaped differently is skipped.
      for (const entry of reported.catch([]).parse(row.routes)) {
        const route = routeInfo.safeParse(entry);
        if (!route.success || route.data.app !== app) continue;
        out.push({
          host: row.hostname,
          online: online.get(row.id) ?? false,
          healthy: route.data.upstreams.filter((u) => u.state === "ready" && u.health === "up").length,
          ...route.data,
        });
      }
    }
    return out;
  }
}
