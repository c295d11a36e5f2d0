import * as schema from "../src/db/schema";
import { getTableName, is } from "drizzle-orm";
import { SQLiteTable } from "drizzle-orm/sqlite-core";
import { describe, expect, test } from "vitest";
import { ADMIN, type Harness, JOIN, makeHarness, seedJob } from "./fixture";

/**
 * The product standard "bad input gets a clear error and loses nothing", checked for every
 * operation of the generated API description: each refused request is a 4xx in the envelope
 * `{error:{code,message}}`, the controller answers /healthz after it, logs no unhandled error,
 * and the whole sweep writes no row. A new operation is swept without a line here.
 */

type Json = Record<string, unknown>;
type Param = { name: string; in: "path" | "query" | "header"; required?: boolean; schema?: Json };
type Operation = { "x-deploybot-auth": string; parameters?: Param[]; requestBody?: { content: Record<string, { schema?: Json }> } };
type Doc = { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Json> } };

interface Case {
  what: string;
  method: string;
  path: string;
  token?: string;
  body?: string;
  headers?: Record<string, string>;
  /** the status the answer must have; otherwise any 4xx */
  status?: number;
  /** a word the error message must contain (the field a body case is about) */
  names?: string;
  /** the error code the answer must have */
  code?: string;
}

const ODD_IDS = ["..%2F..%2Fetc%2Fpasswd", "%ZZ", "%E0%A4%A", "%C0%AF", "x".repeat(300), "%C3%BC%E2%98%83%F0%9F%9A%80", "%00", "a%20b%3Bc", "%25%2e%2e"];
const LONG = "x".repeat(100_000);

/** The schema behind `$ref`s and single-branch wrappers. */
function resolve(doc: Doc, s: Json | undefined): Json {
  let node = s ?? {};
  for (let i = 0; i < 20; i++) {
    if (typeof node.$ref === "string") node = doc.components.schemas[node.$ref.split("/").pop()!] ?? {};
    else if (Array.isArray(node.allOf) && node.allOf.length === 1) node = node.allOf[0] as Json;
    else break;
  }
  return node;
}

/** A value the schema accepts as far as a generator without patterns can tell; the cases change one field of it. */
function sample(doc: Doc, s: Json | undefined, depth = 0): unknown {
  const node = resolve(doc, s);
  if (depth > 6) return undefined;
  if ("const" in node) return node.const;
  if (Array.isArray(node.enum)) return node.enum[0];
  const branches = (node.oneOf ?? node.anyOf) as Json[] | undefined;
  if (branches) return sample(doc, branches.find((b) => resolve(doc, b).type !== "null") ?? branches[0], depth + 1);
  const type = Array.isArray(node.type) ? node.type.find((t) => t !== "null") : node.type;
  switch (type) {
    case "object": {
      const props = (node.properties ?? {}) as Record<string, Json>;
      return Object.fromEntries(((node.required ?? []) as string[]).map((k) => [k, sample(doc, props[k], depth + 1)]));
    }
    case "array":
      return Array.from({ length: Number(node.minItems ?? 0) }, () => sample(doc, node.items as Json, depth + 1));
    case "integer":
    case "number":
      return Math.max(Number(node.minimum ?? 1), Number(node.exclusiveMinimum ?? 0) + 1);
    case "boolean":
      return true;
    case "string":
      if (node.format === "date-time") return new Date(0).toISOString();
      if (node.format === "uri") return "https://example.test/";
      if (node.format === "email") return "ops@example.test";
      return "x".repeat(Math.max(1, Number(node.minLength ?? 1)));
    default:
      return "x";
  }
}

/** A value of another JSON type than the schema's. */
function wrongType(doc: Doc, s: Json): unknown {
  const node = resolve(doc, s);
  const type = Array.isArray(node.type) ? node.type.find((t) => t !== "null") : node.type;
  if (type === "string" || node.enum || node.const) return { not: "a string" };
  if (type === "array") return "not an array";
  if (type === "object") return ["not", "an", "object"];
  return "not a number";
}

