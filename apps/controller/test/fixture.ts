import pino from "pino";
import { onTestFinished, test as base, TestRunner } from "vitest";
import { createApp } from "../src/app";
import { type Config, testConfig } from "../src/config";
import { type Db, openDb } from "../src/db/client";
import { parseAppsConfig } from "../src/services/appsConfig";
import { APPS_YAML } from "./appsYaml";
import { openPgTestDb, type TestDb } from "./pgDatabases";

export { APPS_YAML };

type Built = Awaited<ReturnType<typeof createApp>>;

/**
 * The engine the controller tests run on: DEPLOYBOT_TEST_DATABASE=postgres runs them on an empty,
 * migrated database of the test PostgreSQL cluster per harness (vitest project `controller-pg`,
 * pgDatabases.ts); anything else, an in-memory SQLite database.
 */
export const testEngine: "sqlite" | "postgres" = process.env.DEPLOYBOT_TEST_DATABASE === "postgres" ? "postgres" : "sqlite";

/**
 * A fresh database on the test engine, migrated by the checked-in migrations of that engine.
 * Opened inside a test, it is closed when that test ends; opened elsewhere, the caller closes it.
 */
export async function openTestDb(): Promise<TestDb> {
  const opened = await openFresh();
  if (TestRunner.getCurrentTest()) onTestFinished(opened.close);
  return opened;
}

async function openFresh(): Promise<TestDb> {
  if (testEngine === "sqlite") return { db: openDb(":memory:"), close: async () => {} };
  return openPgTestDb();
}

export interface Harness {
  app: Built["app"];
  services: Built["services"];
  db: Db;
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
  /** settles and lets the database go (PostgreSQL); runs by itself when the test that made the harness ends */
  close(): Promise<void>;
}

export const ADMIN = "admin-secret";
export const JOIN = "join-secret";

/**
 * A controller on a fresh database of the test engine. Made inside a test, it is closed when that
 * test ends; made elsewhere (beforeAll), the caller closes it.
 */
export async function makeHarness(overrides: Partial<Config> = {}, appsYaml = APPS_YAML): Promise<Harness> {
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
  const opened = await openFresh();
  let built: Built;
  try {
    built = await createApp({
      db: opened.db,
    config,
    logger,
    apps: () => apps,
      secretKey: config.secretKey!,
      clock: () => clock.now,
    });
  } catch (err) {
    await opened.close();
    throw err;
  }
  const { app, services } = built;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= services.drainer
      .idle()
      .catch(() => {})
      .then(() => opened.close());
    return closing;
  };
  if (TestRunner.getCurrentTest()) onTestFinished(close);
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
    db: opened.db,
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
    close,
  };
}

/** A fresh controller on a fresh database of the test engine, migrated by the real migrations. */
export const test = base.extend<{ h: Harness }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures take their dependencies as a destructured first argument
  h: async ({}, use) => {
    const h = await makeHarness();
    await use(h);
    await h.close();
  },
});

export const seedJob = { repo: "acme/web", ref: "main", host: "web-1" };
