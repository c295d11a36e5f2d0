import { getConnInfo } from "@hono/node-server/conninfo";
import type { MiddlewareHandler } from "hono";
import { z } from "zod";
import { ApiError } from "../lib/errors";
import { type AppEnv, requireScope } from "../middleware/auth";
import { type Guard, newRouter, route } from "../openapi/route";
import type { Services } from "../services";
import type { ControllerMetrics } from "../services/metrics";

/** The peer's address, IPv4-mapped IPv6 written as IPv4; undefined outside a node server (app.request in tests). */
function peerAddress(c: Parameters<typeof getConnInfo>[0]): string | undefined {
  try {
    return getConnInfo(c).remote.address?.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, "$1");
  } catch {
    return undefined;
  }
}

/** `GET /metrics`: Prometheus text exposition; a token with the `metrics` scope, or an allowed address. */
export function metricsRoutes(s: Services, metrics: ControllerMetrics, allow: string[]) {
  const tokenNeeded = requireScope(s.apiTokens, "metrics");
  const gate: MiddlewareHandler<AppEnv> = async (c, next) => {
    const peer = peerAddress(c);
    if (peer !== undefined && allow.includes(peer)) return next();
    if (!c.req.header("authorization") && allow.length > 0) throw new ApiError(401, "unauthorized", "GET /metrics needs a token with the metrics scope, or an address in DEPLOYBOT_METRICS_ALLOW");
    return tokenNeeded(c, next);
  };
  const guard: Guard<"metrics"> = { auth: "metrics", middleware: [gate] };
  return newRouter().openapi(
    route({
      method: "get",
      path: "/",
      guard,
      summary: "Prometheus metrics (text exposition): a token with the metrics scope, or an address in DEPLOYBOT_METRICS_ALLOW",
      responses: { 200: { description: "the metrics", content: { "text/plain; version=0.0.4": { schema: z.string() } } } },
    }),
    async (c) => {
      return c.text(await metrics.text(), 200, { "content-type": metrics.registry.contentType });
    },
  );
}
