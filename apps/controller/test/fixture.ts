import pino from "pino";
import { test as base } from "vitest";
import { createApp } from "../src/app";
import { type Config, testConfig } from "../src/config";
import { openDb } from "../src/db/client";
import { parseAppsConfig } from "../src/services/appsConfig";
import { APPS_YAML } from "./appsYaml";

export { APPS_YAML };



export interface Harness {
  app: ReturnType<typeof createApp>["app"];
  services: ReturnType<typeof createApp>["services"];
  config: Config;
  clock: { now: number; advance(ms: number): void };
  /** request helper: JSON body, bearer token */
  call(method: string, path: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  /** as a current agent registers; `agent` overrides its version and capabilities (an older agent) */
  register(
    hostname: string,
    labels?: string[],
    heldJobIds?: string[],
    agent?: { version?: string; capabilities?: Record<string, unknown> },
  ): Promise<{ id: string; token: string }>;
  heartbeat(agent: { id: string; token: string }, body?: Record<string, unknown>, wait?: number): Promise<Response>;
  submit(body: unknown, token?: string): Promise<Response>;
  logLines: string[];
  /** replaces apps.yaml, as a SIGHUP reload of an edited file would */
  setApps(yaml: string): void;
  /** waits until the drainer applied every committed change (each request already waits for it) */
  settle(): Promise<void>;
}

export const ADMIN = "admin-secret";
export const JOIN = "join-secret";

export function makeHarness(overrides: Partial<Config> = {}, appsYaml = APPS_YAML): Harness {
  const config = testConfig(overrides);
  const logLines: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => logLines.push(line) });
  const clock = {
    now: Date.parse("2026-11-22T12:00:00Z"),
    advance(ms: number) {
      clock.now += ms;
    },
  };
  let apps = parseAppsConfig(appsYaml, "apps.yaml");
  const { app, services } = createApp({
    db: openDb(":memory:"),
    config,
    logger,
    apps: () => apps,
    secretKey: config.secretKey!,
    clock: () => clock.now,
  });
  const call: Harness["call"] = async (method, path, opts = {}) => {
    const res = await app.request(path, {
      method,
      headers: {
        ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...opts.headers,
      },
      body: opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body),
    });
    // what follows from a change is applied by the drainer just after it commits; tests read
    // the state once it is applied, as a client following GET /v1/events would
    await services.drainer.idle();
    return res;
  };
  // a host that exists re-registers with its own token, as the real agent does
  const tokens = new Map<string, string>();
  const register: Harness["register"] = async (hostname, labels = [], heldJobIds = [], agent = {}) => {
    const { version = "test", capabilities = { volumes: true } } = agent;
    const res = await call("POST", "/v1/agents/register", {
      token: tokens.get(hostname) ?? JOIN,
      body: { hostname, labels, version, capabilities, heldJobIds },
    });
    if (res.status !== 200) throw new Error(`register failed: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { agent: { id: string }; token: string };
    tokens.set(hostname, body.token);
    return { id: body.agent.id, token: body.token };
  };
  return {
    app,
    services,
    config,
    clock,
    call,
    register,
    heartbeat: (agent, body = {}, wait) =>
      call("POST", `/v1/agents/${agent.id}/heartbeat${wait ? `?wait=${wait}` : ""}`, { token: agent.token, body }),
    submit: (body, token = ADMIN) => call("POST", "/v1/jobs", { token, body }),
    logLines,
    settle: () => services.drainer.idle(),
    setApps: (yaml) => {
      apps = parseAppsConfig(yaml, "apps.yaml");
    },
  };
}

/** A fresh controller on a fresh in-memory database, migrated by the real migrations. */
export const test = base.extend<{ h: Harness }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures take their dependencies as a destructured first argument
  h: async ({}, use) => {
    await use(makeHarness());
  },
});

export const seedJob = { repo: "acme/web", ref: "main", host: "web-1" };
