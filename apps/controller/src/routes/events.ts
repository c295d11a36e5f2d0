import { eventsQuery } from "@deploybot/protocol";
import { streamSSE } from "hono/streaming";
import { eventStream, fails, guards, newRouter, route } from "../openapi/route";
import type { Services } from "../services";
import type { Deps } from "../services/deps";
import { EventStreams, parseEventCursor } from "../services/eventStream";

/**
 * `GET /v1/events`: every change as it commits (jobs, deployments, hosts, config reloads), as
 * Server-Sent Events with the outbox id as event id; `?app=`, `?types=`; resumable with
 * `Last-Event-ID` (or `?after=`) for as long as DEPLOYBOT_EVENTS_RETENTION_HOURS.
 */
export function eventRoutes(s: Services, deps: Deps, streams = new EventStreams(deps)) {
  const { read } = guards(s);
  return newRouter().openapi(
    route({
      method: "get",
      path: "/",
      guard: read,
      summary:
        "Server-Sent Events: every change as it commits (job.changed, deployment.changed, host.online, host.offline, config.reloaded, consequence.failed); event ids are outbox ids, resumable with Last-Event-ID within the retention",
      request: { query: eventsQuery },
      responses: {
        200: eventStream,
        ...fails({ 400: "invalid query or event id" }),
      },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const from = c.req.header("last-event-id") || q.after;
      // parsed before the response starts: a bad cursor is still a JSON error
      const serve = await streams.serve(q, from === undefined ? undefined : parseEventCursor(from));
      c.header("X-Accel-Buffering", "no");
      return streamSSE(c, serve);
    },
  );
}
