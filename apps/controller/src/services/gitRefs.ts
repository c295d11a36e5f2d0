import type { RemoteRef } from "@deploybot/protocol";
import { ApiError } from "../lib/errors";
import type { AppDefinition } from "./appsConfig";
import type { Deps } from "./deps";
import type { GitHubClient, GitHubTag } from "./github";
import { listRemoteRefs } from "./gitRemote";

/** `https://github.com/owner/name(.git)`, `git@github.com:owner/name.git` -> owner/name; else null. */
export function githubRepoOf(url: string): string | null {
  const m = /^(?:https:\/\/github\.com\/|git@github\.com:|ssh:\/\/git@github\.com\/)([\w.-]+\/[\w.-]+?)(?:\.git)?\/?$/i.exec(url);
  return m ? m[1]! : null;
}

const fromGitHub =
  (type: RemoteRef["type"]) =>
  (r: GitHubTag): RemoteRef => ({ name: r.name, type, sha: r.sha, commit: { date: r.date, author: r.author, message: r.message } });

/**
 * An app's tags and branches. Any git host is read with `git ls-remote` on the app's own URL;
 * a GitHub remote, when a token is set, through GitHub's API instead, which adds each commit's
 * date, author and message (the first 100 of each kind, newest first).
 */
export class GitRefs {
  constructor(
    private readonly deps: Pick<Deps, "config">,
    private readonly github: GitHubClient,
  ) {}

  async list(app: AppDefinition, type: "tag" | "branch" | "all" = "all"): Promise<RemoteRef[]> {
    const repo = this.githubRepo(app);
    if (!repo) {
      const refs = await listRemoteRefs(app.url, { githubToken: this.deps.config.githubToken });
      return refs.filter((r) => type === "all" || r.type === type);
    }
    const [tags, branches] = await Promise.all([
      type === "branch" ? [] : this.github.listTags(repo),
      type === "tag" ? [] : this.github.listBranches(repo),
    ]);
    return [...tags.map(fromGitHub("tag")), ...branches.map(fromGitHub("branch"))];
  }

  /** A tag or branch (or `refs/tags/x`, `refs/heads/x`) of the app's remote -> its commit sha. */
  async resolve(app: AppDefinition, ref: string, only: "tag" | "any" = "any"): Promise<string> {
    const repo = this.githubRepo(app);
    if (repo) return this.github.resolveRef(repo, only === "tag" && !ref.startsWith("refs/") ? `refs/tags/${ref}` : ref);
    const refs = await listRemoteRefs(app.url, { githubToken: this.deps.config.githubToken });
    const short = ref.replace(/^refs\/(tags|heads)\//, "");
    const kind = ref.startsWith("refs/heads/") ? "branch" : ref.startsWith("refs/tags/") || only === "tag" ? "tag" : undefined;
    // a tag wins over a branch of the same name, as git itself resolves a short name
    const match =
      refs.find((r) => r.name === short && r.type === "tag" && kind !== "branch") ??
      refs.find((r) => r.name === short && r.type === "branch" && kind !== "tag");
    if (!match) throw new ApiError(422, "unknown_ref", `'${ref}' is not a ${only === "tag" ? "tag" : "branch or tag"} of ${app.name}'s git remote`);
    return match.sha;
  }

  /** GitHub's API is used only with a token: without one its rate limit (60/h) would not last. */
  private githubRepo(app: AppDefinition): string | null {
    return this.github.authenticated ? githubRepoOf(app.url) : null;
  }
}
