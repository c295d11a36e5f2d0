import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AgentUpdateOffer } from "@deploybot/protocol";
import type { Logger } from "pino";

/** The exit code that asks the service manager for a restart into the new version (EX_TEMPFAIL). */
export const RESTART_EXIT_CODE = 75;
const FAILED_FILE = "update-failed.json";

export interface SelfUpdateDeps {
  /** GET from the controller (with the agent's token, failing over like every other call) */
  download(path: string): Promise<Response>;
  stateDir: string;
  trialSeconds: number;
  logger: Logger;
  /** the node binary to run the trial with */
  execPath?: string;
}

/**
 * Takes an update the controller offered, between jobs: download the bundle, check its sha256,
 * store it in releases/VERSION/, then run it once in trial mode (it must register with the
 * controller and exit 0 within `trialSeconds`). Only then is the `current` link switched (a new
 * link renamed over the old: atomic) and "restart" answered, for the caller to exit with
 * RESTART_EXIT_CODE so systemd (Restart=always) starts the new version. A version that fails
 * any step is written to update-failed.json and never tried again; this agent keeps running.
 */
export async function selfUpdate(offer: AgentUpdateOffer, deps: SelfUpdateDeps): Promise<"restart" | "kept"> {
  const log = deps.logger.child({ update: offer.version });
  if (failedBefore(deps.stateDir) === offer.version) return "kept";
  const refuse = (reason: string): "kept" => {
    log.warn({ reason }, "agent update refused; staying on this version");
    writeFileSync(join(deps.stateDir, FAILED_FILE), JSON.stringify({ version: offer.version, reason, at: new Date().toISOString() }));
    return "kept";
  };

  let bundle: Buffer;
  try {
    const res = await deps.download(offer.path);
    // a controller (or its proxy) in trouble is not the version's fault: offered again later
    if (res.status >= 500) {
      await res.body?.cancel();
      log.warn({ status: res.status }, "agent update download failed; will try again when offered");
      return "kept";
    }
    if (!res.ok) return refuse(`download answered ${res.status}`);
    bundle = Buffer.from(await res.arrayBuffer());
  } catch (err) {
    log.warn({ err: (err as Error).message }, "agent update download failed; will try again when offered");
    return "kept"; // a network blip is not the version's fault
  }
  const sha = createHash("sha256").update(bundle).digest("hex");
  if (sha !== offer.sha256) return refuse(`sha256 ${sha} is not the offered ${offer.sha256}`);

  const releaseDir = join(deps.stateDir, "releases", offer.version);
  mkdirSync(releaseDir, { recursive: true });
  const file = join(releaseDir, "deploybot-agent.mjs");
  writeFileSync(`${file}.tmp`, bundle);
  renameSync(`${file}.tmp`, file);
  log.info({ sha256: sha }, "agent update downloaded and checked; trial run");

  const trial = await trialRun(deps.execPath ?? process.execPath, file, deps.trialSeconds * 1000);
  if (trial !== 0) return refuse(trial === null ? `did not register within ${deps.trialSeconds} s` : `trial run exited ${trial} before registering`);

  const link = join(deps.stateDir, "current");
  const next = join(deps.stateDir, ".current.new");
  rmSync(next, { force: true });
  symlinkSync(join("releases", offer.version), next);
  renameSync(next, link);
  log.info("agent update in place; restarting into it");
  return "restart";
}

const failedBefore = (stateDir: string): string | undefined => {
  try {
    return (JSON.parse(readFileSync(join(stateDir, FAILED_FILE), "utf8")) as { version?: string }).version;
  } catch {
    return undefined;
  }
};

/** Exit code of the trial, or null when it ran out of time (then it is killed). */
function trialRun(execPath: string, file: string, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(execPath, [file], { env: { ...process.env, DEPLOYBOT_UPDATE_TRIAL: "1" }, stdio: "ignore" });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(null);
    }, timeoutMs);
    child.on("error", () => {
      clearTimeout(timer);
      resolve(-1);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
}
