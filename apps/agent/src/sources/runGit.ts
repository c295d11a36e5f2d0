import { execFile } from "node:child_process";

export type GitResult = { ok: true; stdout: Buffer } | { ok: false; reason: string };

/**
 * Runs git with an argument vector, never through a shell. `ext::` and other exotic transports
 * are refused (GIT_ALLOW_PROTOCOL) so a job's URL cannot run a command, and git never prompts:
 * a private repo without credentials fails instead of hanging the agent.
 */
export function runGit(args: string[], options: { cwd?: string; signal: AbortSignal }): Promise<GitResult> {
  return new Promise((resolve) => {
    execFile(
      "git",
      ["-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null", ...args],
      {
        cwd: options.cwd,
        signal: options.signal,
        encoding: "buffer",
        maxBuffer: 2 * 1024 ** 3,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: process.env.HOME ?? "/root",
          GIT_TERMINAL_PROMPT: "0",
          GIT_ALLOW_PROTOCOL: "file:git:http:https:ssh",
          GIT_SSH_COMMAND: "ssh -o BatchMode=yes",
          LC_ALL: "C",
        },
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ ok: true, stdout });
        if (options.signal.aborted) return resolve({ ok: false, reason: "cancelled" });
        const message = stderr.toString("utf8").trim().split("\n").slice(-3).join(" / ");
        resolve({ ok: false, reason: `git ${args[0]} failed: ${message || err.message}` });
      },
    );
  });
}
