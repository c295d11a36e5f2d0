import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { AcmeAccount, RouteInfo, TlsMode } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import { CertificateStore } from "./certificates";
import { backendName, type ProxyFiles, renderHaproxyConfig, serverArguments, serverName } from "./haproxyConfig";
import { applyConfig, type ProxySupervision, stopHaproxy } from "./haproxyProcess";
import { type AppRoute, RouteTable, type Upstream } from "./routeTable";
import { haproxyCommand, serverStats, socketAnswers } from "./runtimeApi";

export interface HostProxyOptions {
  docker: Dockerode;
  /** the agent's state dir; the proxy keeps its files in `<stateDir>/proxy` */
  stateDir: string;
  /** the Docker network the app containers and nothing else share; the proxy reaches them on it */
  network: string;
  bindAddress: string;
  httpPort: number;
  httpsPort: number;
  supervision: ProxySupervision;
  haproxyBin?: string;
  /** PEM file the agent trusts for a private ACME server's own TLS (Pebble, step-ca) */
  acmeCaCertFile?: string;
  log?: (line: string) => void;
}

/** What a deploy asks of the route; the upstreams are the deploy's business. */
export interface RouteSettings {
  app: string;
  domains: string[];
  tls: TlsMode;
  healthPath: string;
  responseTimeoutSeconds: number;
  acme?: AcmeAccount;
}

/**
 * The host's reverse proxy (HAProxy), written only by the agent. The route table is the truth;
 * the proxy is made to match it: servers enter and leave a route through the runtime API (no
 * reload: MEASURED.md, 0 failed of ~40k requests over 40 switches), while new apps, domains and
 * certificates go through a seamless reload. Every change is also written to the config file,
 * so whatever restarts HAProxy brings back the current routes.
 */
export class HostProxy {
  readonly table: RouteTable;
  readonly certs: CertificateStore;
  readonly files: ProxyFiles;
  private readonly bin: string;
  private queue: Promise<unknown> = Promise.resolve();
  /** app -> why its last certificate order failed, until one succeeds (reported with the routes) */
  private readonly orderErrors = new Map<string, string>();

  constructor(private readonly options: HostProxyOptions) {
    const dir = join(options.stateDir, "proxy");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.table = new RouteTable(dir);
    this.certs = new CertificateStore(dir, { acmeCaCertFile: options.acmeCaCertFile });
    this.bin = options.haproxyBin ?? "haproxy";
    this.files = {
      config: join(dir, "haproxy.cfg"),
      adminSocket: join(dir, "admin.sock"),
      masterSocket: join(dir, "master.sock"),
      pidFile: join(dir, "haproxy.pid"),
      hostsMap: join(dir, "hosts.map"),
      tlsMap: join(dir, "tls.map"),
      challengesMap: join(dir, "challenges.map"),
      crtList: join(dir, "crt-list.txt"),
      defaultCert: this.certs.defaultCertFile,
    };
  }

  get network(): string {
    return this.options.network;
  }

  private log(line: string) {
    this.options.log?.(`proxy: ${line}`);
  }

  /** One change at a time: jobs, the heartbeat and the watchdog share the proxy. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Makes HAProxy serve the route table: re-reads each upstream's address from the engine (a
   * host reboot gives containers new IPs), drops upstreams whose container is gone, writes the
   * files, then starts HAProxy or reloads it. Called at agent start and by the watchdog.
   */
  converge(): Promise<void> {
    return this.exclusive(async () => {
      for (const route of this.table.all()) {
        const upstreams: Upstream[] = [];
        for (const u of route.upstreams) {
          const ip = await this.containerIp(u.container);
          if (ip) upstreams.push({ ...u, ip });
          else this.log(`${route.app}: container ${u.container.slice(0, 12)} is gone; leaving it out of the route`);
        }
        this.table.set({ ...route, upstreams });
      }
      const how = await this.writeAndApply();
      this.log(`${how} with ${this.table.all().length} route(s)`);
    });
  }

  /** Whether HAProxy answers on its admin socket. */
  running(): Promise<boolean> {
    return socketAnswers(this.files.adminSocket);
  }

