import { HttpResponse, http } from "msw";

/** testConfig's default DEPLOYBOT_GITHUB_API_URL. */
export const API = "https://api.github.com";
export const REPO = "acme/web";

export const SHA = {
  v100: "3b18e512dba79e4c8300dd08aeb37f8e728b8dad",
  v110: "9fceb02d0ae598e95dc970b74767f19372d61af8",
  v110tag: "c3d0be41ecbe669545ee3e94d31ed9a4bc91ee3c",
  main: "6dcb09b5b57875f334f61aebed695e2e4193db5e",
} as const;

/** Every request the fake GitHub saw, for header and body assertions. */
export const seen: { method: string; path: string; auth: string | null; accept: string | null; apiVersion: string | null; body: unknown }[] = [];

const commits: Record<string, { login: string; name: string; date: string; message: string }> = {
  [SHA.v100]: { login: "octocat", name: "The Octocat", date: "2026-10-01T09:00:00Z", message: "Release 1.0.0" },
  [SHA.v110]: { login: "hubot", name: "Hubot", date: "2026-11-01T09:00:00Z", message: "Add the health endpoint\n\nand a test" },
};

const refs: Record<string, { type: "commit" | "tag"; sha: string }> = {
  "tags/v1.0.0": { type: "commit", sha: SHA.v100 },
  "tags/v1.1.0": { type: "tag", sha: SHA.v110tag },
  "heads/main": { type: "commit", sha: SHA.main },
  "heads/feature/login": { type: "commit", sha: SHA.v110 },
};

const notFound = () => HttpResponse.json({ message: "Not Found", documentation_url: "https://docs.github.com/rest" }, { status: 404 });

function record(request: Request, body: unknown = null) {
  const url = new URL(request.url);
  seen.push({
    method: request.method,
    path: url.pathname + url.search,
    auth: request.headers.get("authorization"),
    accept: request.headers.get("accept"),
    apiVersion: request.headers.get("x-github-api-version"),
    body,
  });
}

/** A small GitHub holding one repository, acme/web, with a lightweight and an annotated tag. */
export const handlers = [
  http.get(`${API}/repos/:owner/:repo/tags`, ({ request, params }) => {
    record(request);
    if (`${params.owner}/${params.repo}` !== REPO) return notFound();
    return HttpResponse.json([
      { name: "v1.0.0", commit: { sha: SHA.v100, url: `${API}/repos/${REPO}/commits/${SHA.v100}` }, zipball_url: "", tarball_url: "", node_id: "x" },
      { name: "v1.1.0", commit: { sha: SHA.v110, url: `${API}/repos/${REPO}/commits/${SHA.v110}` }, zipball_url: "", tarball_url: "", node_id: "y" },
    ]);
  }),
  http.get(`${API}/repos/:owner/:repo/branches`, ({ request, params }) => {
    record(request);
    if (`${params.owner}/${params.repo}` !== REPO) return notFound();
    return HttpResponse.json([
      { name: "main", commit: { sha: SHA.main, url: `${API}/repos/${REPO}/commits/${SHA.main}` }, protected: true },
      { name: "feature/login", commit: { sha: SHA.v110, url: `${API}/repos/${REPO}/commits/${SHA.v110}` }, protected: false },
    ]);
  }),
  http.get(`${API}/repos/:owner/:repo/commits/:sha`, ({ request, params }) => {
    record(request);
    const sha = Object.keys(commits).find((s) => s.startsWith(String(params.sha)));
    const c = sha ? commits[sha] : undefined;
    if (!c) return HttpResponse.json({ message: `No commit found for SHA: ${params.sha}` }, { status: 422 });
    return HttpResponse.json({
      sha,
      commit: { author: { name: c.name, email: "x@example.com", date: c.date }, committer: { name: "GitHub", email: "noreply@github.com", date: c.date }, message: c.message },
      author: { login: c.login },
    });
  }),
  http.get(`${API}/repos/:owner/:repo/git/ref/*`, ({ request }) => {
    record(request);
    const ref = decodeURIComponent(new URL(request.url).pathname.replace(/^.*\/git\/ref\//, ""));
    const object = refs[ref];
    if (!object) return notFound();
    return HttpResponse.json({ ref: `refs/${ref}`, node_id: "r", url: "", object: { ...object, url: "" } });
  }),
  http.get(`${API}/repos/:owner/:repo/git/tags/:sha`, ({ request, params }) => {
    record(request);
    if (params.sha !== SHA.v110tag) return notFound();
    return HttpResponse.json({
      sha: SHA.v110tag,
      tag: "v1.1.0",
      message: "Version 1.1.0\n",
      tagger: { name: "Hubot", email: "hubot@example.com", date: "2026-11-01T10:00:00Z" },
      object: { type: "commit", sha: SHA.v110, url: "" },
    });
  }),
  http.post(`${API}/repos/:owner/:repo/statuses/:sha`, async ({ request, params }) => {
    const body = (await request.json()) as Record<string, unknown>;
    record(request, body);
    return HttpResponse.json({ id: seen.length, state: body.state, context: body.context, sha: params.sha }, { status: 201 });
  }),
];
