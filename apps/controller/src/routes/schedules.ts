import { listSchedulesQuery } from "@deploybot/protocol";
import { Hono } from "hono";
import { type AppEnv, requireScope } from "../middleware/auth";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import type { Services } from "../services";

/** apps.yaml schedules with their next ticks; trigger now, pause and resume. */
export function scheduleRoutes(s: Services) {
  const read = requireScope(s.apiTokens, "read");
  const deploy = requireScope(s.apiTokens, "deploy");
  return new Hono<AppEnv>()
    .get("/", read, validate("query", listSchedulesQuery), (c) => c.json({ schedules: s.scheduler.list(c.req.valid("query").app) }))
    .get("/:app/:name", read, (c) => c.json({ schedule: s.scheduler.get(c.req.param("app"), c.req.param("name")) }))
    .post("/:app/:name/trigger", deploy, idempotency(s.idempotencyKeys), (c) =>
      c.json({ run: s.scheduler.trigger(c.req.param("app"), c.req.param("name")) }, 201),
    )
    .post("/:app/:name/pause", deploy, (c) => c.json({ schedule: s.scheduler.setPaused(c.req.param("app"), c.req.param("name"), true) }))
    .post("/:app/:name/resume", deploy, (c) => c.json({ schedule: s.scheduler.setPaused(c.req.param("app"), c.req.param("name"), false) }));
}
