import { getConnInfo } from "@hono/node-server/conninfo";
import { Hono } from "hono";
import { ApiError } from "../lib/errors";
import { type AppEnv, requireScope } from "../middleware/auth";
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
  return new Hono<AppEnv>().get(
    "/",
    async (c, next) => {
      const peer = peerAddress(c);
      if (peer !== undefined && allow.includes(peer)) return next();
      if (!c.req.header("authorization") && allow.length > 0) throw new ApiError(401, "unauthorized", "GET /metrics needs a token with the metrics scope, or an address in DEPLOYBOT_METRICS_ALLOW");
      return tokenNeeded(c, next);
    },
    async (c) => {
      c.header("content-type", metrics.registry.contentType);
      return c.body(await metrics.text());
    },
  );
}