  /** Restarts routing when HAProxy went away; runs until `signal` aborts. */
  async watch(signal: AbortSignal, everyMs = 3000): Promise<void> {
    while (!signal.aborted) {
      await sleep(everyMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted || this.table.all().length === 0) continue;
      if (await this.running()) continue;
      this.log("HAProxy does not answer; restoring every route");
      await this.converge().catch((err: Error) => this.log(`restoring routes failed: ${err.message}`));
    }
  }

  /**
   * Creates or updates the app's route (domains, TLS, timeouts), keeping its upstreams. A
   * certificate is obtained first, so the https side and the redirect switch on together. A due
   * certificate that cannot be renewed now is kept while it is valid: the deploy goes on and
   * `certificateWarning` says why and until when (the renewal check tries again).
   */
  ensureRoute(settings: RouteSettings): Promise<{ certificateWarning?: string }> {
    return this.exclusive(async () => {
      for (const d of settings.domains) {
        const owner = this.table.owner(d);
        if (owner && owner !== settings.app) throw new Error(`domain ${d} is routed to app ${owner} on this host`);
      }
      const current = this.table.get(settings.app);
      const next: AppRoute = {
        app: settings.app,
        domains: [...settings.domains].sort(),
        tls: settings.tls,
        healthPath: settings.healthPath,
        responseTimeoutSeconds: settings.responseTimeoutSeconds,
        upstreams: current?.upstreams ?? [],
        ...(settings.tls === "auto" && settings.acme ? { acme: { directory: settings.acme.directory, ...(settings.acme.email ? { email: settings.acme.email } : {}) } } : {}),
      };
      const same = current && JSON.stringify({ ...current, upstreams: [] }) === JSON.stringify({ ...next, upstreams: [] });
      const needsCert = next.tls !== "off" && !this.certs.usable(next.app, next.domains, next.tls === "internal" ? "internal" : "acme");
      if (same && !needsCert && (await this.running())) return {};
      this.table.set(next);
      // The route must answer http (ACME's challenge) before the certificate can be ordered.
      await this.writeAndApply();
      if (needsCert) {
        try {
          await this.obtainCertificate(next, Date.now());
        } catch (err) {
          const held = this.certs.servable(next.app, next.domains, next.tls === "internal" ? "internal" : "acme");
          if (!held) throw err;
          const certificateWarning = `renewing the certificate for ${next.domains.join(", ")} failed: ${(err as Error).message}; the current one is served until ${held.validTo.toISOString()} and is ordered again at the next check (every 12 h)`;
          this.log(`${next.app}: ${certificateWarning}`);
          return { certificateWarning };
        }
        await this.writeAndApply();
        this.log(`${next.app}: certificate in place for ${next.domains.join(", ")}`);
      }
      return {};
    });
  }

  /** Issues the route's certificate (the route already answers http: ACME's challenge). */
  private async obtainCertificate(route: AppRoute, now: number): Promise<void> {
    try {
      await this.orderCertificate(route, now);
      this.orderErrors.delete(route.app);
    } catch (err) {
      this.orderErrors.set(route.app, (err as Error).message.slice(0, 1000));
      throw err;
    }
  }

  private async orderCertificate(route: AppRoute, now: number): Promise<void> {
    if (route.tls === "internal") {
      await this.certs.internal(route.app, route.domains, now);
      return;
    }
    if (!route.acme) throw new Error("tls: auto needs an ACME account (DEPLOYBOT_ACME_CA / DEPLOYBOT_ACME_EMAIL on the controller)");
    this.log(`${route.app}: ordering a certificate for ${route.domains.join(", ")} from ${route.acme.directory}`);
    await this.certs.acme(
      route.app,
      route.domains,
      route.acme,
      {
        addChallenge: (token, value) => this.mapCommand(`add map ${this.files.challengesMap} ${token} ${value}`),
        removeChallenge: (token) => this.mapCommand(`del map ${this.files.challengesMap} ${token}`),
      },
      now,
    );
  }

