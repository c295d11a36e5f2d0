import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { ProxyFiles } from "./haproxyConfig";
import { haproxyCommand, showInfo, socketAnswers } from "./runtimeApi";

/** The master CLI knows `show proc`, not `show info`. */
const masterAnswers = (files: ProxyFiles) =>
  haproxyCommand(files.masterSocket, "show proc", 2000).then(
    (out) => out.includes("master"),
    () => false,
  );

const run = promisify(execFile);

/**
 * Who starts HAProxy: `agent` starts it itself (detached, in master-worker mode) whenever its
 * socket does not answer; `external` leaves that to a service manager (the deploybot-proxy
 * systemd unit, which may bind ports 80/443 while the agent runs without privileges) and only
 * writes the config and reloads.
 */
export type ProxySupervision = "agent" | "external";

/** `haproxy -c`: a config HAProxy would refuse never replaces the running one. */
export async function checkConfig(bin: string, configFile: string): Promise<void> {
  try {
    await run(bin, ["-c", "-q", "-f", configFile], { timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`HAProxy refused the generated config: ${(e.stderr ?? e.message).trim().split("\n").slice(-5).join(" | ")}`);
  }
}

async function waitFor(what: string, timeoutMs: number, ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ok()) return;
    await sleep(100);
  }
  throw new Error(`${what} within ${timeoutMs / 1000}s`);
}

/** The worker's pid, or null when nothing answers on the admin socket. */
async function workerPid(files: ProxyFiles): Promise<string | null> {
  return showInfo(files.adminSocket).then(
    (info) => info.Pid ?? null,
    () => null,
  );
}

/**
 * Makes HAProxy serve `files.config`: a seamless reload through the master CLI when it runs
 * (the new worker takes the listening sockets over from the old one, which finishes its
 * connections), a start when it does not and the agent supervises it.
 */
export async function applyConfig(bin: string, files: ProxyFiles, supervision: ProxySupervision): Promise<"reloaded" | "started"> {
  await checkConfig(bin, files.config);
  const before = await workerPid(files);
  if (before && (await masterAnswers(files))) {
    await haproxyCommand(files.masterSocket, "reload");
    await waitFor("HAProxy did not finish its reload", 30_000, async () => {
      const now = await workerPid(files);
      return now !== null && now !== before;
    });
    return "reloaded";
  }
  if (supervision === "external") {
    // The service manager starts (or restarts) it with the file we just wrote.
    await waitFor("HAProxy (deploybot-proxy service) did not answer on its socket", 60_000, async () => (await workerPid(files)) !== null);
    return "started";
  }
  await startHaproxy(bin, files);
  return "started";
}

/** Starts HAProxy as a daemon (-D): it outlives the agent, so an agent restart never drops a route. */
export async function startHaproxy(bin: string, files: ProxyFiles): Promise<void> {
  const child = spawn(bin, ["-W", "-D", "-S", `${files.masterSocket},mode,600`, "-f", files.config, "-p", files.pidFile], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const code = await new Promise<number | null>((resolve) => {
    child.once("exit", resolve);
    child.once("error", () => resolve(-1));
  });
  if (code !== 0) throw new Error(`HAProxy did not start (exit ${code}): ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
  await waitFor("HAProxy did not answer on its admin socket", 15_000, async () => (await workerPid(files)) !== null);
}

/** Stops a HAProxy the agent started (tests, `agent` supervision); the pid comes from its pid file. */
export async function stopHaproxy(files: ProxyFiles): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(files.pidFile, "utf8").trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  await waitFor("HAProxy did not stop", 10_000, async () => !(await socketAnswers(files.adminSocket))).catch(() => undefined);
}
