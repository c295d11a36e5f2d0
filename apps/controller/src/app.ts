import { OpenAPIHono } from "@hono/zod-openapi";
import { type SQL, sql } from "drizzle-orm";
import type { Logger } from "pino";
import type { Config } from "./config";
import { type Db, fileIdentity, isCorruption } from "./db/client";
import { errorResponse, handleError } from "./lib/errors";
import type { AppEnv } from "./middleware/auth";
import { limitBody } from "./middleware/bodyLimit";
import { type OpenApiDocument, openApiDocument } from "./openapi/document";
import { requestLog } from "./middleware/requestLog";
import { agentRoutes } from "./routes/agents";
import { appLogIngestRoutes, appLogReadRoutes } from "./routes/appLogs";
import { appOperationRoutes } from "./routes/appOperations";
import { appRoutes } from "./routes/apps";
import { buildRoutes } from "./routes/builds";
import { dbRoutes } from "./routes/db";
import { deploymentRoutes } from "./routes/deployments";
import { eventRoutes } from "./routes/events";
import { githubRoutes } from "./routes/github";
import { hostRoutes } from "./routes/hosts";
import { notificationRoutes } from "./routes/notifications";
import { volumeRoutes } from "./routes/volumes";
import { imageRoutes } from "./routes/images";
import { jobRoutes } from "./routes/jobs";
import { logStreamRoutes } from "./routes/logStream";
import { metaRoutes } from "./routes/meta";
import { metricsRoutes } from "./routes/metrics";
import { runRoutes } from "./routes/runs";
import { scheduleRoutes } from "./routes/schedules";
import { tokenRoutes } from "./routes/tokens";
import { webhookRoutes } from "./routes/webhooks";
import { createServices } from "./services";
import { DashboardAssets } from "./services/dashboardAssets";
import type { AppsConfig } from "./services/appsConfig";
import { JobEvents } from "./services/events";
import { EventStreams } from "./services/eventStream";
import { ControllerMetrics } from "./services/metrics";
import { Notifier } from "./services/notifier";
import type { SchedulerHooks } from "./services/scheduler";
import { openOutbox } from "./services/outbox";

export const JSON_BODY_LIMIT = 1024 * 1024;

export interface AppOptions {
  db: Db;
  config: Config;
  logger: Logger;
  apps: () => AppsConfig;
  secretKey: string;
  clock?: () => number;
  /** test hooks into the scheduler's transactions */
  schedulerHooks?: SchedulerHooks;
  /** who runs the drainer's wake-ups: the drainer (default), or every controller's outbox follower (several controllers on PostgreSQL) */
  drainerSignals?: "inline" | "follower";
}

