import { eventsQuery } from "@deploybot/protocol";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { type AppEnv, requireScope } from "../middleware/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";
import type { Deps } from "../services/deps";
import { EventStreams, parseEventCursor } from "../services/eventStream";

/**
 * `GET /v1/events`: every change as it commits (jobs, deployments, hosts, config reloads), as
 * Server-Sent Events with the outbox id as event id; `?app=`, `?types=`; resumable with
 * `Last-Event-ID` (or `?after=`) for as long as DEPLOYBOT_EVENTS_RETENTION_HOURS.
 */
export function eventRoutes(s: Services, deps: Deps, streams = new EventStreams(deps)) {
  return new Hono<AppEnv>().get("/", requireScope(s.apiTokens, "read"), validate("query", eventsQuery), (c) => {
    const q = c.req.valid("query");
    const from = c.req.header("last-event-id") || q.after;
    // parsed before the response starts: a bad cursor is still a JSON error
    const serve = streams.serve(q, from === undefined ? undefined : parseEventCursor(from));
    c.header("X-Accel-Buffering", "no");
    return streamSSE(c, serve);
  });
}
