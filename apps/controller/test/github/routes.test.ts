import { HttpResponse, http } from "msw";
import { describe, expect, test } from "vitest";
import { ADMIN, type Harness, makeHarness } from "../fixture";
import { API, REPO, SHA } from "./handlers";
import { server, useFakeGitHub } from "./server";

useFakeGitHub();

const TOKEN = "ghp_routetoken0123456789abcdefghijklmnopq";
const tags = (h: Harness, repo = REPO, token: string | null = ADMIN) =>
  h.call("GET", `/v1/github/tags?repo=${encodeURIComponent(repo)}`, { token: token ?? undefined });

describe("GET /v1/github/tags", () => {
  test("lists the tags with sha, date, author and message", async () => {
    const h = await makeHarness({ githubToken: TOKEN });
    const res = await tags(h);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.repo).toBe(REPO);
    expect(body.tags.map((t: { name: string }) => t.name)).toEqual(["v1.1.0", "v1.0.0"]);
    expect(body.tags[0]).toEqual({ name: "v1.1.0", sha: SHA.v110, date: "2026-11-01T09:00:00Z", author: "hubot", message: "Add the health endpoint\n\nand a test" });
  });

  test("needs an API token with the read scope", async () => {
    const h = await makeHarness();
    expect((await tags(h, REPO, null)).status).toBe(401);
  });

  test("refuses a repo that is not owner/name", async () => {
    const res = await tags(await makeHarness(), "../../etc");
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe("invalid_query");
  });

  test.for([
    ["401", () => HttpResponse.json({ message: "Bad credentials" }, { status: 401 }), 502, "github_auth"],
    [
      "403 rate limit",
      () => HttpResponse.json({ message: "API rate limit exceeded" }, { status: 403, headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1900000000" } }),
      503,
      "github_rate_limited",
    ],
    ["429", () => HttpResponse.json({ message: "slow down" }, { status: 429, headers: { "retry-after": "30" } }), 503, "github_rate_limited"],
    ["500", () => HttpResponse.json({ message: "Server Error" }, { status: 500 }), 502, "github_unavailable"],
    ["network error", () => HttpResponse.error(), 502, "github_unavailable"],
  ] as const)("GitHub %s: a clear error answer, and the controller keeps serving", async ([, reply, status, code]) => {
    const h = await makeHarness({ githubToken: TOKEN });
    server.use(http.get(`${API}/repos/:o/:r/tags`, reply));
    const res = await tags(h);
    expect(res.status).toBe(status);
    const body = await res.json();
    expect(body.error.code).toBe(code);
    expect(JSON.stringify(body)).not.toContain(TOKEN);
    expect(h.logLines.join("")).not.toContain(TOKEN);
    expect((await h.call("GET", "/healthz")).status).toBe(200);
    server.resetHandlers();
    expect((await tags(h)).status).toBe(200);
  });
});
