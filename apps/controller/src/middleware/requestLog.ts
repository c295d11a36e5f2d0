import { randomUUID } from "node:crypto";
import { createMiddleware } from "hono/factory";
import type { Logger } from "pino";
import type { AppEnv } from "./auth";

/** One line per request: method, route pattern, status, duration. Never a body, query or header. */
export function requestLog(logger: Logger, observe?: (method: string, route: string, status: number, seconds: number) => void) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const started = performance.now();
    const requestId = c.req.header("x-request-id")?.slice(0, 64) || randomUUID();
    c.set("requestId", requestId);
    // set before the handler answers: a header added afterwards makes Hono rebuild the Response
    // around a stream, which costs the node adapter its fast path
    c.header("x-request-id", requestId);
    await next();
    const seconds = (performance.now() - started) / 1000;
    observe?.(c.req.method, c.req.routePath, c.res.status, seconds);
    logger.info(
      {
        requestId,
        method: c.req.method,
        route: c.req.routePath,
        status: c.res.status,
        ms: Math.round((performance.now() - started) * 10) / 10,
      },
      "request",
    );
  });
}