/** Builds the controller without side effects: no listening, no timers, no files. */
export function createApp(opts: AppOptions) {
  const clock = opts.clock ?? Date.now;
  const deps = {
    db: opts.db,
    config: opts.config,
    logger: opts.logger,
    apps: opts.apps,
    clock,
    notifier: new Notifier(),
    events: new JobEvents(),
    outbox: openOutbox(opts.db, clock),
  };
  const services = createServices(deps, opts.secretKey, opts.schedulerHooks, { drainerSignals: opts.drainerSignals ?? "inline" });
  // SQLite: one connection writes every row, so an agent's checked identity can be kept until a statement changes it
  if (opts.db.engine === "sqlite") services.agentTokens.watchAgents(opts.db.$client);
  const eventStreams = new EventStreams(deps);
  const metrics = new ControllerMetrics(opts.db, clock, () => eventStreams.streams, () => services.backups.stats);
  services.drainer.register({ name: "metrics", types: ["job.changed"], kind: "signal", apply: (e) => void metrics.observeJobChange(e)?.catch((err: unknown) => opts.logger.warn({ err }, "job metrics not recorded")) });

  // the file opened at start (SQLite): /readyz notices when the path no longer leads to it
  const openedAs = opts.db.engine === "sqlite" ? fileIdentity(opts.config.dbPath) : null;
  const app = new OpenAPIHono<AppEnv>();
  app.use(requestLog(opts.logger, (method, route, status, seconds) => metrics.observeRequest(method, route, status, seconds)));
  app.use(
    "/v1/*",
    limitBody(JSON_BODY_LIMIT, {
      "POST /v1/builds": opts.config.buildBodyLimit,
      // GitHub sends push payloads of up to 25 MB
      "POST /v1/webhooks/github": 25 * 1024 * 1024,
    }),
  );
  // every route is declared with its schemas (src/openapi/route.ts); the document is generated from them
  let document: OpenApiDocument | undefined;
  app
    .route("/", metaRoutes(() => (document ??= openApiDocument(app)), opts.config.publicUrl, () => checkReady(opts.db, opts.config.dbPath, openedAs)))
    .route("/v1/logs/stream", logStreamRoutes(services, deps))
    .route("/metrics", metricsRoutes(services, metrics, opts.config.metricsAllow))
    .route("/v1/events", eventRoutes(services, deps, eventStreams))
    .route("/v1/agents", agentRoutes(services, opts.config.joinToken))
    .route("/v1/jobs", jobRoutes(services))
    .route("/v1/hosts", hostRoutes(services))
    .route("/v1/volumes", volumeRoutes(services))
    .route("/v1/notifications", notificationRoutes(services))
    .route("/v1/tokens", tokenRoutes(services))
    .route("/v1/deployments", deploymentRoutes(services))
    .route("/v1/apps", appRoutes(services, opts.apps))
    .route("/v1/runs", runRoutes(services))
    .route("/v1/schedules", scheduleRoutes(services))
    .route("/v1/builds", buildRoutes(services, opts.config))
    .route("/v1/images", imageRoutes(services))
    .route("/v1/apps", appOperationRoutes(services))
    .route("/v1/apps", appLogReadRoutes(services, opts.apps))
    .route("/v1/agents", appLogIngestRoutes(services))
    .route("/v1/webhooks", webhookRoutes(services))
    .route("/v1/db", dbRoutes(services))
    .route("/v1/github", githubRoutes(services));

  // The dashboard's client routes (/apps/web, /deployments/...) are not API routes: every GET
  // outside /v1 that no route answers gets the dashboard's file or its index.html.
  const dashboard = new DashboardAssets(opts.config.dashboardDir);
  app.notFound((c) => {
    const page = c.req.method === "GET" || c.req.method === "HEAD" ? dashboard.answer(c.req.path, /\bgzip\b/.test(c.req.header("accept-encoding") ?? "")) : null;
    if (page) return c.body(typeof page.body === "string" ? page.body : (page.body as Uint8Array<ArrayBuffer>), page.status, page.headers);
    return errorResponse(c, 404, "not_found", `no route for ${c.req.method} ${c.req.path}`);
  });
  app.onError(handleError(opts.logger));
  return { app, services, deps, metrics };
}

export type ControllerApp = ReturnType<typeof createApp>;

type Readiness = { ok: true } | { ok: false; code: string; message: string };

/**
 * Ready: the database answers a query — on SQLite also: the file at its path is the one this
 * process opened. On PostgreSQL one cheap query on the pool (a controller whose database is
 * unreachable is taken out of the proxy's rotation).
 */
export async function checkReady(db: Db, path: string, openedAs: string | null): Promise<Readiness> {
  if (db.engine !== "sqlite") {
    try {
      await (db as unknown as { execute(q: SQL): Promise<unknown> }).execute(sql`SELECT 1`);
      return { ok: true };
    } catch (err) {
      return { ok: false, code: "database_unavailable", message: (err as Error).message };
    }
  }
  const now = fileIdentity(path);
  if (openedAs !== null && now !== openedAs) {
    return { ok: false, code: "database_replaced", message: `the database file ${path} was ${now === null ? "deleted" : "replaced"} under the running controller; restart it on a restored database` };
  }
  try {
    db.$client.prepare("SELECT count(*) FROM agents").get();
    return { ok: true };
  } catch (err) {
    return isCorruption(err)
      ? { ok: false, code: "database_corrupt", message: `the database is corrupt: ${(err as Error).message}` }
      : { ok: false, code: "database_unavailable", message: (err as Error).message };
  }
}
