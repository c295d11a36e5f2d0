import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../support/docker";

const repoRoot = resolve(import.meta.dirname, "../..");
export const ADMIN = "e2e-admin-token";
export const JOIN = "e2e-join-token";

/** A real `node` process running one of the apps' main.ts, its output kept in a file. */
function spawnApp(app: "controller" | "agent", env: Record<string, string>, logFile: string): ChildProcess {
  const out = createWriteStream(logFile, { flags: "a" });
  const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, `apps/${app}/src/main.ts`)], {
    cwd: join(repoRoot, `apps/${app}`),
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  return child;
}

/** A child killed by a signal keeps `exitCode === null` for good; `signalCode` says it is gone. */
const gone = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

const exited = (child: ChildProcess) =>
  new Promise<number | null>((r) => (gone(child) ? r(child.exitCode) : child.once("exit", (code) => r(code))));

export interface ControllerProcess {
  url: string;
  dir: string;
  logFile: string;
  /** `env` adds to (or overrides) the environment given at creation, for this start only */
  start(env?: Record<string, string>): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** SIGHUP: the controller re-reads apps.yaml; resolves once its log says so (log level info or lower) */
  reload(): Promise<void>;
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers loosely and check them with assertions
  api<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
}

export async function controllerProcess(appsYaml: string, env: Record<string, string> = {}): Promise<ControllerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "deploybot-e2e-ctl-"));
  writeFileSync(join(dir, "apps.yaml"), appsYaml);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = join(dir, "controller.log");
  let child: ChildProcess | null = null;
  const handle: ControllerProcess = {
    url,
    dir,
    logFile,
    async start(extra = {}) {
      // a second process on the same port would fail to bind, /healthz would still answer from
      // the first, and stop() would then leave the first running for good
      if (child && !gone(child)) throw new Error("the controller is running: stop() it before start()");
      child = spawnApp(
        "controller",
        {
          DEPLOYBOT_PORT: String(port),
          DEPLOYBOT_HOST: "127.0.0.1",
          DEPLOYBOT_DB: join(dir, "deploybot.db"),
          DEPLOYBOT_CONFIG: join(dir, "apps.yaml"),
          DEPLOYBOT_JOIN_TOKEN: JOIN,
          DEPLOYBOT_ADMIN_TOKEN: ADMIN,
          DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "1",
          ...env,
          ...extra,
        },
        logFile,
      );
      // 60 s: a first start in a fresh clone compiles the controller (tsx) while another file runs
      for (let i = 0; i < 600; i++) {
        if (gone(child)) throw new Error(`controller exited with ${child.exitCode ?? child.signalCode}; see ${logFile}`);
        const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
        if (ok) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`controller did not answer /healthz in 60 s; see ${logFile}`);
    },
    async stop(signal = "SIGTERM") {
      if (!child || gone(child)) return child?.exitCode ?? null;
      child.kill(signal);
      return exited(child);
    },
    async reload() {
      // done when the controller logged the reload (or its failure), not after a fixed 500 ms
      const reloads = () => (readFileSync(logFile, "utf8").match(/apps config reload/g) ?? []).length;
      const before = reloads();
      child?.kill("SIGHUP");
      await waitFor("the controller to re-read apps.yaml", async () => (reloads() > before ? true : undefined), 30_000, 50);
    },
    async api(method, path, body) {
      const res = await fetch(url + path, {
        method,
        headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    },
  };
  await handle.start();
  return handle;
}

export interface AgentProcess {
  stateDir: string;
  logFile: string;
  start(): void;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Stops the agent, then the HAProxy it started for its routes (which outlives the agent on purpose). */
export async function stopAgentAndProxy(agent: AgentProcess | undefined): Promise<void> {
  if (!agent) return;
  await agent.stop();
  try {
    process.kill(Number(readFileSync(join(agent.stateDir, "proxy/haproxy.pid"), "utf8")), "SIGTERM");
  } catch {
    // never started
  }
}

export function agentProcess(url: string, hostname: string, env: Record<string, string> = {}): AgentProcess {
  const stateDir = mkdtempSync(join(tmpdir(), `deploybot-e2e-agent-${hostname}-`));
  const logFile = join(stateDir, "agent.log");
  let child: ChildProcess | null = null;
  const handle: AgentProcess = {
    stateDir,
    logFile,
    start() {
      child = spawnApp(
        "agent",
        {
          DEPLOYBOT_URL: url,
          DEPLOYBOT_JOIN_TOKEN: JOIN,
          DEPLOYBOT_HOSTNAME: hostname,
          DEPLOYBOT_STATE_DIR: stateDir,
          DEPLOYBOT_POLL_WAIT_SECONDS: "5",
          ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}),
          ...env,
        },
        logFile,
      );
    },
    async stop(signal = "SIGTERM") {
      if (!child || gone(child)) return child?.exitCode ?? null;
      child.kill(signal);
      return exited(child);
    },
  };
  handle.start();
  return handle;
}

/** Waits until the controller lists `hostname` online (an agent process registered and heartbeats). */
export function waitForHostOnline(ctl: ControllerProcess, hostname: string) {
  return waitFor(`host ${hostname} to come online`, async () => {
    const { body } = await ctl.api("GET", "/v1/hosts");
    return body.hosts.find((h: { hostname: string; online: boolean }) => h.hostname === hostname && h.online);
  });
}

/** Polls until `check` returns a value (not undefined) or the time is up. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const FINAL = ["succeeded", "failed", "cancelled", "lost", "timed_out"];

export async function waitForJob(ctl: ControllerProcess, jobId: string, statuses = FINAL, timeoutMs = 180_000) {
  return waitFor(
    `job ${jobId} to be ${statuses.join("|")}`,
    async () => {
      const { body } = await ctl.api("GET", `/v1/jobs/${jobId}`);
      return statuses.includes(body.job.status) ? body.job : undefined;
    },
    timeoutMs,
  );
}

export async function jobLog(ctl: ControllerProcess, jobId: string): Promise<{ seq: number; line: string; stream: string }[]> {
  const { body } = await ctl.api("GET", `/v1/jobs/${jobId}/logs?limit=10000`);
  return body.entries;
}
