import { appOperationRequest, appOperations } from "@deploybot/protocol";
import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, requireScope } from "../middleware/auth";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import type { Services } from "../services";
import { assertAppAllowed } from "../services/auth";

export const appEventsQuery = z.object({
  host: z.string().max(63).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
});

/** `POST /v1/apps/{name}/{stop|start|restart|scale|remove}` and the reconcile events of an app. */
export function appOperationRoutes(s: Services) {
  const routes = new Hono<AppEnv>().get("/:name/events", requireScope(s.apiTokens, "read"), validate("query", appEventsQuery), (c) => {
    assertAppAllowed(c.get("user"), c.req.param("name"));
    const { host, limit } = c.req.valid("query");
    return c.json({ events: s.appStates.events({ app: c.req.param("name"), host, limit }) });
  });
  const deploy = requireScope(s.apiTokens, "deploy");
  for (const op of appOperations) {
    routes.post(`/:name/${op}`, deploy, idempotency(s.idempotencyKeys, { inTransaction: true }), validate("json", appOperationRequest), (c) => {
      assertAppAllowed(c.get("user"), c.req.param("name"));
      return c.json(s.appOperations.operate(c.req.param("name"), op, c.req.valid("json"), c.get("idempotency")), 201);
    });
  }
  return routes;
}
