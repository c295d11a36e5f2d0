import { execFile } from "node:child_process";
import { gitUrlProblem, type RemoteRef } from "@deploybot/protocol";
import { ApiError } from "../lib/errors";

/** ls-remote of a large repository (thousands of tags) stays well under this; a hung remote does not. */
const LS_REMOTE_TIMEOUT_MS = 30_000;

export interface RemoteAuth {
  /** GitHub token, sent only to github.com over https as a basic-auth header (never on a command line) */
  githubToken?: string;
}

/**
 * The tags and branches of any git remote, read with `git ls-remote` (execFile, argument vector,
 * the URL checked first and passed after `--`). Annotated tags are peeled to their commit.
 * Credentials travel in GIT_CONFIG_* environment variables, so they never appear in `ps` or in
 * git's error output; git never prompts.
 */
export async function listRemoteRefs(url: string, auth: RemoteAuth = {}): Promise<RemoteRef[]> {
  const problem = gitUrlProblem(url);
  if (problem) throw new ApiError(422, "invalid_git_url", problem);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    GIT_TERMINAL_PROMPT: "0",
    GIT_ALLOW_PROTOCOL: "file:git:http:https:ssh",
    GIT_SSH_COMMAND: "ssh -o BatchMode=yes",
    LC_ALL: "C",
  };
  if (auth.githubToken && /^https:\/\/github\.com\//i.test(url)) {
    const basic = Buffer.from(`x-access-token:${auth.githubToken}`).toString("base64");
    Object.assign(env, { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.https://github.com/.extraheader", GIT_CONFIG_VALUE_0: `AUTHORIZATION: basic ${basic}` });
  }
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      "git",
      ["-c", "protocol.ext.allow=never", "ls-remote", "--tags", "--heads", "--", url],
      { env, timeout: LS_REMOTE_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 },
      (err, out, stderr) => {
        if (!err) return resolve(out);
        const detail = stderr.trim().split("\n").slice(-2).join(" / ") || err.message;
        reject(new ApiError(502, "git_remote_unavailable", `git ls-remote ${redactUrl(url)} failed: ${redactUrl(detail)}`));
      },
    );
  });
  return parseLsRemote(stdout);
}

/** `<sha>\t<ref>` lines; `refs/tags/x^{}` carries the commit of annotated tag `x`. */
export function parseLsRemote(text: string): RemoteRef[] {
  const refs = new Map<string, RemoteRef>();
  for (const line of text.split("\n")) {
    const [sha, full] = line.split("\t");
    if (!sha || !full || !/^[0-9a-f]{40,64}$/.test(sha)) continue;
    const peeled = full.endsWith("^{}");
    const refName = peeled ? full.slice(0, -3) : full;
    let type: RemoteRef["type"];
    let short: string;
    if (refName.startsWith("refs/tags/")) [type, short] = ["tag", refName.slice(10)];
    else if (refName.startsWith("refs/heads/")) [type, short] = ["branch", refName.slice(11)];
    else continue;
    const key = `${type}:${short}`;
    if (peeled || !refs.has(key)) refs.set(key, { name: short, type, sha });
  }
  return [...refs.values()];
}

/** user:password@ in an https URL must not reach an error message or a log line. */
export const redactUrl = (text: string) => text.replace(/(\w+:\/\/)[^/@\s]+@/g, "$1***@");
