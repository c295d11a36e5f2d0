import { type AppLogLine, appendAppLogsRequest, appLogPage, appLogsQuery } from "@deploybot/protocol";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { ApiError } from "../lib/errors";
import { fails, guards, idParam, json, jsonBody, newRouter, route } from "../openapi/route";
import type { Services } from "../services";
import { assertAppAllowed } from "../services/auth";
import type { AppDefinition } from "../services/appsConfig";

/** A `: ping` after this long without a line keeps proxies from closing a quiet stream. */
const PING_MS = 15_000;
/** Lines replayed when a live stream starts without --tail/--since. */
const FOLLOW_TAIL = 100;
/** History is read in pages of this many lines (a resume after a long outage may be far behind). */
const HISTORY_PAGE = 1000;

const frame = (l: AppLogLine) => ({ id: String(l.id), event: "log", data: JSON.stringify(l) });

/** `POST /v1/agents/{id}/app-logs`: containers' output from an agent, at its offset. */
export function appLogIngestRoutes(s: Services) {
  const { agent } = guards(s);
  return newRouter().openapi(
    route({
      method: "post",
      path: "/{agentId}/app-logs",
      guard: agent,
      summary: "Containers' output from an agent at its offset; a retry stores nothing twice",
      request: { params: idParam("agentId"), body: jsonBody(appendAppLogsRequest) },
      responses: {
        200: json(z.object({ offset: z.number().int() }), "stored"),
        ...fails({ 400: "invalid body", 409: "offset mismatch (details.offset is the controller's)" }),
      },
    }),
    async (c) => {
      const { offset, entries } = c.req.valid("json");
      return c.json({ offset: await s.appLogs.append(c.get("agent"), offset, entries) }, 200);
    },
  );
}

/**
 * `GET /v1/apps/{name}/logs`: the app's container output on every host (or `host`), oldest
 * first; `follow=1` answers Server-Sent Events (`log` events, id = line id): the stored lines,
 * then every new one as it arrives, resumable with `Last-Event-ID`.
 */
export function appLogReadRoutes(s: Services, apps: () => { byName(name: string): AppDefinition | undefined }) {
  const { read } = guards(s);
  return newRouter().openapi(
    route({
      method: "get",
      path: "/{name}/logs",
      guard: read,
      summary:
        "The app's container output, merged across hosts (or `host`), oldest first; `follow=1`: Server-Sent Events, resumable with Last-Event-ID",
      description:
        "With `follow=1` the answer is `text/event-stream`: first a `notice` event per host in `silentHosts` (data: one entry as there), then `log` events (id = line id, data: one line as in `lines`), `: ping` every 15 s when quiet.",
      request: { params: idParam("name"), query: appLogsQuery },
      responses: {
        200: {
          description: "the lines, or with follow=1 an event stream",
          content: { "application/json": { schema: appLogPage }, "text/event-stream": { schema: z.string() } },
        },
        ...fails({ 400: "bad since or cursor", 404: "no such app, or a host the app neither runs on nor has output from" }),
      },
    }),
    async (c) => {
    const { name } = c.req.valid("param");
    assertAppAllowed(c.get("user"), name);
    const app = apps().byName(name);
    if (!app) throw new ApiError(404, "unknown_app", `no app '${name}'`);
    const q = c.req.valid("query");
    // a misspelt host matched nothing, and `logs APP --host H -f` waited for ever in silence
    if (q.host && !app.hosts.includes(q.host) && !(await s.appLogs.hasLines(name, q.host))) {
      throw new ApiError(404, "unknown_host", `app '${name}' has no output from host '${q.host}' and does not run there (its hosts: ${app.hosts.join(", ") || "none"})`);
    }
    const lastId = c.req.header("last-event-id");
    if (lastId !== undefined && !/^\d{1,15}$/.test(lastId)) throw new ApiError(400, "invalid_cursor", "Last-Event-ID must be a line id");
    const after = lastId !== undefined ? Number(lastId) : q.after;
    const follow = q.follow === "1" || q.follow === "true";
    // a resumed stream (Last-Event-ID) wants every line after its cursor, not the last few
    const tail = after !== undefined ? undefined : (q.tail ?? (follow && !q.since ? FOLLOW_TAIL : undefined));
    const query = { host: q.host, since: q.since, after, tail };
    // hosts whose agent never ships output: said, instead of an empty answer that reads as "nothing yet"
    const silentHosts = await s.appLogs.silentHosts(name, q.host ? [q.host] : app.hosts);
    if (!follow) {
      const lines = await s.appLogs.read(name, query);
      return c.json({ lines, next: lines.at(-1)?.id ?? after ?? 0, silentHosts }, 200);
    }
    // Subscribe before reading the history: a line stored in between is in one or the other,
    // and the id check drops it from the second.
    const pending: AppLogLine[] = [];
    let wake: (() => void) | null = null;
    const unsubscribe = s.appLogs.subscribe(name, q.host, (lines) => {
      pending.push(...lines);
      wake?.();
    });
    const history = await s.appLogs.read(name, query, HISTORY_PAGE);
    c.header("X-Accel-Buffering", "no");
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => {
        unsubscribe();
        wake?.();
      });
      try {
        let last = after ?? 0;
        // Per host, the newest line sent: one host's lines come in id order, but with several
        // controllers on PostgreSQL two hosts' batches may commit (and arrive) out of id order,
        // so a line is new when it is newer than its own host's last one.
        const sent = new Map<string, number>();
        const write = async (l: AppLogLine) => {
          await stream.writeSSE(frame(l));
          last = l.id;
          sent.set(l.host, l.id);
        };
        // once per stream, not again on each resume; no id, so a client's Last-Event-ID stays the last line's
        if (lastId === undefined) for (const silent of silentHosts) await stream.writeSSE({ event: "notice", data: JSON.stringify(silent) });
        for (let page = history; ; page = await s.appLogs.read(name, { host: q.host, after: last }, HISTORY_PAGE)) {
          for (const l of page) await write(l);
          if (page.length < HISTORY_PAGE || stream.aborted) break;
        }
        while (!stream.aborted) {
          const batch = pending.splice(0).filter((l) => l.id > (sent.get(l.host) ?? after ?? 0));
          for (const l of batch) await write(l);
          if (batch.length > 0) continue;
          const timedOut = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(true), PING_MS);
            wake = () => {
              clearTimeout(timer);
              resolve(false);
            };
          });
          wake = null;
          if (timedOut && !stream.aborted) await stream.write(": ping\n\n");
        }
      } finally {
        unsubscribe();
      }
    });
  },
  );
}
