import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ADMIN, type Harness, makeHarness } from "./fixture";

const built = mkdtempSync(join(tmpdir(), "deploybot-dashboard-"));
mkdirSync(join(built, "assets"));
const INDEX = `<!doctype html><html lang="en"><head><script type="module" src="/assets/index-abc.js"></script></head><body><div id="app"></div></body></html>`;
const SCRIPT = `console.log("dashboard");${" ".repeat(2000)}`;
writeFileSync(join(built, "index.html"), INDEX);
writeFileSync(join(built, "assets/index-abc.js"), SCRIPT);
const empty = mkdtempSync(join(tmpdir(), "deploybot-dashboard-missing-"));
afterAll(() => {
  rmSync(built, { recursive: true, force: true });
  rmSync(empty, { recursive: true, force: true });
});

describe("the dashboard at /", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness({ dashboardDir: built });
  });
  afterAll(() => h?.close());

  test("/ and every client route answer index.html without a token, with a same-origin CSP", async () => {
    for (const path of ["/", "/apps/web", "/deployments/dep_123", "/jobs?status=failed"]) {
      const res = await h.call("GET", path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/html");
      expect(res.headers.get("cache-control")).toBe("no-cache");
      expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
      expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
      expect(await res.text()).toBe(INDEX);
    }
  });

  test("built assets are served by content hash, cached for good, gzipped when the browser accepts it", async () => {
    const plain = await h.call("GET", "/assets/index-abc.js");
    expect(plain.headers.get("content-type")).toContain("text/javascript");
    expect(plain.headers.get("cache-control")).toContain("immutable");
    expect(await plain.text()).toBe(SCRIPT);
    const gz = await h.call("GET", "/assets/index-abc.js", { headers: { "accept-encoding": "gzip, br" } });
    expect(gz.headers.get("content-encoding")).toBe("gzip");
    const bytes = Buffer.from(await gz.arrayBuffer());
    expect(bytes.length).toBeLessThan(SCRIPT.length / 10);
    expect(gunzipSync(bytes).toString()).toBe(SCRIPT);
  });

  test("the API keeps its JSON errors: unknown /v1 paths, other methods and missing assets are 404 JSON", async () => {
    for (const [method, path] of [["GET", "/v1/nope"], ["GET", "/v1"], ["POST", "/apps/web"], ["GET", "/assets/index-old.js"]] as const) {
      const res = await h.call(method, path);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect((await res.json()).error.code).toBe("not_found");
    }
    // the API routes still answer as before
    expect((await h.call("GET", "/healthz")).status).toBe(200);
    expect((await h.call("GET", "/v1/hosts")).status).toBe(401);
  });

  test("without a build the controller says how to make one (503), and the API still works", async () => {
    const bare = await makeHarness({ dashboardDir: empty });
    const res = await bare.call("GET", "/apps/web");
    expect(res.status).toBe(503);
    expect(await res.text()).toContain("pnpm --filter @deploybot/dashboard build");
    expect((await bare.call("GET", "/healthz")).status).toBe(200);
    // building while the controller runs is enough: the next request finds it
    writeFileSync(join(empty, "index.html"), INDEX);
    expect((await bare.call("GET", "/")).status).toBe(200);
  });
});

describe("what the dashboard reads of an app", () => {
  test("GET /v1/apps and /v1/apps/{name} carry the app's domains, TLS mode and replicas from apps.yaml", async () => {
    const yaml = `
apps:
  - name: web
    repo: acme/web
    hosts: [web-1]
    domains: [web.example.com]
    proxy: { port: 8080 }
    replicas: 2
    tls: internal
  - name: worker
    repo: acme/worker
`;
    const h = await makeHarness({}, yaml);
    const one = (await (await h.call("GET", "/v1/apps/web", { token: ADMIN })).json()).app;
    expect(one).toMatchObject({ domains: ["web.example.com"], tls: "internal", replicas: 2, proxy: { port: 8080 } });
    const list = (await (await h.call("GET", "/v1/apps", { token: ADMIN })).json()).apps;
    expect(list.find((a: { name: string }) => a.name === "worker")).toMatchObject({ domains: [], tls: "auto", replicas: 1, proxy: null });
  });
});
