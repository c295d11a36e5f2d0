import { type AppOperation, appEventList, appOperationRequest, appOperations, jobList, name as hostName, queryNumber } from "@deploybot/protocol";
import { z } from "zod";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, idParam, json, jsonBody, newRouter, route } from "../openapi/route";
import type { Services } from "../services";
import { replayJobs } from "./replays";
import { assertAppAllowed } from "../services/auth";

export const appEventsQuery = z.object({
  host: hostName.optional(),
  limit: queryNumber(z.coerce.number().int().min(1).max(1000).default(50)),
});

const summaries: Record<AppOperation, string> = {
  stop: "Stop the app's containers (kept) on all or some hosts; reconcile keeps them stopped",
  start: "Start a stopped app again, health-gated like a deploy",
  restart: "Restart the app's containers one at a time, each health-gated",
  scale: "Run `replicas` containers of the current release per host",
  remove: "Remove the app's containers from all or some hosts",
};

/** `POST /v1/apps/{name}/{stop|start|restart|scale|remove}` and the reconcile events of an app. */
export function appOperationRoutes(s: Services) {
  const { read, deploy } = guards(s);
  const appName = idParam("name");
  const routes = newRouter().openapi(
    route({
      method: "get",
      path: "/{name}/events",
      guard: read,
      summary: "What the agents' reconcile loops did to the app (restarts, recreations, removals), newest first, with reasons",
      request: { params: appName, query: appEventsQuery },
      responses: { 200: json(appEventList, "the events"), ...fails({ 400: "invalid query", 404: "no such app" }) },
    }),
    async (c) => {
      const { name } = c.req.valid("param");
      assertAppAllowed(c.get("user"), name);
      const { host, limit } = c.req.valid("query");
      return c.json({ events: await s.appStates.events({ app: name, host, limit }) }, 200);
    },
  );
  for (const op of appOperations) {
    routes.openapi(
      route({
        method: "post",
        path: `/{name}/${op}`,
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys, { inTransaction: { replay: replayJobs(s) } })],
        summary: summaries[op],
        request: { params: appName, body: jsonBody(appOperationRequest) },
        responses: {
          201: json(jobList, "one job per host queued"),
          ...fails({ 400: "invalid body", 404: "no such app", 409: "not deployed on a host, or ports forbid replicas", 422: "Idempotency-Key reused" }),
        },
      }),
      async (c) => {
        const { name } = c.req.valid("param");
        assertAppAllowed(c.get("user"), name);
        return c.json(await s.appOperations.operate(name, op, c.req.valid("json"), c.get("idempotency")), 201);
      },
    );
  }
  return routes;
}
