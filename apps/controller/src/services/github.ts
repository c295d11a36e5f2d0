import { isFullSha, refProblem } from "@deploybot/protocol";
import type { Logger } from "pino";
import { ApiError } from "../lib/errors";
import type { Deps } from "./deps";

export interface GitHubTag {
  name: string;
  sha: string;
  /** commit date (ISO), null when the commit could not be read */
  date: string | null;
  author: string | null;
  message: string | null;
}

export type CommitState = "pending" | "success" | "failure" | "error";

export interface CommitStatus {
  state: CommitState;
  target_url: string;
  description: string;
  context: string;
}

interface GitObject {
  type: string;
  sha: string;
}

/** The tags API answers one page of at most 100; more would be a walk through pages nobody picks from. */
const TAG_PAGE = 100;
/** Commit look-ups in flight at once for a tag list: fast, and far below GitHub's secondary limits. */
const COMMIT_CONCURRENCY = 8;
/** Annotated tags may point at tags; a chain longer than this is a loop or an abuse. */
const MAX_TAG_DEPTH = 5;

export const REPO_PATTERN = /^[\w.-]+\/[\w.-]+$/;

const encodeRef = (ref: string) => ref.split("/").map(encodeURIComponent).join("/");

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * GitHub's REST API over fetch. Every failure becomes an ApiError with a `github_*` code, so a
 * GitHub outage is a 502/503 answer, never a crash. The token is only ever a request header:
 * no message or log line carries it.
 */
export class GitHubClient {
  private readonly apiUrl: string;
  private readonly token: string | undefined;
  private readonly logger: Logger;

  constructor(
    deps: Pick<Deps, "config" | "logger">,
    private readonly timeoutMs = 10_000,
  ) {
    this.apiUrl = deps.config.githubApiUrl;
    this.token = deps.config.githubToken;
    this.logger = deps.logger.child({ component: "github" });
  }

  get authenticated(): boolean {
    return this.token !== undefined;
  }

  /** The first page of tags (newest commit first) with the commit each points at. */
  listTags(repo: string): Promise<GitHubTag[]> {
    return this.listRefs(repo, "tags");
  }

  /** The first page of branches (newest commit first), like listTags. */
  listBranches(repo: string): Promise<GitHubTag[]> {
    return this.listRefs(repo, "branches");
  }

  private async listRefs(repo: string, kind: "tags" | "branches"): Promise<GitHubTag[]> {
    assertRepo(repo);
    const refs = await this.request<{ name: string; commit: { sha: string } }[]>(
      "GET",
      `/repos/${repo}/${kind}?per_page=${TAG_PAGE}`,
      { notFound: () => new ApiError(404, "github_repo_not_found", `repository '${repo}' was not found on GitHub (or the token cannot see it)`) },
    );
    const list = await mapLimited(refs, COMMIT_CONCURRENCY, async (ref): Promise<GitHubTag> => {
      const commit = await this.commitOf(repo, ref.commit.sha);
      return { name: ref.name, sha: ref.commit.sha, ...commit };
    });
    // newest first; refs whose commit could not be read keep GitHub's order at the end
    return list.sort((a, b) => (b.date ?? "").localeCompare(a.date ?? ""));
  }

