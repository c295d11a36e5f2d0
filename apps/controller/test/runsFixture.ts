import pino from "pino";
import { createApp } from "../src/app";
import { testConfig } from "../src/config";
import type { Db } from "../src/db/client";
import { deployments, releases } from "../src/db/schema";
import { parseAppsConfig } from "../src/services/appsConfig";
import type { SchedulerHooks } from "../src/services/scheduler";

export const MIN = 60_000;

/** apps.yaml with one app `bot` (deployed on host bot-1) carrying the given schedules (YAML list items). */
export const appsYaml = (schedulesYaml: string) => `
apps:
  - name: bot
    repo: acme/bot
    hosts: [bot-1]
    run:
      ports: ["8080:80"]
      env: { MODE: prod, LEVEL: info }
      secrets: [API_KEY]
      healthcheck: { path: /health, port: 80 }
    schedules:
${schedulesYaml}
`;

export const schedule = (fields: Record<string, string | number>) =>
  `      - ${Object.entries({ command: "[sh, -c, 'echo hi']", ...fields })
    .map(([k, v]) => `${k}: ${typeof v === "string" && k === "cron" ? JSON.stringify(v) : v}`)
    .join("\n        ")}`;

/** A controller on `db` with a fake clock; a "restart" is a second one on the same database. */
export async function controller(db: Db, yaml: string, clock: { now: number }, hooks: SchedulerHooks = {}) {
  const config = testConfig();
  const apps = parseAppsConfig(yaml, "apps.yaml");
  return await createApp({
    db,
    config,
    logger: pino({ level: "silent" }),
    apps: () => apps,
    secretKey: config.secretKey!,
    clock: () => clock.now,
    schedulerHooks: hooks,
  });
}

/** The app `bot` has a successful deployment of release rel_1 (image in the registry, by digest). */
export async function deployed(db: Db, at: number) {
  await db
    .insert(releases)
    .values({
      id: "rel_1",
      app: "bot",
      version: "abc123",
      imageTag: "127.0.0.1:5000/bot:abc123",
      digest: "sha256:feed",
      config: { ports: ["8080:80"], env: { MODE: "prod", LEVEL: "info" }, secrets: ["API_KEY"], healthcheck: { path: "/health", port: 80 }, restart: "unless-stopped" },
      status: "success",
      trigger: "api",
      createdAt: at,
    });
  await db.insert(deployments).values({ id: "dep_1", app: "bot", hosts: ["bot-1"], trigger: "api", releaseId: "rel_1", status: "succeeded", createdAt: at });
}

