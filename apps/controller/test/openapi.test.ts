import { describe, expect, test } from "vitest";
import { apiRoutes } from "../src/openapi/routes";
import { makeHarness } from "./fixture";

const key = (method: string, path: string) => `${method.toUpperCase()} ${path}`;

describe("the API description", () => {
  test("documents every route the app serves, and only those", () => {
    const { app } = makeHarness();
    const served = new Set(
      app.routes
        .filter((r) => r.method !== "ALL")
        .map((r) => key(r.method, r.path.replace(/:(\w+)/g, "{$1}").replace(/(.)\/$/, "$1")))
        .filter((k) => k !== "GET /openapi.json" && k !== "GET /docs"),
    );
    const documented = new Set(apiRoutes.map((r) => key(r.method, r.path)).filter((k) => k !== "GET /openapi.json" && k !== "GET /docs"));
    const undocumented = [...served].filter((k) => !documented.has(k));
    const missing = [...documented].filter((k) => !served.has(k));
    expect({ undocumented, missing }).toEqual({ undocumented: [], missing: [] });
    expect(apiRoutes.length).toBe(new Set(apiRoutes.map((r) => key(r.method, r.path))).size);
  });

  test("GET /openapi.json is public and describes bodies, queries and scopes from the zod schemas", async () => {
    const h = makeHarness();
    const res = await h.call("GET", "/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, Record<string, { "x-deploybot-auth": string; parameters: { name: string; in: string }[]; requestBody?: unknown }>>;
    };
    expect(doc.openapi).toBe("3.1.0");
    const submit = doc.paths["/v1/jobs"]!.post!;
    expect(submit["x-deploybot-auth"]).toBe("deploy");
    expect(JSON.stringify(submit.requestBody)).toContain('"repo"');
    const logs = doc.paths["/v1/jobs/{jobId}/logs"]!.get!;
    expect(logs.parameters.map((p) => `${p.in}:${p.name}`)).toEqual(["path:jobId", "query:after", "query:limit"]);
    expect(doc.paths["/v1/logs/stream"]!.get!.parameters.map((p) => p.name)).toEqual(["job", "host", "app", "after"]);
  });

  test("GET /docs is a self-contained page listing every operation", async () => {
    const h = makeHarness();
    const res = await h.call("GET", "/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const html = await res.text();
    for (const r of apiRoutes) expect(html).toContain(`${r.method.toUpperCase()}</span> <code>${r.path}</code>`);
    expect(html).not.toMatch(/<script|<link|src="http|href="http/);
    // one <main> landmark; headings never skip a level; white badge text keeps 4.5:1
    expect(html.match(/<main>/g)?.length).toBe(1);
    const levels = [...html.matchAll(/<h([1-6])/g)].map((m) => Number(m[1]));
    for (let i = 1; i < levels.length; i++) expect(levels[i]).toBeLessThanOrEqual(levels[i - 1]! + 1);
    const badges = [...html.matchAll(/\.(get|post|delete|put)[^{]*\{background:#([0-9a-f]{6})\}/g)];
    expect(badges.length).toBe(4);
    for (const [, , hex] of badges) expect(contrastWithWhite(hex!)).toBeGreaterThanOrEqual(4.5);
  });
});

function contrastWithWhite(hex: string): number {
  const channel = (i: number) => {
    const c = Number.parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 1.05 / (0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4) + 0.05);
}
