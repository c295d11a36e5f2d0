import { createDeploymentRequest, listDeploymentsQuery } from "@deploybot/protocol";
import { Hono } from "hono";
import { type AppEnv, requireScope } from "../middleware/auth";
import { assertAppAllowed } from "../services/auth";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import type { Services } from "../services";

export function deploymentRoutes(s: Services) {
  const read = requireScope(s.apiTokens, "read");
  return new Hono<AppEnv>()
    .post("/", requireScope(s.apiTokens, "deploy"), idempotency(s.idempotencyKeys, { inTransaction: true }), validate("json", createDeploymentRequest), async (c) => {
      const input = { ...c.req.valid("json"), trigger: "api" as const, triggeredBy: c.get("user").tokenId };
      const deployment = await s.deployments.create(input, c.get("idempotency"), c.get("user"));
      return c.json({ deployment }, 201);
    })
    .get("/", read, validate("query", listDeploymentsQuery), (c) => c.json(s.deployments.list({ ...c.req.valid("query"), apps: c.get("user").apps })))
    .get("/:deploymentId", read, (c) => {
      const deployment = s.deployments.get(c.req.param("deploymentId"));
      assertAppAllowed(c.get("user"), deployment.app);
      return c.json({ deployment });
    });
}
