import { logStreamQuery } from "@deploybot/protocol";
import { streamSSE } from "hono/streaming";
import { eventStream, fails, guards, newRouter, route } from "../openapi/route";
import type { Services } from "../services";
import { assertAppAllowed } from "../services/auth";
import type { Deps } from "../services/deps";
import { LogStreams, parseAppCursor, parseJobCursor } from "../services/logStream";

/**
 * `GET /v1/logs/stream`: Server-Sent Events of a job's log (`?job=`) or of a host's app
 * (`?host=&app=`), history first, then live, resumable with `Last-Event-ID`.
 */
export function logStreamRoutes(s: Services, deps: Deps, streams = new LogStreams(deps, s.jobLogs)) {
  const { read } = guards(s);
  return newRouter().openapi(
    route({
      method: "get",
      path: "/",
      guard: read,
      summary:
        "Server-Sent Events: a job's log (?job=) ending with `event: end`, or every job of an app on a host (?host=&app=); history then live, resumable with Last-Event-ID",
      description:
        "Events: `log` (data: {seq, ts, stream, line, jobId?}), `end` on a job stream and `job` on a host+app stream (data: {jobId, status}) when a job's log is complete.",
      request: { query: logStreamQuery },
      responses: {
        200: eventStream,
        ...fails({ 400: "invalid query or event id", 404: "no such job" }),
      },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const from = c.req.header("last-event-id") || q.after;
      assertAppAllowed(c.get("user"), q.job ? (await s.jobs.get(q.job)).app : q.app!);
      // opened before the response starts: a missing job or a bad cursor is still a JSON error
      const serve = q.job
        ? await streams.openJob(q.job, from === undefined ? -1 : parseJobCursor(from))
        : await streams.openHostApp(q.host!, q.app!, from === undefined ? undefined : parseAppCursor(from));
      c.header("X-Accel-Buffering", "no");
      return streamSSE(c, serve);
    },
  );
}
