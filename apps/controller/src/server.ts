import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { serve } from "@hono/node-server";
import pino from "pino";
import { createApp } from "./app";
import type { Config } from "./config";
import { openDb } from "./db/client";
import { answerClientErrors } from "./lib/clientErrors";
import { type AppsConfig, loadAppsConfig } from "./services/appsConfig";
import { startPeriodicBackups } from "./services/backups";

/** DEPLOYBOT_SECRET_KEY, or a key generated once into the data dir (mode 0600). */
function resolveSecretKey(config: Config): string {
  if (config.secretKey) return config.secretKey;
  if (config.dbPath === ":memory:") return randomBytes(32).toString("base64url");
  const file = join(dirname(config.dbPath), "secret.key");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dirname(file), { recursive: true });
  const key = randomBytes(32).toString("base64url");
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: "wx" });
  return key;
}

/** Wires the real world to the app factory: database file, config file, port, timers, signals. */
export async function startController(config: Config, opts: { init?: boolean } = {}) {
  const logger = pino({ level: config.logLevel, base: { service: "controller" } });
  if (config.databaseUrl) {
    // Said plainly instead of quietly using the SQLite file: the schema, migrations and job
    // claims exist for PostgreSQL, the services on top of them do not run there yet.
    throw new Error(
      "DEPLOYBOT_DATABASE_URL selects PostgreSQL, which the controller cannot serve from yet (its schema and job queue are in place, the services are not); unset it to run on the SQLite file at DEPLOYBOT_DB",
    );
  }
  const db = openDb(config.dbPath, opts);
  let apps: AppsConfig = loadAppsConfig(config.configPath);
  const { app, services, deps } = createApp({ db, config, logger, apps: () => apps, secretKey: resolveSecretKey(config) });
  if (!services.secrets.keyOpensSecrets()) {
    db.$client.close();
    throw new Error(
      `the secrets in ${config.dbPath} were encrypted with another secret key: start with the DEPLOYBOT_SECRET_KEY (or the data dir's secret.key) ` +
        "that was in use when this database (or backup) was written",
    );
  }

  const rearmed = services.leases.rearmLeases();
  if (rearmed > 0) logger.info({ jobs: rearmed }, "re-armed leases after start");
  // consequences left unapplied by the previous process first, then the outbox as it grows
  services.drainer.start();
  // deliveries made before a crash or restart are sent from here on
  services.notifications.start();
  const reaper = setInterval(() => {
    try {
      services.agents.flushLiveness();
      services.agents.markOffline();
      services.leases.sweep();
    } catch (err) {
      logger.error({ err }, "sweep failed");
    }
  }, 1000);
  const housekeeping = setInterval(() => {
    try {
      services.housekeeping();
    } catch (err) {
      logger.error({ err }, "housekeeping failed");
    }
  }, 60_000);
  housekeeping.unref();
  const periodicBackups = config.backups ? startPeriodicBackups(services.backups, config.backups, logger) : undefined;

  // Schedules are decided just after each second boundary, so a seconds-level cron runs within
  // tens of milliseconds of its tick (a plain 1 s interval would drift up to a second late).
  let schedulerTimer: NodeJS.Timeout | undefined;
  const scheduleNextPass = () => {
    schedulerTimer = setTimeout(() => {
      try {
        services.scheduler.tick();
      } catch (err) {
        logger.error({ err }, "scheduler pass failed");
      }
      scheduleNextPass();
    }, 1000 - (Date.now() % 1000) + 20);
  };
  scheduleNextPass();

  // apps.yaml is re-read on SIGHUP; a broken edit keeps the last good config running.
  const reload = () => {
    let error: string | null = null;
    try {
      apps = loadAppsConfig(config.configPath);
      logger.info({ apps: apps.apps.length }, "apps config reloaded");
    } catch (err) {
      error = (err as Error).message;
      logger.error({ err: error }, "apps config reload failed; keeping the previous config");
    }
    deps.outbox.append("config.reloaded", { app: null, subject: null }, { ok: error === null, apps: apps.apps.length, error });
  };
  process.on("SIGHUP", reload);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s));
    s.once("error", (err: NodeJS.ErrnoException) =>
      reject(err.code === "EADDRINUSE" ? new Error(`port ${config.port} on ${config.host} is already in use (another controller, or another server)`) : err),
    );
  });
  // `kill -HUP $(cat data/controller.pid)` reloads apps.yaml; the process sits under pnpm and tsx.
  // Written once the port is ours: scripts/dev.sh takes it as the sign that its own controller
  // (not some other server on the port) is up.
  const pidFile = config.dbPath === ":memory:" ? null : join(dirname(config.dbPath), "controller.pid");
  if (pidFile) writeFileSync(pidFile, `${process.pid}\n`);
  answerClientErrors(server);
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  logger.info({ port, db: config.dbPath, apps: apps.apps.length }, "controller listening");

  const stop = async () => {
    clearInterval(reaper);
    clearTimeout(schedulerTimer);
    clearInterval(housekeeping);
    services.drainer.stop();
    await periodicBackups?.stop();
    await services.notifications.stop();
    services.agents.flushLiveness();
    if (pidFile) rmSync(pidFile, { force: true });
    process.off("SIGHUP", reload);
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // long-polls would hold close() open for up to 30 s
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
    });
    db.$client.close();
  };
  return { port, stop, services, logger };
}