function bodyCases(doc: Doc, method: string, path: string, op: Operation, token: string | undefined): Case[] {
  const base = { method, path, token, headers: { "content-type": "application/json" }, code: "invalid_body" };
  const out: Case[] = [
    { ...base, what: "malformed JSON", body: "{not json" },
    { ...base, what: "an empty body", body: "" },
    { ...base, what: "a JSON array", body: "[]" },
    { ...base, what: "a JSON string", body: '"text"' },
    { ...base, what: "JSON null", body: "null" },
    { ...base, what: "a number too big for a double", body: "1e999" },
  ];
  const top = resolve(doc, op.requestBody?.content["application/json"]?.schema);
  // a valid body under another media type must not be read as an empty one
  const validBody = JSON.stringify(sample(doc, top));
  out.push({ ...base, what: "a valid body sent as text/plain", body: validBody, headers: { "content-type": "text/plain" }, code: "unsupported_media_type" });
  out.push({ ...base, what: "a valid body without a content type", body: validBody, headers: {}, code: "unsupported_media_type" });
  // a body of several shapes (POST /v1/jobs): the cases of each
  const shapes = ((top.anyOf ?? top.oneOf ?? [top]) as Json[]).map((b) => resolve(doc, b)).filter((b) => b.type === "object");
  for (const shape of shapes) {
    const valid = sample(doc, shape) as Json;
    for (const [what, body, field] of fieldCases(doc, shape, valid, [])) out.push({ ...base, what, body: JSON.stringify(body), names: field });
  }
  return out;
}

/**
 * One bad field at a time in `valid` (the body, or the object at `at` inside it), down to
 * objects three levels deep: [what, the whole body, the field's dotted path].
 */
function fieldCases(doc: Doc, shape: Json, valid: Json, at: string[]): [string, Json, string][] {
  const out: [string, Json, string][] = [];
  const props = (shape.properties ?? {}) as Record<string, Json>;
  const inner = at.reduce<Json>((o, k) => o[k] as Json, valid);
  const withField = (field: string, value: unknown): Json => {
    const copy = structuredClone(valid);
    const target = at.reduce<Json>((o, k) => o[k] as Json, copy);
    if (value === undefined) delete target[field];
    else target[field] = value;
    return copy;
  };
  for (const field of (shape.required ?? []) as string[]) {
    const dotted = [...at, field].join(".");
    out.push([`'${dotted}' missing`, withField(field, undefined), dotted]);
  }
  for (const [field, prop] of Object.entries(props)) {
    const dotted = [...at, field].join(".");
    const node = resolve(doc, prop);
    out.push([`'${dotted}' of the wrong type`, withField(field, wrongType(doc, prop)), dotted]);
    if (Array.isArray(node.enum)) out.push([`'${dotted}' not one of its values`, withField(field, "no-such-value"), dotted]);
    if (node.type === "string" && !node.enum) {
      out.push([`'${dotted}' absurdly long`, withField(field, LONG), dotted]);
      out.push([`'${dotted}' holding a NUL character`, withField(field, "a\u0000b"), dotted]);
    }
    if (node.type === "array" && node.items) {
      const items = resolve(doc, node.items as Json);
      out.push([`'${dotted}' holding a wrong type`, withField(field, [wrongType(doc, items)]), dotted]);
    }
    if (node.type === "object" && node.properties && at.length < 2) {
      // the nested object present (sampled) so that its own fields can be wrong
      const nested = inner[field] ?? sample(doc, node);
      const copy = structuredClone(valid);
      at.reduce<Json>((o, k) => o[k] as Json, copy)[field] = nested;
      out.push(...fieldCases(doc, node, copy, [...at, field]));
    }
  }
  return out;
}

/** Query values no parameter of that type accepts. */
function badQueryValues(doc: Doc, p: Param): string[] {
  const node = resolve(doc, p.schema);
  const type = Array.isArray(node.type) ? node.type.find((t) => t !== "null") : node.type;
  if (type === "integer" || type === "number") {
    const below = typeof node.minimum === "number" ? String(node.minimum - 1) : undefined;
    const above = typeof node.maximum === "number" ? String(node.maximum + 1) : undefined;
    return ["abc", "", "1e400", "99999999999999999999999", ...(type === "integer" ? ["1.5"] : []), ...[below, above].filter((v) => v !== undefined)];
  }
  if (type === "boolean") return ["maybe"];
  if (Array.isArray(node.enum)) return ["no-such-value"];
  if (node.format === "date-time") return ["not-a-time"];
  // a name, label or cursor has a shape; a free-text filter (a search) has none
  const shaped = typeof node.pattern === "string" || typeof node.maxLength === "number";
  return [...(shaped ? ["../../etc/passwd", "x".repeat(4000), "\u00fc\u2603"] : []), "a\u0000b"];
}

