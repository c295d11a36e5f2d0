/**
 * `pnpm bench:zero-downtime`: what a redeploy does to live traffic. One app behind the host
 * proxy (HAProxy, routed by its domain) and one in port mode (published host port), each under
 * the same fixed-rate load (half keep-alive, half new connections, no retries) during 5
 * redeploys and a rollback. Requests sent, failed, p99 in steady state and during the switches,
 * in one run, so the two modes are compared on the same machine at the same moment.
 * Real engine and HAProxy (scripts/test-services.sh). Writes bench/results/<date>-zero-downtime.md.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import type { ClaimedJob, JobSpec } from "../packages/protocol/src";
import { connectDocker } from "../apps/agent/src/docker/connect";
import { executeJob, type JobContext } from "../apps/agent/src/executors";
import { HostProxy } from "../apps/agent/src/proxy";
import { BASE_IMAGE, engineRequest, freePort, removeAppContainers } from "../test/support/docker";
import { type LoadSample, percentile, startLoad } from "../test/support/load";

const RATE = Number(process.env.BENCH_RATE ?? 300);
const STEADY_MS = Number(process.env.BENCH_STEADY_MS ?? 20_000);
/** the load's first seconds open its connections in a burst (busybox httpd listens with a backlog of 9): not steady state */
const WARMUP_MS = 2000;
const REDEPLOYS = 5;
const ROOT = join(import.meta.dirname, "..");
const docker = connectDocker();

const appFiles = (version: string) => ({
  Dockerfile: `FROM ${BASE_IMAGE}\nCOPY www/ /www/\nCMD ["sh", "-c", "trap 'exit 0' TERM; busybox httpd -f -p 80 -h /www & wait"]\n`,
  "www/index.html": `${version}\n`,
  "www/health": "ok\n",
});

function job(app: string, spec: Partial<JobSpec>): ClaimedJob {
  return { id: `bench-${randomUUID().slice(0, 8)}`, kind: "deploy", app, leaseId: "bench", spec: { kind: "deploy", app, ...spec }, timeoutSeconds: 600, attempt: 1, logOffset: 0 };
}

function context(base: string, proxy?: HostProxy): JobContext {
  return { docker, workRoot: join(base, "work"), cacheRoot: join(base, "cache"), log: () => undefined, signal: new AbortController().signal, ...(proxy ? { proxy } : {}) };
}

interface ModeResult {
  mode: string;
  sent: number;
  failed: number;
  steadyP99: number;
  switchP99: number;
  switchSeconds: number;
  failures: string[];
}

/** Steady load, then 5 redeploys and a rollback under the same load; windows are each deploy's span. */
async function measure(mode: string, port: number, host: string, deploy: (version: string) => Promise<void>, rollbackTo: () => Promise<void>): Promise<ModeResult> {
  const load = startLoad({ port, host, ratePerSecond: RATE });
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, STEADY_MS));
  const windows: [number, number][] = [];
  const span = async (fn: () => Promise<void>) => {
    const start = Date.now() - t0;
    await fn();
    windows.push([start, Date.now() - t0]);
    await new Promise((r) => setTimeout(r, 1000));
  };
  for (let i = 2; i <= REDEPLOYS + 1; i++) await span(() => deploy(`v${i}`));
  await span(rollbackTo);
  const samples = await load.stop();
  const inSwitch = (s: LoadSample) => windows.some(([a, b]) => s.at >= a && s.at <= b);
  const slow = samples.filter((s) => s.ms > 500);
  if (slow.length > 0) {
    console.log(`${mode}: ${slow.length} answers slower than 500 ms (${slow.filter(inSwitch).length} during switches, ${slow.filter((s) => s.keepAlive).length} on keep-alive connections): ${slow.slice(0, 20).map((s) => `${Math.round(s.ms)}@${s.at}`).join(" ")}`);
  }
  const steady = samples.filter((s) => s.at >= WARMUP_MS && s.at < STEADY_MS && s.ok).map((s) => s.ms);
  const during = samples.filter((s) => inSwitch(s) && s.ok).map((s) => s.ms);
  const failed = samples.filter((s) => !s.ok);
  return {
    mode,
    sent: samples.length,
    failed: failed.length,
    steadyP99: percentile(steady, 99),
    switchP99: percentile(during, 99),
    switchSeconds: windows.reduce((t, [a, b]) => t + (b - a), 0) / 1000,
    failures: [...new Set(failed.map((f) => f.error ?? `HTTP ${f.status}`))],
  };
}

