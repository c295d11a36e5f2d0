import { delay, HttpResponse, http } from "msw";
import pino from "pino";
import { describe, expect, test } from "vitest";
import { testConfig } from "../../src/config";
import { ApiError } from "../../src/lib/errors";
import { GitHubClient } from "../../src/services/github";
import { API, REPO, SHA, seen } from "./handlers";
import { server, useFakeGitHub } from "./server";

useFakeGitHub();

const TOKEN = "ghp_testtoken0123456789abcdefghijklmnopqrs";

function client(token: string | null = TOKEN, timeoutMs?: number) {
  const lines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (l: string) => lines.push(l) });
  return { gh: new GitHubClient({ config: testConfig({ githubToken: token ?? undefined }), logger }, timeoutMs), lines };
}

async function failure(p: Promise<unknown>): Promise<ApiError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
}

describe("listTags", () => {
  test("names each tag with its commit: sha, date, author, message, newest first", async () => {
    const { gh } = client();
    const tags = await gh.listTags(REPO);
    expect(tags).toEqual([
      { name: "v1.1.0", sha: SHA.v110, date: "2026-11-01T09:00:00Z", author: "hubot", message: "Add the health endpoint\n\nand a test" },
      { name: "v1.0.0", sha: SHA.v100, date: "2026-10-01T09:00:00Z", author: "octocat", message: "Release 1.0.0" },
    ]);
    expect(seen[0]).toMatchObject({
      path: `/repos/${REPO}/tags?per_page=100`,
      auth: `Bearer ${TOKEN}`,
      accept: "application/vnd.github+json",
      apiVersion: "2022-11-28",
    });
  });

  test("works without a token (public repositories), sending no Authorization", async () => {
    const { gh } = client(null);
    expect(await gh.listTags(REPO)).toHaveLength(2);
    expect(seen.every((r) => r.auth === null)).toBe(true);
  });

  test("an unknown repository is a 404", async () => {
    const err = await failure(client().gh.listTags("acme/nope"));
    expect(err).toMatchObject({ status: 404, code: "github_repo_not_found" });
  });

  test("an unreadable commit blanks its row instead of failing the list", async () => {
    server.use(http.get(`${API}/repos/:o/:r/commits/${SHA.v100}`, () => HttpResponse.json({ message: "boom" }, { status: 500 })));
    const tags = await client().gh.listTags(REPO);
    expect(tags.find((t) => t.name === "v1.0.0")).toEqual({ name: "v1.0.0", sha: SHA.v100, date: null, author: null, message: null });
  });
});

describe("resolveRef", () => {
  test("a lightweight tag resolves to its commit", async () => {
    expect(await client().gh.resolveRef(REPO, "v1.0.0")).toBe(SHA.v100);
  });

  test("an annotated tag is dereferenced through the tag object to its commit", async () => {
    expect(await client().gh.resolveRef(REPO, "v1.1.0")).toBe(SHA.v110);
    expect(seen.map((r) => r.path)).toEqual([`/repos/${REPO}/git/ref/tags/v1.1.0`, `/repos/${REPO}/git/tags/${SHA.v110tag}`]);
  });

  test("branches, including ones with a slash, resolve to their head", async () => {
    const { gh } = client();
    expect(await gh.resolveRef(REPO, "main")).toBe(SHA.main);
    expect(await gh.resolveRef(REPO, "refs/heads/feature/login")).toBe(SHA.v110);
  });

  test("a full sha is returned as is, without asking GitHub", async () => {
    expect(await client().gh.resolveRef(REPO, SHA.main.toUpperCase())).toBe(SHA.main);
    expect(seen).toEqual([]);
  });

  test("a short sha resolves through the commits API", async () => {
    expect(await client().gh.resolveRef(REPO, SHA.v100.slice(0, 7))).toBe(SHA.v100);
  });

  test("an unknown ref is a clear 422 unknown_ref", async () => {
    const err = await failure(client().gh.resolveRef(REPO, "v9.9.9"));
    expect(err).toMatchObject({ status: 422, code: "unknown_ref" });
    expect(err.message).toContain("v9.9.9");
  });

  test("a ref git would refuse never reaches GitHub", async () => {
    const err = await failure(client().gh.resolveRef(REPO, "--upload-pack=x"));
    expect(err).toMatchObject({ status: 400, code: "invalid_ref" });
    expect(seen).toEqual([]);
  });
});

