import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import type tls from "node:tls";
import type { ProxySpec, TlsMode } from "@deploybot/protocol";
import Dockerode from "dockerode";
import { BASE_IMAGE, engineRequest, freePort, removeAppContainers, uniqueName } from "../../../test/support/docker";
import { executeJob } from "../src/executors";
import { HostProxy } from "../src/proxy";
import { makeContext, makeJob } from "./jobFixture";

export const docker = new Dockerode();

/**
 * A busybox httpd app for routing tests: `/` answers the version, `/id` the container's host
 * name (which replica answered), `/health` 200 unless `healthy: false`.
 */
export function routedAppFiles(version: string, options: { healthy?: boolean } = {}): Record<string, string> {
  const files: Record<string, string> = {
    Dockerfile: [
      `FROM ${BASE_IMAGE}`,
      "COPY www/ /www/",
      `CMD ["sh", "-c", "hostname > /www/id; trap 'exit 0' TERM; busybox httpd -f -p 80 -h /www & wait"]`,
      "",
    ].join("\n"),
    "www/index.html": `${version}\n`,
  };
  if (options.healthy !== false) files["www/health"] = "ok\n";
  return files;
}

export interface ProxyWorld {
  stateDir: string;
  network: string;
  httpPort: number;
  httpsPort: number;
  proxy: HostProxy;
  /** a new HostProxy on the same state dir: what an agent restart constructs */
  restartAgent(): HostProxy;
  /**
   * `cancelWhen`: the job is cancelled (its signal aborts) at the first log line it returns true
   * for; `onLog` sees every line; `files` replaces the busybox httpd app.
   */
  deploy(
    app: string,
    version: string,
    route: RouteOptions & {
      healthy?: boolean;
      replicas?: number;
      stopFirst?: boolean;
      cancelWhen?: (line: string) => boolean;
      onLog?: (line: string) => void;
      files?: Record<string, string>;
      /** published ports (port mode, with no domains) */
      ports?: string[];
    },
  ): ReturnType<typeof executeJob>;
  cleanup(): Promise<void>;
}

export interface RouteOptions {
  domains: string[];
  tls?: TlsMode;
  proxy?: Partial<ProxySpec>;
  acme?: { directory: string; email?: string };
}

/** `supervision: "external"`: the test runs HAProxy itself, as the deploybot-proxy unit would (proxyUnit.docker.test.ts). */
export async function proxyWorld(options: { acmeCaCertFile?: string; supervision?: "agent" | "external" } = {}): Promise<ProxyWorld> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), "deploybot-proxy-"));
  const network = uniqueName("deploybot-test-net");
  const httpPort = await freePort();
  const httpsPort = await freePort();
  const apps = new Set<string>();
  const make = () =>
    new HostProxy({
      docker,
      stateDir,
      network,
      bindAddress: "127.0.0.1",
      httpPort,
      httpsPort,
      supervision: options.supervision ?? "agent",
      ...(options.acmeCaCertFile ? { acmeCaCertFile: options.acmeCaCertFile } : {}),
      log: (line) => {
        if (process.env.DEPLOYBOT_TEST_VERBOSE) console.log(line);
      },
    });
  const world: ProxyWorld = {
    stateDir,
    network,
    httpPort,
    httpsPort,
    proxy: make(),
    restartAgent() {
      world.proxy = make();
      return world.proxy;
    },
    async deploy(app, version, route) {
      apps.add(app);
      const ctx = await makeContext(docker);
      ctx.proxy = world.proxy;
      const { cancelWhen, onLog } = route;
      if (cancelWhen || onLog) {
        const log = ctx.log;
        ctx.log = (stream, line) => {
          log(stream, line);
          onLog?.(line);
          if (cancelWhen?.(line)) ctx.controller.abort();
        };
      }
      const job = makeJob({
        kind: "deploy",
        app,
        version,
        source: { type: "files", files: route.files ?? routedAppFiles(version, { healthy: route.healthy }) },
        run: {
          ports: route.ports ?? [],
          env: {},
          secrets: [],
          restart: "unless-stopped",
          healthcheck: { path: "/health", port: 80, timeout_seconds: 8, interval_seconds: 0.2 },
          ...(route.stopFirst ? { stop_first: true } : {}),
        },
        domains: route.domains,
        proxy: { port: 80, health_path: "/health", drain_seconds: 5, response_timeout_seconds: 30, ...route.proxy },
        tls: route.tls ?? "off",
        replicas: route.replicas ?? 1,
        ...(route.acme ? { acme: route.acme } : {}),
      });
      try {
        return await executeJob(job, ctx);
      } finally {
        if (process.env.DEPLOYBOT_TEST_VERBOSE) console.log(ctx.text());
        await ctx.cleanup();
      }
    },
    async cleanup() {
      await world.proxy.stop();
      for (const app of apps) await removeAppContainers(app);
      await engineRequest("DELETE", `/networks/${network}`).catch(() => undefined);
      await rm(stateDir, { recursive: true, force: true });
    },
  };
  return world;
}

/** GET through the proxy with a Host header; null when nothing answers. */
export function viaProxy(port: number, host: string, urlPath = "/"): Promise<{ status: number; body: string; location?: string } | null> {
  // node:http, not fetch: fetch does not let a caller set the Host header.
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, headers: { host }, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: body.trim(), ...(res.headers.location ? { location: res.headers.location } : {}) }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(null));
  });
}

/** Polls `fn` until it returns true (generous bound: CPU is shared). */
export async function eventually(what: string, fn: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not happen within ${timeoutMs / 1000}s`);
}

/** Connects to the https port as `servername`, verifying the chain against `ca`; the served certificate and the answer to GET /. */
export function httpsGet(port: number, servername: string, ca: string): Promise<{ fingerprint: string; issuer: string; status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, servername, path: "/", headers: { host: servername }, ca, agent: false, timeout: 5000 }, (res) => {
      const cert = (res.socket as tls.TLSSocket).getPeerCertificate();
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ fingerprint: cert.fingerprint256, issuer: [cert.issuer.CN ?? ""].flat().join(","), status: res.statusCode ?? 0, body: body.trim() }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}