describe("bad input to every operation", () => {
  test("is refused with a 4xx in the error envelope, the controller keeps serving, and nothing is written", async () => {
    const h = await makeHarness({ webhookSecret: "sweep-webhook-secret" });
    const doc = (await (await h.call("GET", "/openapi.json")).json()) as Doc;
    const w = await world(h);
    const cases: Case[] = [];
    let operationsSwept = 0;
    for (const [template, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const auth = op["x-deploybot-auth"];
        const params = op.parameters ?? [];
        const pathParams = params.filter((p) => p.in === "path");
        const goodPath = pathParams.reduce((p, { name }) => p.replace(`{${name}}`, encodeURIComponent(w.ids[name] ?? "x")), template);
        const token = w.tokenFor[auth];
        const M = method.toUpperCase();
        const before = cases.length;

        // who may call it
        if (auth !== "public") {
          cases.push({ what: "no token", method: M, path: goodPath, status: 401 });
          cases.push({ what: "an unknown token", method: M, path: goodPath, token: "no-such-token", status: 401 });
          const smaller = w.smallerThan[auth];
          // a valid request but for the token, so that only the guard can refuse it
          const media = op.requestBody?.content["application/json"];
          const body = media ? JSON.stringify(sample(doc, media.schema)) : op.requestBody ? "x" : undefined;
          const headers = Object.fromEntries(params.filter((p) => p.in === "header").map((p) => [p.name, String(sample(doc, p.schema))]));
          if (media) headers["content-type"] = "application/json";
          if (smaller) cases.push({ what: "a token without the scope", method: M, path: goodPath, token: smaller, body, headers, status: 403 });
        }
        // path parameters with odd characters
        for (const p of pathParams)
          for (const odd of ODD_IDS) cases.push({ what: `path '${p.name}' = ${odd.slice(0, 24)}`, method: M, path: template.replace(`{${p.name}}`, odd).replace(/{(\w+)}/g, (_, n: string) => encodeURIComponent(w.ids[n] ?? "x")), token });
        // query parameters of the wrong type, and required ones missing
        for (const p of params.filter((q) => q.in === "query")) {
          for (const v of badQueryValues(doc, p)) cases.push({ what: `?${p.name}=${v.slice(0, 24)}`, method: M, path: `${goodPath}?${p.name}=${encodeURIComponent(v)}`, token });
          if (p.required) cases.push({ what: `?${p.name} missing`, method: M, path: goodPath, token });
          // a broken percent-encoding, sent as it is
          if (badQueryValues(doc, p).length > 1) cases.push({ what: `?${p.name}=%ZZ`, method: M, path: `${goodPath}?${p.name}=%ZZ%E0%A4%A`, token });
        }
        // bodies
        // (a signed body is refused for its signature before anything else is read)
        const signed = params.some((p) => p.name.toLowerCase() === "x-hub-signature-256");
        // (what an agent reports keeps a NUL character, replaced: the last test)
        const body = bodyCases(doc, M, goodPath, op, token).filter((c) => auth !== "agent" || !c.what.includes("NUL"));
        if (op.requestBody?.content["application/json"]) cases.push(...body.map((c) => (signed ? { ...c, names: undefined, code: undefined } : c)));
        else if (op.requestBody) cases.push({ what: "a body without its headers", method: M, path: goodPath, token, body: "x", headers: { "content-type": "application/octet-stream" } });
        if (cases.length > before) operationsSwept++;
      }
    }

    const counts = await rowCounts(h);
    const failures: string[] = [];
    for (const c of cases) {
      const where = `${c.method} ${c.path.slice(0, 80)} (${c.what})`;
      const problem = await check(h, c);
      if (problem) failures.push(`${where}: ${problem}`);
    }
    const after = await rowCounts(h);
    for (const table of Object.keys(counts)) if (JSON.stringify(after[table]) !== JSON.stringify(counts[table])) failures.push(`table ${table} changed`);
    expect(failures).toEqual([]);
    expect(h.logLines.filter((l) => l.includes("unhandled error"))).toEqual([]);
    // the sweep reaches every operation that takes input or a token, with hundreds of cases
    expect(operationsSwept).toBeGreaterThan(60);
    expect(cases.length).toBeGreaterThan(1000);
  });
  test("an agent's report holding NUL characters keeps every line and its final status", async () => {
    const h = await makeHarness();
    const agent = await h.register("web-1");
    const { job } = await (await h.submit(seedJob)).json();
    const { leaseId } = (await (await h.heartbeat(agent)).json()).job;
    const entries = ["before", "a\u0000b", "after"].map((line) => ({ ts: new Date(0).toISOString(), stream: "stdout", line }));
    const logs = await h.call("POST", `/v1/jobs/${job.id}/logs`, { token: agent.token, body: { leaseId, offset: 0, entries } });
    expect(logs.status).toBe(200);
    const status = await h.call("POST", `/v1/jobs/${job.id}/status`, { token: agent.token, body: { leaseId, status: "failed", error: "exit\u00001" } });
    expect(status.status).toBe(200);
    const stored = await (await h.call("GET", `/v1/jobs/${job.id}/logs`, { token: ADMIN })).json();
    expect(stored.entries.map((e: { line: string }) => e.line)).toEqual(["before", "a\uFFFDb", "after"]);
    const answer = await (await h.call("GET", `/v1/jobs/${job.id}`, { token: ADMIN })).json();
    expect(answer.job).toMatchObject({ status: "failed", error: "exit\uFFFD1" });
    // a user's text with one is refused, naming the field
    const named = await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "a\u0000b", scope: "read" } });
    expect(named.status).toBe(400);
    expect((await named.json()).error.message).toContain("'name'");
  });
});

