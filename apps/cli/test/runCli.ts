import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { ADMIN } from "../../controller/test/server";

// The real binary: the launcher, which runs the bundled CLI (rebuilt first when a source changed).
export const BIN = fileURLToPath(new URL("../bin/deploybot.mjs", import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `deploybot ...args` with a clean environment: a temp HOME, and the controller's URL and
 * admin token unless `env` overrides them (undefined removes a variable); `input` goes to stdin.
 */
export function runCli(
  target: { url: string; home: string },
  args: string[],
  opts: { env?: Record<string, string | undefined>; input?: string; timeoutMs?: number } = {},
): Promise<Run> {
  const fullEnv: Record<string, string> = {};
  const merged = {
    PATH: process.env.PATH,
    HOME: target.home,
    XDG_CONFIG_HOME: join(target.home, "config"),
    DEPLOYBOT_URL: target.url,
    DEPLOYBOT_TOKEN: ADMIN,
    ...opts.env,
  };
  for (const [k, v] of Object.entries(merged)) if (v !== undefined) fullEnv[k] = v;
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { env: fullEnv, timeout: opts.timeoutMs ?? 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(opts.input ?? "");
  });
}

/** The run's stdout as JSON, after checking it did not crash. */
export const json = (run: Run) => {
  expect(run.stderr).not.toMatch(/unexpected error/);
  // biome-ignore lint/suspicious/noExplicitAny: callers check the fields they need
  return JSON.parse(run.stdout) as any;
};
