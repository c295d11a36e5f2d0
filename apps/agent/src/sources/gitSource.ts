import { access, mkdir } from "node:fs/promises";
import path from "node:path";
import { gitUrlProblem, isFullSha, refProblem } from "@deploybot/protocol";
import type { JobLog } from "../executors/types";
import { readTar } from "./tarReader";
import { runGit } from "./runGit";
import { checkEntries, writeEntries } from "./writeEntries";

export type GitCheckout = { ok: true; sha: string } | { ok: false; reason: string };

/**
 * Checks out `ref` of `url` into `dest`. A bare cache per app under `cacheRoot` keeps every
 * object fetched so far; `git fetch origin -- <ref>` then transfers only what changed (the
 * cache's refs are the "haves" in the negotiation). The tree is exported with `git archive`
 * through our own tar reader, so the same traversal and symlink checks apply as for archives,
 * and the build context carries no .git directory.
 */
export async function checkoutGit(
  input: { app: string; url: string; ref: string; cacheRoot: string; dest: string },
  log: JobLog,
  signal: AbortSignal,
): Promise<GitCheckout> {
  const problem = refProblem(input.ref);
  if (problem) return { ok: false, reason: `git ref ${JSON.stringify(input.ref)} refused: ${problem}` };
  const urlProblem = gitUrlProblem(input.url);
  if (urlProblem) return { ok: false, reason: urlProblem };

  const cache = path.join(input.cacheRoot, "git", `${safeDirName(input.app)}.git`);
  const fresh = !(await access(path.join(cache, "HEAD")).then(() => true, () => false));
  if (fresh) {
    await mkdir(cache, { recursive: true });
    const init = await runGit(["init", "--bare", "-q", cache], { signal });
    if (!init.ok) return init;
  }
  // The URL may change between jobs (a moved repo); always point origin at this job's URL.
  const setUrl = await runGit(["config", "remote.origin.url", input.url], { cwd: cache, signal });
  if (!setUrl.ok) return setUrl;

  log("system", `git: fetching ${input.ref} (${fresh ? "new cache" : "cached mirror"})`);
  let fetched = await runGit(["fetch", "--no-tags", "--force", "-q", "origin", "--", input.ref], { cwd: cache, signal });
  let rev = "FETCH_HEAD^{commit}";
  if (!fetched.ok && !signal.aborted && /^[0-9a-f]{4,39}$/.test(input.ref)) {
    // A short sha cannot be fetched by name: take all branches and tags, then resolve locally.
    fetched = await runGit(["fetch", "--force", "-q", "origin", "--", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"], { cwd: cache, signal });
    rev = `${input.ref}^{commit}`;
  }
  if (!fetched.ok) return fetched;
  const resolved = await runGit(["rev-parse", "--verify", "-q", "--end-of-options", rev], { cwd: cache, signal });
  if (!resolved.ok) return { ok: false, reason: `git ref ${input.ref} does not name a commit` };
  const sha = resolved.stdout.toString("utf8").trim();
  if (!isFullSha(sha)) return { ok: false, reason: `git rev-parse gave an unexpected answer for ${input.ref}` };
  // Keep the commit reachable so `git gc` never drops it and the next fetch can use it as a base.
  await runGit(["update-ref", "refs/deploybot/last", sha], { cwd: cache, signal });
  log("system", `git: ${input.ref} is ${sha}`);

  const archive = await runGit(["archive", "--format=tar", sha], { cwd: cache, signal });
  if (!archive.ok) return archive;
  const parsed = await readTar(archive.stdout);
  if (!parsed.ok) return { ok: false, reason: `git archive: ${parsed.reason}` };
  const checked = checkEntries(parsed.entries);
  if (!checked.ok) return { ok: false, reason: `repository refused: ${checked.reason}` };
  await writeEntries(input.dest, checked.entries);
  return { ok: true, sha };
}

/** App names are validated by the controller; this keeps a surprising one from naming a path. */
const safeDirName = (app: string): string =>
  /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/.test(app) ? app : `app-${Buffer.from(app).toString("hex").slice(0, 60)}`;