describe("setCommitStatus", () => {
  const status = { state: "pending" as const, target_url: "http://localhost:8080/v1/deployments/dep_1", description: "x".repeat(200), context: "deploybot/web" };

  test("posts the status with the token; long descriptions are cut to GitHub's 140", async () => {
    expect(await client().gh.setCommitStatus(REPO, SHA.main, status)).toBe(true);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: "POST", path: `/repos/${REPO}/statuses/${SHA.main}`, auth: `Bearer ${TOKEN}` });
    expect(seen[0]!.body).toMatchObject({ state: "pending", context: "deploybot/web", target_url: status.target_url });
    expect((seen[0]!.body as { description: string }).description).toHaveLength(140);
  });

  test("is skipped without a token", async () => {
    expect(await client(null).gh.setCommitStatus(REPO, SHA.main, status)).toBe(false);
    expect(seen).toEqual([]);
  });
});

describe("GitHub failures become clear errors, never crashes, never the token", () => {
  const tagsPath = `${API}/repos/:o/:r/tags`;

  test("401 bad credentials -> 502 github_auth", async () => {
    server.use(http.get(tagsPath, () => HttpResponse.json({ message: "Bad credentials" }, { status: 401 })));
    const { gh, lines } = client();
    const err = await failure(gh.listTags(REPO));
    expect(err).toMatchObject({ status: 502, code: "github_auth" });
    expect(err.message).toContain("Bad credentials");
    expect(err.message + lines.join("")).not.toContain(TOKEN);
  });

  test("403 with x-ratelimit-remaining: 0 -> 503 github_rate_limited with the reset time", async () => {
    const reset = Math.floor(Date.parse("2030-01-01T00:00:00Z") / 1000);
    server.use(
      http.get(tagsPath, () =>
        HttpResponse.json(
          { message: "API rate limit exceeded for 203.0.113.9." },
          { status: 403, headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) } },
        ),
      ),
    );
    const err = await failure(client().gh.listTags(REPO));
    expect(err).toMatchObject({ status: 503, code: "github_rate_limited" });
    expect(err.message).toContain("2030-01-01T00:00:00.000Z");
    expect(err.details).toMatchObject({ resetAt: "2030-01-01T00:00:00.000Z" });
  });

  test("429 with retry-after -> 503 github_rate_limited", async () => {
    server.use(http.get(tagsPath, () => HttpResponse.json({ message: "secondary rate limit" }, { status: 429, headers: { "retry-after": "60" } })));
    const err = await failure(client().gh.listTags(REPO));
    expect(err).toMatchObject({ status: 503, code: "github_rate_limited", details: { retryAfterSeconds: 60 } });
  });

  test("403 without rate-limit headers is an access problem, not a rate limit", async () => {
    server.use(http.get(tagsPath, () => HttpResponse.json({ message: "Resource not accessible by integration" }, { status: 403 })));
    expect(await failure(client().gh.listTags(REPO))).toMatchObject({ status: 502, code: "github_auth" });
  });

  test("500 -> 502 github_unavailable", async () => {
    server.use(http.get(tagsPath, () => new HttpResponse("oops", { status: 500 })));
    expect(await failure(client().gh.listTags(REPO))).toMatchObject({ status: 502, code: "github_unavailable" });
  });

  test("a network error -> 502 github_unavailable", async () => {
    server.use(http.get(`${API}/repos/:o/:r/git/ref/*`, () => HttpResponse.error()));
    const { gh, lines } = client();
    const err = await failure(gh.resolveRef(REPO, "main"));
    expect(err).toMatchObject({ status: 502, code: "github_unavailable" });
    expect(err.message + lines.join("")).not.toContain(TOKEN);
  });

  test("a GitHub that never answers times out -> 502 github_unavailable", async () => {
    server.use(
      http.get(tagsPath, async () => {
        await delay(2_000);
        return HttpResponse.json([]);
      }),
    );
    const err = await failure(client(TOKEN, 50).gh.listTags(REPO));
    expect(err).toMatchObject({ status: 502, code: "github_unavailable" });
    expect(err.message).toContain("no answer within");
  });
});