  /** A branch, tag (annotated ones dereferenced to their commit) or commit sha -> the full commit sha. */
  async resolveRef(repo: string, ref: string): Promise<string> {
    assertRepo(repo);
    if (isFullSha(ref.toLowerCase())) return ref.toLowerCase();
    const problem = refProblem(ref);
    if (problem) throw new ApiError(400, "invalid_ref", `ref ${problem}`);

    const onlyTag = ref.startsWith("refs/tags/");
    const onlyBranch = ref.startsWith("refs/heads/");
    const short = ref.replace(/^refs\/(tags|heads)\//, "");
    if (!onlyBranch) {
      const tag = await this.gitRef(repo, `tags/${short}`);
      if (tag) return this.peelTag(repo, tag);
    }
    if (!onlyTag) {
      const branch = await this.gitRef(repo, `heads/${short}`);
      if (branch) return branch.sha;
    }
    if (!onlyTag && !onlyBranch && /^[0-9a-f]{7,39}$/i.test(ref)) {
      const commit = await this.request<{ sha: string } | null>("GET", `/repos/${repo}/commits/${ref}`, {
        notFound: () => null,
        unprocessable: () => null,
      });
      if (commit) return commit.sha;
    }
    throw new ApiError(422, "unknown_ref", `'${ref}' is not a branch, tag or commit of ${repo}`);
  }

  /** Posts a commit status; returns false (and sends nothing) when no token is configured. */
  async setCommitStatus(repo: string, sha: string, status: CommitStatus): Promise<boolean> {
    if (!this.token) return false;
    assertRepo(repo);
    // GitHub refuses descriptions over 140 characters
    const description = status.description.length > 140 ? `${status.description.slice(0, 139)}…` : status.description;
    await this.request("POST", `/repos/${repo}/statuses/${sha}`, {
      body: { ...status, description },
      notFound: () => new ApiError(404, "github_not_found", `commit ${sha} of ${repo} was not found on GitHub`),
    });
    return true;
  }

  private async commitOf(repo: string, sha: string): Promise<Pick<GitHubTag, "date" | "author" | "message">> {
    type Commit = { commit: { author: { name: string; date: string } | null; committer: { date: string } | null; message: string }; author: { login: string } | null };
    try {
      const c = await this.request<Commit>("GET", `/repos/${repo}/commits/${sha}`);
      return {
        date: c.commit.author?.date ?? c.commit.committer?.date ?? null,
        author: c.author?.login ?? c.commit.author?.name ?? null,
        message: c.commit.message,
      };
    } catch (err) {
      // auth and rate limits fail the whole listing; one unreadable commit only blanks its row
      if (err instanceof ApiError && (err.code === "github_auth" || err.code === "github_rate_limited")) throw err;
      this.logger.warn({ repo, sha, code: (err as ApiError).code }, "could not read a tag's commit");
      return { date: null, author: null, message: null };
    }
  }

  private gitRef(repo: string, ref: string): Promise<GitObject | null> {
    return this.request<{ object: GitObject } | null>("GET", `/repos/${repo}/git/ref/${encodeRef(ref)}`, {
      notFound: () => null,
    }).then((r) => r?.object ?? null);
  }

  private async peelTag(repo: string, object: GitObject): Promise<string> {
    let current = object;
    for (let depth = 0; current.type === "tag"; depth++) {
      if (depth >= MAX_TAG_DEPTH) throw new ApiError(422, "unknown_ref", `tag chain in ${repo} is deeper than ${MAX_TAG_DEPTH}`);
      const tag = await this.request<{ object: GitObject }>("GET", `/repos/${repo}/git/tags/${current.sha}`);
      current = tag.object;
    }
    return current.sha;
  }

  private async request<T>(
    method: "GET" | "POST",
    path: string,
    opts: { body?: unknown; notFound?: () => T | ApiError; unprocessable?: () => T | ApiError } = {},
  ): Promise<T> {
    const what = `${method} ${path.split("?")[0]}`;
    let res: Response;
    try {
      // globalThis.fetch at call time, so test interceptors installed later still apply
      res = await globalThis.fetch(`${this.apiUrl}${path}`, {
        method,
        headers: {
          accept: "application/vnd.github+json",
          "x-github-api-version": "2022-11-28",
          "user-agent": "deploybot",
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const timedOut = (err as Error).name === "TimeoutError";
      const reason = timedOut ? `no answer within ${this.timeoutMs / 1000}s` : networkReason(err);
      this.logger.warn({ request: what, reason }, "GitHub unreachable");
      throw new ApiError(502, "github_unavailable", `GitHub API unreachable (${what}): ${reason}`);
    }
    if (res.ok) {
      if (res.status === 204) return undefined as T;
      try {
        return (await res.json()) as T;
      } catch {
        throw new ApiError(502, "github_unavailable", `GitHub answered ${what} with a body that is not JSON`);
      }
    }
    const failure = await this.failure(res, what, opts);
    if (failure instanceof ApiError) throw failure;
    return failure;
  }

  private async failure<T>(res: Response, what: string, opts: { notFound?: () => T | ApiError; unprocessable?: () => T | ApiError }): Promise<T | ApiError> {
    const githubMessage = await res
      .json()
      .then((b: { message?: unknown }) => (typeof b?.message === "string" ? b.message.slice(0, 200) : ""))
      .catch(() => "");
    const said = githubMessage ? `: ${githubMessage}` : "";
    const limited = rateLimit(res);
    if ((res.status === 403 || res.status === 429) && limited) {
      this.logger.warn({ request: what, resetAt: limited.resetAt }, "GitHub rate limit reached");
      return new ApiError(503, "github_rate_limited", `GitHub rate limit reached; it resets at ${limited.resetAt}`, limited);
    }
    if (res.status === 401 || res.status === 403) {
      this.logger.warn({ request: what, status: res.status }, "GitHub refused the credentials");
      const hint = res.status === 401 ? "check DEPLOYBOT_GITHUB_TOKEN" : "the token lacks access to this repository";
      return new ApiError(502, "github_auth", `GitHub refused ${what} (${res.status}${said}); ${hint}`);
    }
    if (res.status === 404 && opts.notFound) return opts.notFound();
    if (res.status === 422 && opts.unprocessable) return opts.unprocessable();
    if (res.status >= 500) {
      this.logger.warn({ request: what, status: res.status }, "GitHub failed");
      return new ApiError(502, "github_unavailable", `GitHub answered ${what} with ${res.status}${said}`);
    }
    return new ApiError(502, "github_error", `GitHub refused ${what} (${res.status}${said})`);
  }
}

function assertRepo(repo: string): void {
  if (!REPO_PATTERN.test(repo)) throw new ApiError(400, "invalid_repo", `'${repo}' is not a GitHub full name like owner/name`);
}

function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === "string") return cause.code;
  if (typeof cause?.message === "string") return cause.message;
  return (err as Error).message || "network error";
}

/** Primary limits say `x-ratelimit-remaining: 0` and a reset epoch; secondary ones say `retry-after`. */
function rateLimit(res: Response): { resetAt: string; retryAfterSeconds: number } | null {
  const retryAfter = Number(res.headers.get("retry-after"));
  if (res.headers.has("retry-after") && Number.isFinite(retryAfter)) {
    return { resetAt: new Date(Date.now() + retryAfter * 1000).toISOString(), retryAfterSeconds: retryAfter };
  }
  if (res.headers.get("x-ratelimit-remaining") === "0") {
    const reset = Number(res.headers.get("x-ratelimit-reset"));
    const resetMs = Number.isFinite(reset) && reset > 0 ? reset * 1000 : Date.now() + 60_000;
    return { resetAt: new Date(resetMs).toISOString(), retryAfterSeconds: Math.max(0, Math.ceil((resetMs - Date.now()) / 1000)) };
  }
  return null;
}