/** What is wrong with the answer to `c`, or undefined. */
async function check(h: Harness, c: Case): Promise<string | undefined> {
  const headers: Record<string, string> = { ...c.headers, ...(c.token ? { authorization: `Bearer ${c.token}` } : {}) };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 5_000);
  try {
    const res = await h.app.request(c.path, { method: c.method, headers, body: c.body, signal: controller.signal });
    await h.settle();
    const type = res.headers.get("content-type") ?? "";
    if (!type.includes("application/json")) {
      await res.body?.cancel();
      return `${res.status} answered ${type || "no content type"}`;
    }
    const text = await res.text();
    if (c.status !== undefined ? res.status !== c.status : res.status < 400 || res.status >= 500) return `status ${res.status}: ${text.slice(0, 200)}`;
    let error: { code?: unknown; message?: unknown } | undefined;
    try {
      error = (JSON.parse(text) as { error?: typeof error }).error;
    } catch {
      return `not JSON: ${text.slice(0, 200)}`;
    }
    if (typeof error?.code !== "string" || !error.code || typeof error.message !== "string" || !error.message)
      return `not the error envelope: ${text.slice(0, 200)}`;
    if (/at .*\.[tj]s:\d+/.test(text)) return `a stack trace: ${text.slice(0, 200)}`;
    if (c.code && error.code !== c.code) return `code ${error.code}, not ${c.code}: ${error.message.slice(0, 200)}`;
    if (c.names && !error.message.includes(c.names)) return `message does not name '${c.names}': ${error.message.slice(0, 200)}`;
  } catch (err) {
    return `no answer: ${(err as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
  const health = await h.app.request("/healthz");
  if (health.status !== 200) return `/healthz answered ${health.status} afterwards`;
  return undefined;
}

/** Rows of every table, and the whole content of the tables that hold work and history. */
async function rowCounts(h: Harness) {
  await h.settle();
  const kept = new Set(["jobs", "job_logs", "deployments", "releases", "outbox", "runs", "secrets", "images", "join_tokens", "idempotency_keys", "app_logs", "app_events"]);
  const out: Record<string, unknown> = {};
  for (const table of Object.values(schema)) {
    if (!is(table, SQLiteTable)) continue;
    const rows = await h.db.select().from(table);
    const name = getTableName(table);
    out[name] = kept.has(name) ? rows : rows.length;
  }
  return out;
}

/** A controller with one of everything the path parameters name, and a token per guard. */
async function world(h: Harness) {
  const token = async (scope: string) => {
    const res = await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: `sweep-${scope}`, scope } });
    expect(res.status).toBe(201);
    return (await res.json()) as { token: string; id: string };
  };
  const [read, deploy, metrics] = [await token("read"), await token("deploy"), await token("metrics")];
  const agent = await h.register("web-1");
  const other = await h.register("api-1");
  const { job } = await (await h.submit(seedJob)).json();
  expect((await (await h.heartbeat(agent)).json()).job?.id).toBe(job.id);
  const joinToken = (await (await h.call("POST", "/v1/agents/join-tokens", { token: ADMIN, body: {} })).json()).joinToken;
  const deployment = (await (await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref: "main" } })).json()).deployment;
  return {
    ids: {
      agentId: agent.id,
      jobId: job.id as string,
      id: joinToken?.id as string,
      tokenId: read.id,
      deploymentId: deployment?.id as string,
      name: "web",
      app: "web",
      key: "DATABASE_URL",
      runId: "run_none",
      imageId: "img_none",
      deliveryId: "dlv_none",
      file: "deploybot-agent.mjs",
    } as Record<string, string>,
    tokenFor: { read: read.token, deploy: deploy.token, admin: ADMIN, metrics: metrics.token, agent: agent.token, join: JOIN } as Record<string, string>,
    /** a token that passes authentication but not this guard (none for metrics: every API token has it) */
    smallerThan: {
      read: metrics.token,
      deploy: read.token,
      admin: deploy.token,
      // another agent's token, on this agent's resources
      agent: other.token,
    } as Record<string, string | undefined>,
  };
}
