import { type AppHostStatus, appRefsQuery, createRunRequest, putSecretRequest, type Release, rollbackRequest, secretKeyParam } from "@deploybot/protocol";
import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, requireScope } from "../middleware/auth";
import { assertAppAllowed } from "../services/auth";
import { notFound } from "../lib/errors";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import type { Services } from "../services";
import { redactUrl } from "../services/gitRemote";
import type { AppDefinition, AppsConfig } from "../services/appsConfig";

const secretParams = z.object({ name: z.string(), key: secretKeyParam });

/** What apps.yaml says of an app, with its current release and per-host state. Secret values are never part of it. */
const appToWire = (app: AppDefinition, currentRelease: Release | null, status: AppHostStatus[]) => ({
  name: app.name,
  repo: app.repo,
  url: app.url,
  branch: app.branch,
  deployOnPush: app.deploy_on_push,
  hosts: app.hosts,
  image: app.image ?? null,
  build: app.build,
  run: app.run,
  domains: app.domains,
  tls: app.tls,
  replicas: app.replicas,
  proxy: app.proxy ?? null,
  currentRelease,
  status,
});

export function appRoutes(s: Services, apps: () => AppsConfig) {
  const read = requireScope(s.apiTokens, "read");
  const deploy = requireScope(s.apiTokens, "deploy");
  const admin = requireScope(s.apiTokens, "admin");
  const appNamed = (name: string) => {
    const app = apps().byName(name);
    if (!app) throw notFound("app", name);
    return app;
  };
  return new Hono<AppEnv>()
    .get("/", read, (c) => {
      const allowed = c.get("user").apps;
      const current = s.deployments.catalog.currentByApp();
      const agents = s.agents.list();
      return c.json({
        apps: apps()
          .apps.filter((a) => !allowed || allowed.includes(a.name))
          .map((a) => appToWire(a, current.get(a.name) ?? null, s.appOperations.status(a.name, agents))),
      });
    })
    .get("/:name", read, (c) => {
      assertAppAllowed(c.get("user"), c.req.param("name"));
      const app = appNamed(c.req.param("name"));
      return c.json({
        app: appToWire(app, s.deployments.catalog.current(app.name), s.appOperations.status(app.name)),
        releases: s.deployments.catalog.list(app.name).slice(0, 10),
        // each host's route: domains, upstreams and their health, as its agent last reported
        routes: s.routes.forApp(app.name),
        events: s.appStates.events({ app: app.name, limit: 20 }),
      });
    })
    .get("/:name/releases", read, (c) => {
      assertAppAllowed(c.get("user"), c.req.param("name"));
      return c.json({ releases: s.deployments.catalog.list(c.req.param("name")) });
    })
    .get("/:name/refs", read, validate("query", appRefsQuery), async (c) => {
      assertAppAllowed(c.get("user"), c.req.param("name"));
      const app = appNamed(c.req.param("name"));
      return c.json({ app: app.name, url: redactUrl(app.url), refs: await s.gitRefs.list(app, c.req.valid("query").type) });
    })
    .post("/:name/rollback", deploy, idempotency(s.idempotencyKeys, { inTransaction: true }), validate("json", rollbackRequest), async (c) => {
      assertAppAllowed(c.get("user"), c.req.param("name"));
      const { release, imageId } = c.req.valid("json");
      const user = c.get("user").tokenId;
      const deployment = imageId
        ? await s.deployments.create({ app: c.req.param("name"), imageId, trigger: "rollback", triggeredBy: user }, c.get("idempotency"))
        : s.deployments.rollback(c.req.param("name"), release, user, c.get("idempotency"));
      return c.json({ deployment }, 201);
    })
    .post("/:name/runs", deploy, idempotency(s.idempotencyKeys), validate("json", createRunRequest), (c) =>
      c.json({ run: s.runs.oneOff(c.req.param("name"), c.req.valid("json")) }, 201),
    )
    .get("/:name/secrets", admin, (c) => c.json({ secrets: s.secrets.list(c.req.param("name")) }))
    .put("/:name/secrets/:key", admin, validate("param", secretParams), validate("json", putSecretRequest), (c) => {
      const { name, key } = c.req.valid("param");
      return c.json({ secret: s.secrets.put(name, key, c.req.valid("json").value) });
    })
    .delete("/:name/secrets/:key", admin, validate("param", secretParams), (c) => {
      const { name, key } = c.req.valid("param");
      s.secrets.remove(name, key);
      return c.body(null, 204);
    });
}
