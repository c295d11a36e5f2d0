import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { serve } from "@hono/node-server";
import pino from "pino";
import { createApp } from "./app";
import type { Config } from "./config";
import { type Db, openDb } from "./db/client";
import { type PgFacadeDb, openPgDb } from "./db/pgFacade";
import { startPgCluster } from "./db/pgWiring";
import { answerClientErrors } from "./lib/clientErrors";
import { backgroundWork } from "./background";
import { type AppsConfig, loadAppsConfig } from "./services/appsConfig";
import { type Leadership, soleLeadership } from "./services/pgCluster";
import { Singleton } from "./singletons";

/**
 * DEPLOYBOT_SECRET_KEY, or a key generated once into the data dir (mode 0600). On PostgreSQL the
 * key must be given: every controller on the database signs and checks the same agent tokens and
 * opens the same encrypted secrets, and a key generated per machine would split them.
 */
export function resolveSecretKey(config: Config): string {
  if (config.secretKey) return config.secretKey;
  if (config.databaseUrl) {
    throw new Error(
      "DEPLOYBOT_SECRET_KEY is required with DEPLOYBOT_DATABASE_URL: every controller on the database must sign agent tokens and encrypt secrets " +
        "with the same key. Generate one once (openssl rand -base64 32) and give the same value to each controller",
    );
  }
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
  let db: Db;
  let closeDb: () => Promise<void>;
  let secretKey: string;
  if (config.databaseUrl) {
    secretKey = resolveSecretKey(config); // required here: refused before connecting
    // Migrated first (under an advisory lock: controllers starting together take turns), so a
    // fresh database is ready the moment the services can use it.
    const pg = await openPgDb(config.databaseUrl, { name: "deploybot-controller" });
    db = pg;
    closeDb = () => pg.close();
  } else {
    const sqlite = openDb(config.dbPath, { ...opts, onMigrated: (m) => logger.info(m, "database migrated") });
    db = sqlite;
    closeDb = async () => {
      sqlite.$client.close();
    };
    // after the open: a key file written first would look like an installation whose database is missing
    secretKey = resolveSecretKey(config);
  }
  const where = config.databaseUrl ? "the PostgreSQL database (DEPLOYBOT_DATABASE_URL)" : config.dbPath;
  let apps: AppsConfig;
  try {
    apps = loadAppsConfig(config.configPath);
  } catch (err) {
    await closeDb();
    throw err;
  }
  // On PostgreSQL every controller applies the wake-ups of every change (its outbox follower),
  // whichever of them drains the outbox.
  const { app, services, deps } = createApp({ db, config, logger, apps: () => apps, secretKey, drainerSignals: config.databaseUrl ? "follower" : "inline" });
  if (!(await services.secrets.keyOpensSecrets())) {
    await closeDb();
    throw new Error(
      `the secrets in ${where} were encrypted with another secret key: start with the DEPLOYBOT_SECRET_KEY (or the data dir's secret.key) ` +
        "that was in use when this database (or backup) was written",
    );
  }
  // Several controllers on one PostgreSQL database: singleton locks, the outbox LISTEN and the log relay.
  const cluster = config.databaseUrl
    ? await startPgCluster(
        config.databaseUrl,
        (db as PgFacadeDb).$pg,
                {
          signal: (e) => services.drainer.applySignals(e),
          appended: () => deps.outbox.appended(),
          events: deps.events,
          appLogs: services.appLogs,
        },
        logger,
      )
    : null;

  // Per process: heartbeats buffered here are written every second by whoever received them.
  const liveness = setInterval(() => {
    services.agents.flushLiveness().catch((err) => logger.error({ err }, "writing heartbeats failed"));
  }, 1000);
  // Singletons: one controller does each (on SQLite the only one; on PostgreSQL the holder of its lock).
  // The drainer follows the outbox from creation (tests build the app alone); here it runs only
  // while this process holds it, and its first start applies whatever was appended meanwhile.
  services.drainer.stop();
  const leadership = (key: number, name: string): Leadership => cluster?.leadership(key, name) ?? soleLeadership;
  const singletons = backgroundWork(services, config, logger).map((w) => new Singleton(w, leadership(w.lock, w.name), logger));
  for (const s of singletons) s.start();

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
    deps.outbox
      .append("config.reloaded", { app: null, subject: null }, { ok: error === null, apps: apps.apps.length, error })
      .catch((err: unknown) => logger.error({ err }, "recording the config reload failed"));
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
  const pidFile = config.databaseUrl || config.dbPath === ":memory:" ? null : join(dirname(config.dbPath), "controller.pid");
  if (pidFile) writeFileSync(pidFile, `${process.pid}\n`);
  answerClientErrors(server);
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  // never the URL: it may carry the database password
  logger.info({ port, db: config.databaseUrl ? "postgres" : config.dbPath, apps: apps.apps.length }, "controller listening");

  const stop = async () => {
    await Promise.all(singletons.map((s) => s.stop()));
    clearInterval(liveness);
    await services.agents.flushLiveness();
    if (pidFile) rmSync(pidFile, { force: true });
    process.off("SIGHUP", reload);
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // long-polls would hold close() open for up to 30 s
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
    });
    await cluster?.stop();
    await closeDb();
  };
  return { port, stop, services, logger };
}
