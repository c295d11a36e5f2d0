import { createDeploymentRequest, deploymentAnswer, deploymentPage, listDeploymentsQuery } from "@deploybot/protocol";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, json, jsonBody, listRoute, newRouter, oneRoute, route } from "../openapi/route";
import type { Services } from "../services";
import { replayDeployment } from "./replays";
import { assertAppAllowed } from "../services/auth";

export function deploymentRoutes(s: Services) {
  const { read, deploy } = guards(s);
  return newRouter()
    .openapi(
      route({
        method: "post",
        path: "/",
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys, { inTransaction: { replay: replayDeployment(s) } })],
        summary: "Deploy an app at a ref or image: one job per target host",
        request: { body: jsonBody(createDeploymentRequest) },
        responses: {
          201: json(deploymentAnswer, "created"),
          ...fails({ 400: "invalid body", 404: "no such app", 422: "Idempotency-Key reused, or nothing to deploy to" }),
        },
      }),
      async (c) => {
        const input = { ...c.req.valid("json"), trigger: "api" as const, triggeredBy: c.get("user").tokenId };
        const deployment = await s.deployments.create(input, c.get("idempotency"), c.get("user"));
        return c.json({ deployment }, 201);
      },
    )
    .openapi(
      listRoute({ guard: read, summary: "List deployments, newest first, with cursor pagination", query: listDeploymentsQuery, answer: deploymentPage }),
      async (c) => c.json(await s.deployments.list({ ...c.req.valid("query"), apps: c.get("user").apps }), 200),
    )
    .openapi(
      oneRoute({ guard: read, summary: "One deployment", key: "deploymentId", answer: deploymentAnswer, noun: "deployment" }),
      async (c) => {
        const deployment = await s.deployments.get(c.req.valid("param").deploymentId);
        assertAppAllowed(c.get("user"), deployment.app);
        return c.json({ deployment }, 200);
      },
    );
}