  /**
   * Orders again every certificate that is due at `now` (renewalDueAt: 30 days before its end,
   * or its last third), then loads them with one seamless reload. A failure is reported and
   * retried at the next check; the old certificate is served until it ends.
   */
  renewCertificates(now = Date.now()): Promise<{ renewed: string[]; failed: { app: string; error: string }[] }> {
    return this.exclusive(async () => {
      const renewed: string[] = [];
      const failed: { app: string; error: string }[] = [];
      for (const route of this.table.all()) {
        if (route.tls === "off") continue;
        if (this.certs.usable(route.app, route.domains, route.tls === "internal" ? "internal" : "acme", now)) continue;
        try {
          await this.obtainCertificate(route, now);
          renewed.push(route.app);
        } catch (err) {
          failed.push({ app: route.app, error: (err as Error).message });
          this.log(`${route.app}: renewing its certificate failed (next try at the next check): ${(err as Error).message}`);
        }
      }
      if (renewed.length > 0) {
        await this.writeAndApply();
        this.log(`renewed the certificate(s) of ${renewed.join(", ")}`);
      }
      return { renewed, failed };
    });
  }

  /** The renewal timer: a check at start, then every `everyMs` (12 h: ~60 tries inside a 30-day window), until `signal` aborts. */
  async renewLoop(signal: AbortSignal, everyMs = 12 * 3_600_000): Promise<void> {
    while (!signal.aborted) {
      if (this.table.all().some((r) => r.tls !== "off")) await this.renewCertificates().catch((err: Error) => this.log(`certificate renewal check failed: ${err.message}`));
      await sleep(everyMs, undefined, { signal }).catch(() => undefined);
    }
  }

  private async mapCommand(command: string): Promise<void> {
    if (!/^[a-z]+ map \S+ [A-Za-z0-9_-]+( [A-Za-z0-9_.-]+)?$/.test(command)) throw new Error("unexpected ACME challenge token");
    const out = await haproxyCommand(this.files.adminSocket, command);
    if (out.trim().length > 0 && !command.startsWith("del")) throw new Error(`HAProxy: ${out.trim()}`);
  }

  /** Puts a (health-checked) container into the app's route: it takes traffic at once. */
  addUpstream(app: string, upstream: Upstream): Promise<void> {
    return this.exclusive(async () => {
      const route = this.requireRoute(app);
      const server = `${backendName(app)}/${serverName(upstream.container)}`;
      const added = await haproxyCommand(this.files.adminSocket, `add server ${server} ${serverArguments(upstream.ip, upstream.port)}`);
      if (!/New server registered|Already exists/i.test(added)) throw new Error(`HAProxy refused the new server: ${added.trim()}`);
      await this.runtime(`enable health ${server}`);
      await this.runtime(`enable server ${server}`);
      this.table.set({ ...route, upstreams: [...route.upstreams.filter((u) => u.container !== upstream.container), upstream] });
      this.writeFiles();
    });
  }

  /**
   * Takes a container out of the route: no new requests (drain), then waits until its requests
   * in flight are answered or `drainSeconds` passed, then removes it from HAProxy. The caller
   * stops the container afterwards.
   */
  async removeUpstream(app: string, container: string, drainSeconds: number): Promise<{ waitedMs: number; sessionsLeft: number }> {
    const server = `${backendName(app)}/${serverName(container)}`;
    const present = await this.exclusive(async () => {
      const route = this.table.get(app);
      if (route) {
        this.table.set({ ...route, upstreams: route.upstreams.filter((u) => u.container !== container) });
        this.writeFiles();
      }
      const known = (await serverStats(this.files.adminSocket, backendName(app)).catch(() => [])).some((s) => s.server === serverName(container));
      if (known) await this.runtime(`set server ${server} state drain`);
      return known;
    });
    if (!present) return { waitedMs: 0, sessionsLeft: 0 };
    const started = Date.now();
    let sessions = 0;
    // Not under the lock: other apps' deploys go on while this one drains.
    while (Date.now() - started < drainSeconds * 1000) {
      const stat = (await serverStats(this.files.adminSocket, backendName(app)).catch(() => [])).find((s) => s.server === serverName(container));
      sessions = stat?.sessions ?? 0;
      if (sessions === 0) break;
      await sleep(100);
    }
    await this.exclusive(async () => {
      await this.runtime(`set server ${server} state maint`);
      await this.runtime(`shutdown sessions server ${server}`);
      for (let attempt = 0; attempt < 50; attempt++) {
        const out = await haproxyCommand(this.files.adminSocket, `del server ${server}`);
        if (/Server deleted|No such server/i.test(out)) return;
        await sleep(100); // idle connections to it are still being purged
      }
      this.log(`could not delete ${server} from HAProxy; it stays in maintenance until the next reload`);
    });
    return { waitedMs: Date.now() - started, sessionsLeft: sessions };
  }

