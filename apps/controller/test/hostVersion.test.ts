import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { heartbeatResponse } from "@deploybot/protocol";
import { eq, sql } from "drizzle-orm";
import pino from "pino";
import { afterEach, describe, expect } from "vitest";
import { createApp } from "../src/app";
import { type Db, openDb } from "../src/db/client";
import { appStates } from "../src/db/schema";
import { parseAppsConfig } from "../src/services/appsConfig";
import { APPS_YAML, type Harness, test, testEngine } from "./fixture";

/**
 * The host version a heartbeat answers (AppStateService.versionOf). On SQLite it is kept per
 * host and dropped by any statement on the connection that writes app_states (db/watch.ts); on
 * PostgreSQL every heartbeat reads it. Either way the answer follows every committed write and
 * no rolled-back one.
 */
type Agent = { id: string; token: string };
type Controller = { request: (path: string, init: RequestInit) => Response | Promise<Response> };

const HOST = "api-1";

/** The version the host's heartbeat answers to an agent holding `held` (undefined: none sent, the agent is current). */
async function answered(app: Controller, agent: Agent, held: number): Promise<number | undefined> {
  const res = await app.request(`/v1/agents/${agent.id}/heartbeat`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${agent.token}` },
    body: JSON.stringify({ desiredVersion: held }),
  });
  expect(res.status).toBe(200);
  return heartbeatResponse.parse(await res.json()).desired?.version;
}

/** Warms the host's version: answered once to an agent at 0, then nothing to an agent holding it. */
async function current(h: Harness, agent: Agent): Promise<number> {
  const version = await answered(h.app, agent, 0);
  expect(version).toBeGreaterThan(0);
  expect(await answered(h.app, agent, version!)).toBeUndefined();
  return version!;
}

/** Another controller over `db`, with the harness's config (its agent tokens are valid there). */
function controllerOn(db: Db, h: { config: Harness["config"] }) {
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  return createApp({ db, config: h.config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: h.config.secretKey! });
}

describe("the host version a heartbeat answers", () => {
  test("moves when the service writes the host's state (and not for another host's)", async ({ h }) => {
    const agent = await h.register(HOST);
    // no state yet: nothing sent, version 0 (kept on SQLite like any other)
    expect(await answered(h.app, agent, 0)).toBeUndefined();
    await h.services.appStates.set("api", HOST, { state: "running" });
    const first = await current(h, agent);
    await h.services.appStates.set("api", "other-host", { state: "running" });
    expect(await answered(h.app, agent, first)).toBeUndefined();
    await h.services.appStates.set("api", HOST, { replicas: 2 });
    const second = await answered(h.app, agent, first);
    expect(second).toBeGreaterThan(first);
    expect(await answered(h.app, agent, second!)).toBeUndefined();
  });

  test("moves when a statement outside the service writes app_states on the same connection", async ({ h }) => {
    const agent = await h.register(HOST);
    await h.services.appStates.set("api", HOST, { state: "running" });
    const first = await current(h, agent);
    await h.db.update(appStates).set({ version: sql`${appStates.version} + 10` }).where(eq(appStates.host, HOST));
    expect(await answered(h.app, agent, first)).toBe(first + 10);
    // an inserted row of the host
    await h.db.insert(appStates).values({ app: "web", host: HOST, version: first + 20, updatedAt: 0 });
    expect(await answered(h.app, agent, first + 10)).toBe(first + 20);
    // a deleted one: the host's version is what its remaining rows hold
    await h.db.delete(appStates).where(eq(appStates.app, "web"));
    expect(await answered(h.app, agent, first + 20)).toBe(first + 10);
    // a row moved to the host from another
    await h.db.insert(appStates).values({ app: "worker", host: "other-host", version: first + 30, updatedAt: 0 });
    await h.db.update(appStates).set({ host: HOST }).where(eq(appStates.app, "worker"));
    expect(await answered(h.app, agent, first + 10)).toBe(first + 30);
    // and everything deleted: no state, nothing sent
    await h.db.delete(appStates);
    expect(await answered(h.app, agent, first + 30)).toBeUndefined();
    expect(await h.services.appStates.versionOf(HOST)).toBe(0);
  });

  test.runIf(testEngine === "sqlite")("moves when a raw SQL statement writes app_states on the connection (SQLite)", async ({ h }) => {
    const agent = await h.register(HOST);
    await h.services.appStates.set("api", HOST, { state: "running" });
    const first = await current(h, agent);
    (h.db.$client as { exec(sql: string): unknown }).exec(`UPDATE app_states SET version = version + 7 WHERE host = '${HOST}'`);
    expect(await answered(h.app, agent, first)).toBe(first + 7);
  });

  test("does not move for a write that rolled back", async ({ h }) => {
    const agent = await h.register(HOST);
    await h.services.appStates.set("api", HOST, { state: "running" });
    const first = await current(h, agent);
    const undone = new Error("undone");
    await expect(
      h.db.write(async (tx) => {
        await tx.update(appStates).set({ version: sql`${appStates.version} + 10` }).where(eq(appStates.host, HOST));
        // read inside the transaction (on SQLite it sees the uncommitted version): never kept
        await h.services.appStates.versionOf(HOST);
        throw undone;
      }),
    ).rejects.toBe(undone);
    expect(await answered(h.app, agent, first)).toBeUndefined();
    expect(await h.services.appStates.versionOf(HOST)).toBe(first);
  });

  test.runIf(testEngine === "sqlite")("a heartbeat inside a transaction that rolls back answers its version, the next one the committed version (SQLite)", async ({ h }) => {
    const agent = await h.register(HOST);
    await h.services.appStates.set("api", HOST, { state: "running" });
    const first = await current(h, agent);
    const sqlite = h.db.$client as { exec(sql: string): unknown };
    sqlite.exec("BEGIN");
    try {
      sqlite.exec(`UPDATE app_states SET version = version + 10 WHERE host = '${HOST}'`);
      // the connection's own uncommitted write: answered, read again (not kept) ...
      expect(await answered(h.app, agent, first)).toBe(first + 10);
      expect(await answered(h.app, agent, first)).toBe(first + 10);
    } finally {
      sqlite.exec("ROLLBACK");
    }
    // ... and gone with the rollback
    expect(await answered(h.app, agent, first)).toBeUndefined();
    expect(await answered(h.app, agent, 0)).toBe(first);
  });

  test("another controller on the database answers the stored version, and follows the first one's writes", async ({ h }) => {
    const agent = await h.register(HOST);
    await h.services.appStates.set("api", HOST, { state: "running" });
    const first = await current(h, agent);
    // SQLite: a second app on the same connection (its own kept versions, the same triggers);
    // PostgreSQL: a second controller on the same database, which reads every time
    const other = controllerOn(h.db, h);
    try {
      expect(await answered(other.app, agent, 0)).toBe(first);
      expect(await answered(other.app, agent, first)).toBeUndefined();
      await h.services.appStates.set("api", HOST, { replicas: 3 });
      const second = await answered(other.app, agent, first);
      expect(second).toBeGreaterThan(first);
      expect(await answered(h.app, agent, first)).toBe(second);
    } finally {
      await other.services.drainer.idle();
    }
  });
});

describe.runIf(testEngine === "sqlite")("the host version kept by one SQLite controller", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  test("a controller started on the file reads the stored version; one already running keeps its own (one controller per file)", async ({ h }) => {
    const dir = mkdtempSync(join(os.tmpdir(), "deploybot-hostver-"));
    dirs.push(dir);
    const path = join(dir, "deploybot.db");
    const db = openDb(path, { init: true });
    const running = controllerOn(db, h);
    const agent = await registerOn(running.app);
    await running.services.appStates.set("api", HOST, { state: "running" });
    const first = await answered(running.app, agent, 0);
    expect(first).toBeGreaterThan(0);
    // a write by another process on the file is not seen by the controller that owns it: the
    // reason PostgreSQL, where several controllers share the database, never keeps the version
    const outside = openDb(path);
    outside.$client.exec(`UPDATE app_states SET version = version + 100 WHERE host = '${HOST}'`);
    outside.$client.close();
    expect(await answered(running.app, agent, first!)).toBeUndefined();
    await running.services.drainer.idle();
    db.$client.close();
    // started again on the file: the stored version
    const again = openDb(path);
    try {
      const restarted = controllerOn(again, h);
      expect(await answered(restarted.app, agent, first!)).toBe(first! + 100);
      await restarted.services.drainer.idle();
    } finally {
      again.$client.close();
    }
  });
});

async function registerOn(app: Controller): Promise<Agent> {
  const res = await app.request("/v1/agents/register", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer join-secret" },
    body: JSON.stringify({ hostname: HOST, labels: [], version: "test", capabilities: { volumes: true }, heldJobIds: [] }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { agent: { id: string }; token: string };
  return { id: body.agent.id, token: body.token };
}
