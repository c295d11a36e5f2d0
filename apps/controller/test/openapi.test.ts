import { describe, expect, test } from "vitest";
import { type Harness, makeHarness } from "./fixture";

type Json = Record<string, unknown>;
type Operation = {
  "x-deploybot-auth": string;
  security: unknown[];
  parameters?: { name: string; in: string }[];
  requestBody?: Json;
  responses: Record<string, { content?: Record<string, { schema?: Json }> }>;
};
type Doc = { openapi: string; servers: { url: string }[]; paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Json> } };

const key = (method: string, path: string) => `${method.toUpperCase()} ${path}`;

async function documentOf(harness?: Harness): Promise<Doc> {
  const h = harness ?? (await makeHarness());
  const res = await h.call("GET", "/openapi.json");
  expect(res.status).toBe(200);
  return (await res.json()) as Doc;
}

const operations = (doc: Doc) =>
  Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ method, path, op })));

/** Every value of `key` anywhere in `node`. */
function collect(node: unknown, name: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(node)) for (const n of node) collect(n, name, out);
  else if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === name) out.push(v);
      collect(v, name, out);
    }
  }
  return out;
}

describe("the API description", () => {
  test("a test fails on any undocumented or phantom route", async () => {
    const h = await makeHarness();
    const served = new Set(
      h.app.routes.filter((r) => r.method !== "ALL").map((r) => key(r.method, r.path.replace(/:(\w+)/g, "{$1}").replace(/(.)\/$/, "$1"))),
    );
    const documented = new Set(operations(await documentOf(h)).map((o) => key(o.method, o.path)));
    const undocumented = [...served].filter((k) => !documented.has(k));
    const phantom = [...documented].filter((k) => !served.has(k));
    expect({ undocumented, phantom }).toEqual({ undocumented: [], phantom: [] });
    expect(served.size).toBeGreaterThan(30);
  });

  test("GET /openapi.json is public and describes bodies, queries and scopes from the zod schemas", async () => {
    const doc = await documentOf();
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.servers).toEqual([{ url: "http://localhost" }]);
    const submit = doc.paths["/v1/jobs"]!.post!;
    expect(submit["x-deploybot-auth"]).toBe("deploy");
    expect(submit.security).toEqual([{ bearer: [] }]);
    expect(JSON.stringify(submit.requestBody)).toContain('"repo"');
    const logs = doc.paths["/v1/jobs/{jobId}/logs"]!.get!;
    expect(logs.parameters!.map((p) => `${p.in}:${p.name}`)).toEqual(["path:jobId", "query:after", "query:limit"]);
    expect(doc.paths["/v1/logs/stream"]!.get!.parameters!.map((p) => p.name)).toEqual(["job", "host", "app", "after"]);
    expect(doc.paths["/healthz"]!.get!.security).toEqual([]);
  });

  test("every tag is described (a new resource gets a sentence in tagText)", async () => {
    const doc = (await documentOf()) as Doc & { tags: { name: string; description: string }[] };
    expect(doc.tags.filter((t) => t.description === t.name).map((t) => t.name)).toEqual([]);
  });

  test("servers is DEPLOYBOT_PUBLIC_URL when set", async () => {
    const doc = await documentOf(await makeHarness({ publicUrl: "https://deploy.example.test" }));
    expect(doc.servers).toEqual([{ url: "https://deploy.example.test" }]);
  });

  test("every 2xx JSON answer has a schema, every error the envelope, and 204s have no body", async () => {
    const doc = await documentOf();
    for (const { method, path, op } of operations(doc)) {
      const where = key(method, path);
      const statuses = Object.keys(op.responses);
      expect(statuses.some((s) => s.startsWith("2")), where).toBe(true);
      for (const [status, response] of Object.entries(op.responses)) {
        if (status === "204") {
          expect(response.content, where).toBeUndefined();
          continue;
        }
        const json = response.content?.["application/json"];
        if (status.startsWith("4") || status.startsWith("5")) {
          expect(json?.schema, `${where} ${status}`).toEqual({ $ref: "#/components/schemas/Error" });
          continue;
        }
        if (!json) continue; // text/html, text/event-stream
        expect(Object.keys(json.schema ?? {}).length, `${where} ${status} has an empty schema`).toBeGreaterThan(0);
      }
    }
    expect(Object.keys(doc.paths["/v1/agents/{agentId}"]!.delete!.responses)).toContain("204");
    expect(Object.keys(doc.paths["/v1/apps/{name}/secrets/{key}"]!.delete!.responses)).toContain("204");
  });

  test("shared shapes are components referenced by $ref, with standard formats only", async () => {
    const doc = await documentOf();
    const schemas = doc.components.schemas;
    for (const name of ["Job", "JobSpec", "Agent", "ManagedContainer", "Deployment", "Release", "App", "Error"]) expect(schemas[name], name).toBeDefined();
    const refs = collect(doc.paths, "$ref") as string[];
    expect(refs.filter((r) => r === "#/components/schemas/Job").length).toBeGreaterThan(3);
    // a host's containers are described, not `{}`
    expect(collect(schemas.Agent, "$ref")).toContain("#/components/schemas/ManagedContainer");
    const standard = new Set(["date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uri-reference", "uuid", "regex", "int32", "int64", "float", "double", "byte", "binary", "password"]);
    // (a property may be named "format" too: only string values are formats)
    const formats = collect(doc, "format").filter((f): f is string => typeof f === "string");
    expect(formats.filter((f) => !standard.has(f))).toEqual([]);
  });

  test("POST /v1/builds is documented with what it returns: the job and the image tag", async () => {
    const doc = await documentOf();
    const schema = doc.paths["/v1/builds"]!.post!.responses["201"]!.content!["application/json"]!.schema!;
    expect(schema).toMatchObject({ properties: { job: { $ref: "#/components/schemas/Job" }, imageTag: { type: "string" } } });
  });

  test("GET /docs is a self-contained, accessible page listing every operation", async () => {
    const h = await makeHarness();
    const doc = await documentOf(h);
    const res = await h.call("GET", "/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const html = await res.text();
    for (const { method, path } of operations(doc)) expect(html).toContain(`${method.toUpperCase()}</span> <code>${path}</code>`);
    expect(html).not.toMatch(/<script|<link|src="http|href="http/);
    // one <main> landmark; headings never skip a level
    expect(html.match(/<main>/g)?.length).toBe(1);
    const levels = [...html.matchAll(/<h([1-6])/g)].map((m) => Number(m[1]));
    expect(levels[0]).toBe(1);
    for (let i = 1; i < levels.length; i++) expect(levels[i], `heading ${i}`).toBeLessThanOrEqual(levels[i - 1]! + 1);
    // white text on every method badge keeps WCAG AA contrast (4.5:1)
    const badges = [...html.matchAll(/\.(get|post|delete|put)[^{]*\{background:#([0-9a-f]{3,6})\}/g)];
    expect(badges.length).toBe(4);
    for (const [, method, colour] of badges) expect(contrastWithWhite(colour!), method).toBeGreaterThanOrEqual(4.5);
  });
});

function contrastWithWhite(hex: string): number {
  const full = hex.length === 3 ? [...hex].map((c) => c + c).join("") : hex;
  const channel = (i: number) => {
    const c = Number.parseInt(full.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
  return 1.05 / (luminance + 0.05);
}
