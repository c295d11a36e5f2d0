import { describe, expect } from "vitest";
import { ADMIN, type Harness, test } from "./fixture";

const token = async (h: Harness, scope: string, apps?: string[]) => {
  const res = await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "t", scope, ...(apps ? { apps } : {}) } });
  expect(res.status).toBe(201);
  return (await res.json()).token as string;
};

describe("API tokens limited to apps", () => {
  test("a deploy token for web deploys web and nothing else", async ({ h }) => {
    const web = await token(h, "deploy", ["web"]);
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "v-secret" } });
    expect((await h.call("POST", "/v1/deployments", { token: web, body: { app: "web", ref: "main" } })).status).toBe(201);
    const other = await h.call("POST", "/v1/deployments", { token: web, body: { app: "api", image: "x:1" } });
    expect(other.status).toBe(403);
    expect((await other.json()).error.message).toContain("limited to app web");
    expect((await h.call("POST", "/v1/apps/api/rollback", { token: web, body: {} })).status).toBe(403);
    expect((await h.submit({ repo: "acme/api", ref: "main", host: "api-1" }, web)).status).toBe(403);
    expect((await h.submit({ spec: { kind: "run", app: "api", source: { type: "image", image: "busybox" } }, target: { host: "api-1" } }, web)).status).toBe(403);
  });

  test("a read token for web sees only web's jobs and deployments", async ({ h }) => {
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "v-secret" } });
    const webDep = (await (await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref: "main" } })).json()).deployment;
    const apiDep = (await (await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "api", image: "x:1" } })).json()).deployment;
    const read = await token(h, "read", ["web"]);
    const jobs = (await (await h.call("GET", "/v1/jobs", { token: read })).json()).jobs;
    expect(jobs.map((j: { app: string }) => j.app)).toEqual(["web"]);
    const deps = (await (await h.call("GET", "/v1/deployments", { token: read })).json()).deployments;
    expect(deps.map((d: { app: string }) => d.app)).toEqual(["web"]);
    expect((await h.call("GET", `/v1/deployments/${webDep.id}`, { token: read })).status).toBe(200);
    expect((await h.call("GET", `/v1/deployments/${apiDep.id}`, { token: read })).status).toBe(403);
    expect((await h.call("GET", `/v1/jobs/${apiDep.jobs[0].id}`, { token: read })).status).toBe(403);
    expect((await h.call("GET", `/v1/jobs/${apiDep.jobs[0].id}/logs`, { token: read })).status).toBe(403);
    expect((await h.call("GET", "/v1/apps/api/releases", { token: read })).status).toBe(403);
    const apps = (await (await h.call("GET", "/v1/apps", { token: read })).json()).apps;
    expect(apps.map((a: { name: string }) => a.name)).toEqual(["web"]);
  });

  test("an admin token cannot be limited; the limit is listed", async ({ h }) => {
    expect((await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "a", scope: "admin", apps: ["web"] } })).status).toBe(400);
    await token(h, "deploy", ["web", "api"]);
    const list = (await (await h.call("GET", "/v1/tokens", { token: ADMIN })).json()).tokens;
    expect(list[0].apps).toEqual(["api", "web"]);
  });
});

describe("raw job specs", () => {
  test("cannot ask for secrets at all, not even with an admin token", async ({ h }) => {
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "v-secret" } });
    const deploy = await token(h, "deploy");
    for (const t of [deploy, ADMIN]) {
      const res = await h.submit(
        { spec: { kind: "run", app: "api", source: { type: "image", image: "busybox" }, run: { secrets: ["DATABASE_URL"] } }, target: { host: "api-1" } },
        t,
      );
      expect(res.status).toBe(422);
      expect((await res.json()).error.code).toBe("raw_spec_secrets");
    }
  });

  test("targeting hosts outside the app's hosts needs admin", async ({ h }) => {
    const deploy = await token(h, "deploy");
    const spec = { kind: "run", app: "web", source: { type: "image", image: "busybox" } };
    expect((await h.submit({ spec, target: { host: "web-1" } }, deploy)).status).toBe(201);
    expect((await h.submit({ spec, target: { host: "api-1" } }, deploy)).status).toBe(403);
    expect((await h.submit({ spec, target: { labels: ["builder"] } }, deploy)).status).toBe(403);
    expect((await h.submit({ repo: "acme/web", ref: "main", host: "api-1" }, deploy)).status).toBe(403);
    expect((await h.call("POST", "/v1/deployments", { token: deploy, body: { app: "web", ref: "main", hosts: ["api-1"] } })).status).toBe(403);
    expect((await h.submit({ spec, target: { host: "api-1" } }, ADMIN)).status).toBe(201);
  });
});
