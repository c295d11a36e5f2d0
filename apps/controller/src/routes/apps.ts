import { type AppHostStatus, appRefs, appRefsQuery, createRunRequest, runAnswer, appDetail, appList, deploymentAnswer, putSecretRequest, type Release, releaseList, rollbackRequest, secretAnswer, secretKeyParam, secretList } from "@deploybot/protocol";
import { z } from "zod";
import { notFound } from "../lib/errors";
import { assertAppAllowed } from "../services/auth";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, idParam, json, jsonBody, newRouter, route } from "../openapi/route";
import type { Services } from "../services";
import { replayDeployment } from "./replays";
import type { AppDefinition, AppsConfig } from "../services/appsConfig";
import { redactUrl } from "../services/gitRemote";

const appName = idParam("name");
const secretParams = z.object({ name: z.string().min(1), key: secretKeyParam });

/** What apps.yaml says of an app, with its current release and per-host state. Secret values are never part of it. */
const appToWire = (app: AppDefinition, imageRepository: string | undefined, currentRelease: Release | null, status: AppHostStatus[]) => ({
  name: app.name,
  repo: app.repo,
  url: app.url,
  branch: app.branch,
  deployOnPush: app.deploy_on_push,
  hosts: app.hosts,
  image: app.image ?? null,
  imageRepository: imageRepository ?? null,
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
  const { read, deploy, admin } = guards(s);
  const appNamed = (name: string) => {
    const app = apps().byName(name);
    if (!app) throw notFound("app", name);
    return app;
  };
  return newRouter()
    .openapi(
      route({ method: "get", path: "/", guard: read, summary: "Apps from apps.yaml with their current release and, per host (`status`), desired against actual state", responses: { 200: json(appList, "the apps") } }),
      async (c) => {
        const allowed = c.get("user").apps;
        const current = await s.deployments.catalog.currentByApp();
        const visible = apps().apps.filter((a) => !allowed || allowed.includes(a.name));
        const agents = await s.agents.list();
        const list = await Promise.all(visible.map(async (a) => appToWire(a, s.deployments.imageRepository(a), current.get(a.name) ?? null, await s.appOperations.status(a.name, agents))));
        return c.json({ apps: list }, 200);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/{name}",
        guard: read,
        summary: "One app: its config and per-host state, ten newest releases, each host's route (domains, upstreams and their health) and its 20 newest reconcile events",
        request: { params: appName },
        responses: { 200: json(appDetail, "the app"), ...fails({ 404: "no such app" }) },
      }),
      async (c) => {
        assertAppAllowed(c.get("user"), c.req.valid("param").name);
        const app = appNamed(c.req.valid("param").name);
        return c.json(
          {
            app: appToWire(app, s.deployments.imageRepository(app), await s.deployments.catalog.current(app.name), await s.appOperations.status(app.name)),
            releases: (await s.deployments.catalog.list(app.name)).slice(0, 10),
            // each host's route: domains, upstreams and their health, as its agent last reported
            routes: await s.routes.forApp(app.name),
            events: await s.appStates.events({ app: app.name, limit: 20 }),
          },
          200,
        );
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/{name}/releases",
        guard: read,
        summary: "An app's releases, newest first",
        request: { params: appName },
        responses: { 200: json(releaseList, "the releases"), ...fails({ 404: "no such app" }) },
      }),
      async (c) => {
        assertAppAllowed(c.get("user"), c.req.valid("param").name);
        return c.json({ releases: await s.deployments.catalog.list(c.req.valid("param").name) }, 200);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/{name}/refs",
        guard: read,
        summary: "The app's tags and branches from its own git remote (git ls-remote; commit details from GitHub when a token is set)",
        request: { params: appName, query: appRefsQuery },
        responses: {
          200: json(appRefs, "the refs"),
          ...fails({ 400: "invalid query", 404: "no such app", 422: "the app's git url is refused", 502: "the remote cannot be read" }),
        },
      }),
      async (c) => {
        assertAppAllowed(c.get("user"), c.req.valid("param").name);
        const app = appNamed(c.req.valid("param").name);
        return c.json({ app: app.name, url: redactUrl(app.url), refs: await s.gitRefs.list(app, c.req.valid("query").type) }, 200);
      },
    )
    .openapi(
      route({
        method: "post",
        path: "/{name}/rollback",
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys, { inTransaction: { replay: replayDeployment(s) } })],
        summary: "Re-deploy a previous release (default: the one before the current) with its own config, or an image of the catalog",
        request: { params: appName, body: jsonBody(rollbackRequest) },
        responses: {
          201: json(deploymentAnswer, "deployment created"),
          ...fails({
            400: "invalid body",
            404: "no such app, release or image",
            409: "nothing to roll back to, or the image is not built",
            422: "Idempotency-Key reused",
          }),
        },
      }),
      async (c) => {
        const { name } = c.req.valid("param");
        assertAppAllowed(c.get("user"), name);
        const { release, imageId } = c.req.valid("json");
        const user = c.get("user").tokenId;
        const deployment = imageId
          ? await s.deployments.create({ app: name, imageId, trigger: "rollback", triggeredBy: user }, c.get("idempotency"))
          : await s.deployments.rollback(name, release, user, c.get("idempotency"));
        return c.json({ deployment }, 201);
      },
    )
    .openapi(
      route({
        method: "post",
        path: "/{name}/runs",
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys)],
        summary: "A one-off run: a command in a container of the app's current release (its image, config and secrets), no ports",
        request: { params: appName, body: jsonBody(createRunRequest) },
        responses: {
          201: json(runAnswer, "queued"),
          ...fails({ 400: "invalid body", 404: "no such app", 409: "the app has no deployed release", 422: "no host to run on, or Idempotency-Key reused" }),
        },
      }),
      async (c) => c.json({ run: await s.runs.oneOff(c.req.valid("param").name, c.req.valid("json")) }, 201),
    )
    .openapi(
      route({
        method: "get",
        path: "/{name}/secrets",
        guard: admin,
        summary: "An app's secret names (never values)",
        request: { params: appName },
        responses: { 200: json(secretList, "the names"), ...fails({ 404: "no such app" }) },
      }),
      async (c) => c.json({ secrets: await s.secrets.list(c.req.valid("param").name) }, 200),
    )
    .openapi(
      route({
        method: "put",
        path: "/{name}/secrets/{key}",
        guard: admin,
        summary: "Set a secret (stored encrypted; sent only to the agent running the app's job)",
        request: { params: secretParams, body: jsonBody(putSecretRequest) },
        responses: { 200: json(secretAnswer, "stored"), ...fails({ 400: "invalid key or body", 404: "no such app" }) },
      }),
      async (c) => {
        const { name, key } = c.req.valid("param");
        return c.json({ secret: await s.secrets.put(name, key, c.req.valid("json").value) }, 200);
      },
    )
    .openapi(
      route({
        method: "delete",
        path: "/{name}/secrets/{key}",
        guard: admin,
        summary: "Delete a secret",
        request: { params: secretParams },
        responses: { 204: { description: "deleted" }, ...fails({ 400: "invalid key", 404: "no such app or secret" }) },
      }),
      async (c) => {
        const { name, key } = c.req.valid("param");
        await s.secrets.remove(name, key);
        return c.body(null, 204);
      },
    );
}
