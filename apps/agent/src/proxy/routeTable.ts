import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TlsMode } from "@deploybot/protocol";
import { z } from "zod";

/** A container in an app's route. The IP is re-read from the engine whenever the proxy converges. */
export interface Upstream {
  container: string;
  ip: string;
  port: number;
  release?: string;
}

/** What the proxy does for one app: the domains it answers, how, and which containers serve. */
export interface AppRoute {
  app: string;
  domains: string[];
  tls: TlsMode;
  healthPath: string;
  responseTimeoutSeconds: number;
  upstreams: Upstream[];
  /** the ACME account a `tls: auto` certificate was ordered with: the renewal timer orders with it again */
  acme?: { directory: string; email?: string };
}

const storedTable = z.object({
  routes: z.array(
    z.object({
      app: z.string(),
      domains: z.array(z.string()),
      tls: z.enum(["auto", "internal", "off"]),
      healthPath: z.string(),
      responseTimeoutSeconds: z.number(),
      upstreams: z.array(z.object({ container: z.string(), ip: z.string(), port: z.number(), release: z.string().optional() })),
      acme: z.object({ directory: z.string(), email: z.string().optional() }).optional(),
    }),
  ),
});

/**
 * The agent's routing truth, one JSON file in the proxy dir, written atomically after every
 * change. HAProxy's own state is derived from it (config file + runtime API), never the reverse,
 * so a restart of the agent, of HAProxy or of the host converges to it.
 */
export class RouteTable {
  private readonly file: string;
  private routes = new Map<string, AppRoute>();

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = join(dir, "routes.json");
    try {
      const parsed = storedTable.safeParse(JSON.parse(readFileSync(this.file, "utf8")));
      if (parsed.success) for (const r of parsed.data.routes) this.routes.set(r.app, r);
    } catch {
      // no table yet: no routes
    }
  }

  all(): AppRoute[] {
    return [...this.routes.values()].sort((a, b) => a.app.localeCompare(b.app));
  }

  get(app: string): AppRoute | undefined {
    return this.routes.get(app);
  }

  set(route: AppRoute): void {
    this.routes.set(route.app, route);
    this.save();
  }

  delete(app: string): void {
    this.routes.delete(app);
    this.save();
  }

  /** The app that already claims `domain`, if another one does. */
  owner(domain: string): string | undefined {
    return this.all().find((r) => r.domains.includes(domain))?.app;
  }

  private save(): void {
    writeFileSync(`${this.file}.tmp`, JSON.stringify({ routes: this.all() }, null, 2), { mode: 0o600 });
    renameSync(`${this.file}.tmp`, this.file);
  }
}
