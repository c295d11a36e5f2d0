import { deployment as deploymentSchema } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { AppsConfigError, parseAppsConfig } from "../src/services/appsConfig";
import { ADMIN, type Harness, test } from "./fixture";

const routed = (domains: string, extra = "") => `
apps:
  - name: web
    repo: acme/web
    url: https://git.example.test/acme/web.git
    hosts: [web-1]
    domains: [${domains}]
    proxy: { port: 8080, health_path: /health, drain_seconds: 10 }
    replicas: 2
    tls: auto
${extra}`;

async function runNext(h: Harness, agent: { id: string; token: string }, result: Record<string, unknown> = {}) {
  const beat = await (await h.heartbeat(agent)).json();
  expect(beat.job).not.toBeNull();
  const { id, leaseId } = beat.job;
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status: "running" } });
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status: "succeeded", result } });
  return beat.job;
}

const deploy = async (h: Harness, ref: string) => {
  const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref } });
  expect(res.status).toBe(201);
  return deploymentSchema.parse((await res.json()).deployment);
};

describe("apps.yaml routing keys", () => {
  test("domains, proxy, replicas and tls with their defaults", () => {
    const web = parseAppsConfig(routed("web.example.com"), "apps.yaml").byName("web");
    expect(web).toMatchObject({
      domains: ["web.example.com"],
      proxy: { port: 8080, health_path: "/health", drain_seconds: 10, response_timeout_seconds: 60 },
      replicas: 2,
      tls: "auto",
    });
    const plain = parseAppsConfig("apps:\n  - name: w\n    repo: a/b\n", "apps.yaml").byName("w");
    expect(plain).toMatchObject({ domains: [], replicas: 1, tls: "auto" });
  });

  test.each([
    [routed("web.example.com, Bad_Domain.com"), /apps\.yaml:7: apps\[0\]\.domains\[1\]: 'Bad_Domain\.com' is not a valid domain: use lower case/],
    [routed("web.example.com, -web.example.com"), /apps\.yaml:7: apps\[0\]\.domains\[1\]: '-web\.example\.com' is not a valid domain: the label '-web' starts or ends with '-'/],
    [routed("localhost"), /apps\.yaml:7: apps\[0\]\.domains\[0\]: 'localhost' is not a valid domain: it needs at least two labels/],
    [routed("web.example.com:8080"), /apps\.yaml:7: apps\[0\]\.domains\[0\]: .* no scheme, port or path/],
    [routed('"*.example.com"'), /apps\.yaml:7: apps\[0\]\.domains\[0\]: .*wildcards are not supported/],
    [routed("web.example.com, web.example.com"), /apps\.yaml:7: apps\[0\]\.domains\[1\]: duplicate domain 'web\.example\.com'/],
    [
      routed("web.example.com", "  - name: api\n    repo: acme/api\n    domains: [web.example.com]\n    proxy: { port: 80 }\n"),
      /apps\.yaml:13: apps\[1\]\.domains\[0\]: domain 'web\.example\.com' is already app 'web''s/,
    ],
    ["apps:\n  - name: w\n    repo: a/b\n    domains: [w.example.com]\n", /apps\.yaml:4: apps\[0\]\.domains: an app with domains needs proxy\.port/],
    [
      "apps:\n  - name: w\n    repo: a/b\n    domains: [w.example.com]\n    proxy: { port: 80 }\n    run:\n      ports: [\"80:80\"]\n",
      /apps\.yaml:7: apps\[0\]\.run\.ports: an app with domains publishes no host port/,
    ],
    ["apps:\n  - name: w\n    repo: a/b\n    replicas: 2\n    run:\n      ports: [\"80:80\"]\n", /apps\.yaml:4: apps\[0\]\.replicas: replicas > 1 needs domains/],
    [routed("*.example.com"), /apps\.yaml: invalid YAML: /],
    [routed("web.example.com").replace("tls: auto", "tls: maybe"), /apps\.yaml:10: apps\[0\]\.tls: /],
    [routed("web.example.com").replace("health_path: /health", "health_path: health"), /apps\.yaml:8: apps\[0\]\.proxy\.health_path: must be a path/],
  ])("a bad routing key is refused with file, line and reason (%#)", (text, message) => {
    expect(() => parseAppsConfig(text, "apps.yaml")).toThrow(AppsConfigError);
    expect(() => parseAppsConfig(text, "apps.yaml")).toThrow(message);
  });
});

describe("routed deploys", () => {
  test("the deploy job carries domains, proxy, replicas, tls and the controller's ACME account", async ({ h }) => {
    h.setApps(routed("web.example.com"));
    const agent = await h.register("web-1");
    await deploy(h, "v1");
    const job = await runNext(h, agent, { version: "v1", image: "deploybot/web:v1" });
    expect(job.spec).toMatchObject({
      domains: ["web.example.com"],
      proxy: { port: 8080, health_path: "/health", drain_seconds: 10 },
      replicas: 2,
      tls: "auto",
      acme: { directory: "https://acme-v02.api.letsencrypt.org/directory" },
    });
  });

  test("a release keeps its whole config: a rollback brings back the domains it ran with", async ({ h }) => {
    h.setApps(routed("old.example.com"));
    const agent = await h.register("web-1");
    const v1 = await deploy(h, "v1");
    await runNext(h, agent, { version: "v1", image: "deploybot/web:v1" });
    h.setApps(routed("new.example.com").replace("replicas: 2", "replicas: 3"));
    await deploy(h, "v2");
    expect((await runNext(h, agent, { version: "v2", image: "deploybot/web:v2" })).spec).toMatchObject({ domains: ["new.example.com"], replicas: 3 });
    const releases = (await (await h.call("GET", "/v1/apps/web/releases", { token: ADMIN })).json()).releases;
    expect(releases.find((r: { id: string }) => r.id === v1.releaseId).config).toMatchObject({ domains: ["old.example.com"], replicas: 2, tls: "auto", run: {} });
    const rb = await h.call("POST", "/v1/apps/web/rollback", { token: ADMIN, body: {} });
    expect(rb.status).toBe(201);
    const job = await runNext(h, agent);
    expect(job.spec).toMatchObject({ source: { type: "image", image: "deploybot/web:v1" }, domains: ["old.example.com"], replicas: 2 });
  });
});

describe("routes reported by agents", () => {
  test("GET /v1/apps/{name} shows domains and each host's route with upstream health", async ({ h }) => {
    h.setApps(routed("web.example.com"));
    const agent = await h.register("web-1");
    const route = {
      app: "web",
      domains: ["web.example.com"],
      tls: "auto",
      upstreams: [
        { container: "aaaaaaaaaaaa", address: "172.18.0.2:8080", state: "ready", health: "up", release: "rel_1" },
        { container: "bbbbbbbbbbbb", address: "172.18.0.3:8080", state: "ready", health: "down", release: "rel_1", futureField: 1 },
      ],
    };
    const other = { ...route, app: "api", domains: ["api.example.com"] };
    expect((await h.heartbeat(agent, { routes: [route, other] })).status).toBe(200);
    const body = await (await h.call("GET", "/v1/apps/web", { token: ADMIN })).json();
    expect(body.app).toMatchObject({ domains: ["web.example.com"], replicas: 2, tls: "auto", proxy: { port: 8080 } });
    expect(body.routes).toEqual([
      expect.objectContaining({ host: "web-1", online: true, healthy: 1, domains: ["web.example.com"], upstreams: [route.upstreams[0], expect.not.objectContaining({ futureField: 1 })] }),
    ]);
  });
});
