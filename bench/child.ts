/** The controller under test in a child process: start, wait until healthy, stop cleanly. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { APPS_YAML } from "../apps/controller/test/appsYaml";
import type { Client } from "./load";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const ADMIN = "bench-admin-token";
export const JOIN = "bench-join-token";

export async function startChild(dir: string, extraEnv: Record<string, string> = {}): Promise<{ child: ChildProcess; port: number }> {
  writeFileSync(join(dir, "apps.yaml"), APPS_YAML);
  const prof = process.env.BENCH_CPU_PROF;
  const child = spawn(
    process.execPath,
    ["--import", "tsx", ...(prof ? ["--cpu-prof", "--cpu-prof-dir", prof] : []), join(ROOT, "bench/controllerProcess.ts")],
    {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: {
        ...process.env,
        DEPLOYBOT_PORT: "0",
        DEPLOYBOT_HOST: "127.0.0.1",
        DEPLOYBOT_DB: join(dir, "deploybot.db"),
        DEPLOYBOT_CONFIG: join(dir, "apps.yaml"),
        DEPLOYBOT_JOIN_TOKEN: JOIN,
        DEPLOYBOT_ADMIN_TOKEN: ADMIN,
        DEPLOYBOT_SECRET_KEY: "bench-secret-key-with-enough-entropy-0000000",
        // One pino line per request would measure the logger, not the controller.
        DEPLOYBOT_LOG_LEVEL: "silent",
        ...extraEnv,
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("controller did not start within 30 s")), 30_000);
    child.once("message", (m) => {
      clearTimeout(timer);
      resolve((m as { port: number }).port);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`controller exited during start-up (code ${code})`));
    });
  });
  return { child, port };
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (child.connected) child.send("stop");
  else child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

export async function waitHealthy(client: Client): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await client.request("GET", "/healthz").then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("/healthz never answered 200");
}


/** Which controller code was measured: others edit the tree while benches run. */
export function codeVersion(): string {
  try {
    const git = (...args: string[]) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim();
    const dirty = git("status", "--porcelain", "--", "apps/controller", "packages") !== "";
    return `${git("rev-parse", "--short", "HEAD")}${dirty ? " + uncommitted changes in apps/controller or packages" : ""}`;
  } catch {
    return "unknown (no git)";
  }
}

/**
 * A ref's controller sources, beside the current ones so they resolve the same dependencies,
 * with that ref's migrations where its `db/client.ts` and `db/pg.ts` look for them (`src/../drizzle`):
 * extracting `src` alone ran the current migrations on the baseline, so an A/B of a schema change
 * compared the new schema with itself. Returns the `src` directory; `removeBaseline` deletes it all.
 */
export function checkoutBaseline(ref: string): string {
  const dir = join(ROOT, "apps/controller", `.bench-baseline-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const tar = execFileSync("git", ["archive", ref, "apps/controller/src", "apps/controller/drizzle", "apps/controller/drizzle-pg"], { cwd: ROOT, maxBuffer: 256 * 1024 * 1024 });
  execFileSync("tar", ["-x", "--strip-components=2", "-C", dir], { input: tar });
  return join(dir, "src");
}

/** Deletes what `checkoutBaseline` extracted. */
export function removeBaseline(src: string): void {
  rmSync(dirname(src), { recursive: true, force: true });
}
