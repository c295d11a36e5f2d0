import { logStreamQuery } from "@deploybot/protocol";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { type AppEnv, requireScope } from "../middleware/auth";
import { assertAppAllowed } from "../services/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";
import type { Deps } from "../services/deps";
import { LogStreams, parseAppCursor, parseJobCursor } from "../services/logStream";


/**
 * `GET /v1/logs/stream`: Server-Sent Events of a job's log (`?job=`) or of a host's app
 * (`?host=&app=`), history first, then live, resumable with `Last-Event-ID`.
 */
export function logStreamRoutes(s: Services, deps: Deps, streams = new LogStreams(deps, s.jobLogs)) {
  return new Hono<AppEnv>().get("/", requireScope(s.apiTokens, "read"), validate("query", logStreamQuery), (c) => {
    const q = c.req.valid("query");
    const from = c.req.header("last-event-id") || q.after;
    assertAppAllowed(c.get("user"), q.job ? s.jobs.get(q.job).app : q.app!);
    // opened before the response starts: a missing job or a bad cursor is still a JSON error
    const serve = q.job
      ? streams.openJob(q.job, from === undefined ? -1 : parseJobCursor(from))
      : streams.openHostApp(q.host!, q.app!, from === undefined ? undefined : parseAppCursor(from));
    c.header("X-Accel-Buffering", "no");
    return streamSSE(c, serve);
  });
}