  /** Forgets the app's route (after its last container was removed). */
  removeRoute(app: string): Promise<void> {
    return this.exclusive(async () => {
      if (!this.table.get(app)) return;
      this.table.delete(app);
      this.orderErrors.delete(app);
      await this.writeAndApply();
    });
  }

  /** The routes with each upstream's state and health as HAProxy sees them (heartbeats, API). */
  async routes(): Promise<RouteInfo[]> {
    const routes = this.table.all();
    if (routes.length === 0) return [];
    const stats = await serverStats(this.files.adminSocket).catch(() => []);
    return routes.map((r) => ({
      app: r.app,
      domains: r.domains,
      tls: r.tls,
      ...this.certificateReport(r),
      upstreams: r.upstreams.map((u) => {
        const stat = stats.find((s) => s.backend === backendName(r.app) && s.server === serverName(u.container));
        const status = stat?.status ?? "";
        return {
          container: u.container.slice(0, 12),
          address: `${u.ip}:${u.port}`,
          state: !stat ? "missing" : status.startsWith("MAINT") ? "maint" : status.startsWith("DRAIN") ? "drain" : "ready",
          health: !stat ? "unknown" : /^UP|DRAIN/.test(status) ? "up" : /DOWN/.test(status) ? "down" : "unknown",
          ...(u.release ? { release: u.release } : {}),
        };
      }),
    }));
  }

  /** The certificate served for the route and the last order's failure, as the routes report them. */
  private certificateReport(route: AppRoute): Pick<RouteInfo, "certificate" | "certificateError"> {
    if (route.tls === "off") return {};
    const held = this.certs.servable(route.app, route.domains, route.tls === "internal" ? "internal" : "acme");
    const error = this.orderErrors.get(route.app);
    return {
      ...(held ? { certificate: { issuer: held.issuer.slice(0, 256), validTo: held.validTo.toISOString(), renewalDueAt: held.renewalDueAt.toISOString() } } : {}),
      ...(error ? { certificateError: error } : {}),
    };
  }

  /** Stops the HAProxy this agent started (tests; an agent never stops routing on its own). */
  stop(): Promise<void> {
    return stopHaproxy(this.files);
  }

  private requireRoute(app: string): AppRoute {
    const route = this.table.get(app);
    if (!route) throw new Error(`no route for app ${app}`);
    return route;
  }

  private async runtime(command: string): Promise<void> {
    const out = (await haproxyCommand(this.files.adminSocket, command)).trim();
    if (out.length > 0 && !/^(Health|Server|Agent)?\s*(enabled|disabled)?\.?$/i.test(out)) throw new Error(`HAProxy: ${command}: ${out}`);
  }

  private async containerIp(id: string): Promise<string | null> {
    const info = await this.options.docker
      .getContainer(id)
      .inspect()
      .catch(() => null);
    if (!info?.State.Running) return null;
    return info.NetworkSettings.Networks?.[this.options.network]?.IPAddress || null;
  }

  private certificateFiles(): Map<string, string> {
    const certs = new Map<string, string>();
    for (const r of this.table.all()) {
      if (r.tls === "off") continue;
      // due or not: a certificate whose renewal has not succeeded yet is served until it ends
      const held = this.certs.servable(r.app, r.domains, r.tls === "internal" ? "internal" : "acme");
      if (held) certs.set(r.app, held.file);
    }
    return certs;
  }

  /** Writes config, maps and crt-list from the table (atomic renames); HAProxy is not touched. */
  private writeFiles(): void {
    const rendered = renderHaproxyConfig({
      files: this.files,
      bindAddress: this.options.bindAddress,
      httpPort: this.options.httpPort,
      httpsPort: this.options.httpsPort,
      routes: this.table.all(),
      certificates: this.certificateFiles(),
    });
    const write = (file: string, text: string) => {
      writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    };
    write(this.files.hostsMap, rendered.hostsMap);
    write(this.files.tlsMap, rendered.tlsMap);
    write(this.files.crtList, rendered.crtList);
    write(this.files.challengesMap, "");
    write(this.files.config, rendered.config);
  }

  private async writeAndApply(): Promise<"reloaded" | "started"> {
    await this.certs.ensureDefault();
    this.writeFiles();
    return applyConfig(this.bin, this.files, this.options.supervision);
  }
}