async function main() {
  const base = mkdtempSync(join(os.tmpdir(), "deploybot-zd-bench-"));
  const suffix = Date.now().toString(36);
  const routedApp = `zdr-${suffix}`;
  const portApp = `zdp-${suffix}`;
  const domain = `${routedApp}.bench.test`;
  const network = `deploybot-bench-${suffix}`;
  const httpPort = await freePort();
  const proxy = new HostProxy({ docker, stateDir: join(base, "state"), network, bindAddress: "127.0.0.1", httpPort, httpsPort: await freePort(), supervision: "agent" });
  const hostPort = await freePort();
  const routed = { domains: [domain], proxy: { port: 80, health_path: "/health", drain_seconds: 5, response_timeout_seconds: 30 }, tls: "off" as const };
  const run = (ports: string[]) => ({ ports, env: {}, secrets: [], restart: "unless-stopped" as const, healthcheck: { path: "/health", port: 80, timeout_seconds: 20, interval_seconds: 0.2 } });
  const deployRouted = async (version: string, image?: string) => {
    const spec = image ? { source: { type: "image" as const, image }, version } : { source: { type: "files" as const, files: appFiles(version) }, version };
    const outcome = await executeJob(job(routedApp, { ...spec, run: run([]), ...routed }), context(base, proxy));
    if (!outcome.ok) throw new Error(`routed deploy ${version}: ${outcome.error}`);
  };
  const deployPort = async (version: string, image?: string) => {
    const spec = image ? { source: { type: "image" as const, image }, version } : { source: { type: "files" as const, files: appFiles(version) }, version };
    const outcome = await executeJob(job(portApp, { ...spec, run: run([`127.0.0.1:${hostPort}:80`]) }), context(base));
    if (!outcome.ok) throw new Error(`port-mode deploy ${version}: ${outcome.error}`);
  };
  const results: ModeResult[] = [];
  try {
    // Every version is built before the load starts, so a window measures the switch (start,
    // health-gate, route, drain, stop), not a build competing for the CPU: hosts pull images a
    // builder made. v1 is deployed from its build; the rest as images, the rollback included.
    for (let i = REDEPLOYS + 1; i >= 1; i--) {
      await deployRouted(`v${i}`);
      await deployPort(`v${i}`);
    }
    const asImage = (deploy: typeof deployRouted, app: string) => (v: string) => deploy(v, `deploybot/${app}:${v}`);
    results.push(await measure("proxy (HAProxy, by domain)", httpPort, domain, asImage(deployRouted, routedApp), () => deployRouted("v1", `deploybot/${routedApp}:v1`)));
    results.push(await measure("port mode (published port)", hostPort, `127.0.0.1:${hostPort}`, asImage(deployPort, portApp), () => deployPort("v1", `deploybot/${portApp}:v1`)));
  } finally {
    await proxy.stop();
    await removeAppContainers(routedApp);
    await removeAppContainers(portApp);
    await engineRequest("DELETE", `/networks/${network}`).catch(() => undefined);
    for (const app of [routedApp, portApp]) {
      for (let i = 1; i <= REDEPLOYS + 1; i++) await engineRequest("DELETE", `/images/deploybot/${app}:v${i}?force=1`).catch(() => undefined);
    }
    rmSync(base, { recursive: true, force: true });
  }
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  const lines = [
    `# Zero-downtime bench (${new Date().toISOString().slice(0, 10)})`,
    "",
    `${RATE} requests/s (half keep-alive, half new connections, no retries), ${STEADY_MS / 1000} s steady (p99 without the first ${WARMUP_MS / 1000} s), then ${REDEPLOYS} redeploys and a rollback, one app per mode, same run.`,
    "",
    "| mode | sent | failed | steady p99 | switch p99 | ratio | time in switches |",
    "|---|---|---|---|---|---|---|",
    ...results.map((r) => `| ${r.mode} | ${r.sent} | ${r.failed} | ${ms(r.steadyP99)} | ${ms(r.switchP99)} | ${(r.switchP99 / r.steadyP99).toFixed(2)}x | ${r.switchSeconds.toFixed(1)} s |`),
    "",
    ...results.filter((r) => r.failures.length > 0).map((r) => `- ${r.mode} failures: ${r.failures.join(", ")}`),
    "",
  ];
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  const file = join(ROOT, `bench/results/${new Date().toISOString().slice(0, 10)}-zero-downtime.md`);
  writeFileSync(file, lines.join("\n"));
  console.log(lines.join("\n"));
  console.log(`written to ${file}`);
  const proxied = results[0]!;
  // The issue's target: 0 failed of >= 10,000 through the proxy, switch p99 <= 2x steady p99.
  if (proxied.failed > 0 || proxied.sent < 10_000) process.exitCode = 1;
}

await main();
