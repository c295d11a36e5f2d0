import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import { errorResponse } from "../lib/errors";

/**
 * Refuses bodies over `maxSize` with a 413. A request that declares its length is checked by
 * its header alone; hono's own bodyLimit reads `raw.body` first, which makes the node adapter
 * wrap every request in a web stream (a third of a heartbeat's CPU, measured). Chunked bodies,
 * whose size is only known by reading them, still go through hono's counting reader.
 */
export function limitBody(defaultMax: number, exceptions: Record<string, number> = {}) {
  const guards = new Map<number, ReturnType<typeof guard>>();
  const guardFor = (max: number) => guards.get(max) ?? guards.set(max, guard(max)).get(max)!;
  // per-route limits: "POST /v1/builds" carries whole file trees
  return createMiddleware(async (c, next) => guardFor(exceptions[`${c.req.method} ${c.req.path}`] ?? defaultMax)(c, next));
}

function guard(maxSize: number) {
  const tooLarge = (c: Parameters<typeof errorResponse>[0]) =>
    errorResponse(c, 413, "payload_too_large", `request body is larger than ${maxSize} bytes`);
  const counting = bodyLimit({ maxSize, onError: tooLarge });
  return createMiddleware(async (c, next) => {
    const length = c.req.header("content-length");
    if (length !== undefined && c.req.header("transfer-encoding") === undefined) {
      return Number.parseInt(length, 10) > maxSize ? tooLarge(c) : next();
    }
    if (c.req.method === "GET" || c.req.method === "HEAD") return next();
    return counting(c, next);
  });
}
