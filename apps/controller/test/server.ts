import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { freshDatabase } from "../../../test/support/postgres";
import { loadConfig } from "../src/config";
import { startController } from "../src/server";
import { APPS_YAML } from "./appsYaml";
import { testEngine } from "./fixture";

export const ADMIN = "admin-secret";
export const JOIN = "join-secret";

/**
 * On PostgreSQL (DEPLOYBOT_TEST_DATABASE=postgres) the controllers of one `dir` share a fresh
 * database, as the file database in `dir` is shared by a restart; dropped when the file's tests end.
 */
const pgDatabases = new Map<string, Promise<Awaited<ReturnType<typeof freshDatabase>>>>();
afterAll(async () => {
  const all = [...pgDatabases.values()];
  pgDatabases.clear();
  for (const fresh of all) await (await fresh).drop();
});

async function engineEnv(dir: string): Promise<Record<string, string>> {
  if (testEngine !== "postgres") return {};
  let fresh = pgDatabases.get(dir);
  if (!fresh) {
    fresh = freshDatabase("deploybot_ctl");
    pgDatabases.set(dir, fresh);
  }
  // every controller on a PostgreSQL database is given the same key (server.ts refuses otherwise)
  return { DEPLOYBOT_DATABASE_URL: (await fresh).url, DEPLOYBOT_SECRET_KEY: "test-secret-key-with-enough-entropy-000000" };
}

/** A real controller on a random loopback port, on a file database in `dir` (or its PostgreSQL database). */
export async function startTestController(
  dir = mkdtempSync(join(tmpdir(), "deploybot-ctl-")),
  env: Record<string, string> = {},
  opts: { init?: boolean; appsYaml?: string } = {},
) {
  const configPath = join(dir, "apps.yaml");
  writeFileSync(configPath, opts.appsYaml ?? APPS_YAML);
  const controller = await startController(
    loadConfig({
      DEPLOYBOT_PORT: "0",
      DEPLOYBOT_HOST: "127.0.0.1",
      DEPLOYBOT_DB: join(dir, "deploybot.db"),
      DEPLOYBOT_CONFIG: configPath,
      DEPLOYBOT_JOIN_TOKEN: JOIN,
      DEPLOYBOT_ADMIN_TOKEN: ADMIN,
      DEPLOYBOT_LOG_LEVEL: "silent",
      ...(await engineEnv(dir)),
      ...env,
    }),
    { init: opts.init },
  );
  const url = `http://127.0.0.1:${controller.port}`;
  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: tests read answers loosely and check them with assertions
    return { status: res.status, body: (await res.json()) as any };
  };
  return { ...controller, dir, url, call };
}
