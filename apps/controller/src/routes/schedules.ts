import { listSchedulesQuery, runAnswer, scheduleAnswer, scheduleList } from "@deploybot/protocol";
import { z } from "zod";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, json, newRouter, route } from "../openapi/route";
import type { Services } from "../services";

const scheduleParams = z.object({ app: z.string().min(1).max(256), name: z.string().min(1).max(256) });

/** apps.yaml schedules with their next ticks; trigger now, pause and resume. */
export function scheduleRoutes(s: Services) {
  const { read, deploy } = guards(s);
  const setPaused = (paused: boolean, summary: string) =>
    route({
      method: "post",
      path: `/{app}/{name}/${paused ? "pause" : "resume"}`,
      guard: deploy,
      summary,
      request: { params: scheduleParams },
      responses: { 200: json(scheduleAnswer, paused ? "paused" : "resumed"), ...fails({ 404: "no such schedule" }) },
    });
  return newRouter()
    .openapi(
      route({
        method: "get",
        path: "/",
        guard: read,
        summary: "Schedules from apps.yaml with their next run times and last run (?app)",
        request: { query: listSchedulesQuery },
        responses: { 200: json(scheduleList, "the schedules"), ...fails({ 400: "invalid query", 404: "no such app" }) },
      }),
      async (c) => c.json({ schedules: await s.scheduler.list(c.req.valid("query").app) }, 200),
    )
    .openapi(
      route({
        method: "get",
        path: "/{app}/{name}",
        guard: read,
        summary: "One schedule",
        request: { params: scheduleParams },
        responses: { 200: json(scheduleAnswer, "the schedule"), ...fails({ 404: "no such schedule" }) },
      }),
      async (c) => {
        const { app, name } = c.req.valid("param");
        return c.json({ schedule: await s.scheduler.get(app, name) }, 200);
      },
    )
    .openapi(
      route({
        method: "post",
        path: "/{app}/{name}/trigger",
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys)],
        summary: "Run a schedule's command now, whatever its concurrency policy",
        request: { params: scheduleParams },
        responses: { 201: json(runAnswer, "queued"), ...fails({ 404: "no such schedule", 409: "the app has no deployed release", 422: "no host to run on" }) },
      }),
      async (c) => {
        const { app, name } = c.req.valid("param");
        return c.json({ run: await s.scheduler.trigger(app, name) }, 201);
      },
    )
    .openapi(setPaused(true, "Pause a schedule: its ticks are not run"), async (c) => {
      const { app, name } = c.req.valid("param");
      return c.json({ schedule: await s.scheduler.setPaused(app, name, true) }, 200);
    })
    .openapi(setPaused(false, "Resume a schedule from now on; the ticks of the pause are not made up"), async (c) => {
      const { app, name } = c.req.valid("param");
      return c.json({ schedule: await s.scheduler.setPaused(app, name, false) }, 200);
    });
}
