import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../src/config";
import { startController } from "../src/server";
import { APPS_YAML } from "./appsYaml";

export const ADMIN = "admin-secret";
export const JOIN = "join-secret";

/** A real controller on a random loopback port, on a file database in `dir`. */
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
