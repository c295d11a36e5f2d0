import { listRunsQuery } from "@deploybot/protocol";
import { Hono } from "hono";
import { type AppEnv, requireScope } from "../middleware/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";

/** Run history and result files. Runs are made by schedules and by `POST /v1/apps/{name}/runs`. */
export function runRoutes(s: Services) {
  const read = requireScope(s.apiTokens, "read");
  return new Hono<AppEnv>()
    .get("/", read, validate("query", listRunsQuery), (c) => c.json(s.runs.list(c.req.valid("query"))))
    .get("/:runId", read, (c) => c.json({ run: s.runs.get(c.req.param("runId")) }))
    .get("/:runId/result", read, (c) => {
      const file = s.runs.result(c.req.param("runId"));
      const name = file.path.split("/").pop() || "result";
      return c.body(new Uint8Array(file.content), 200, {
        "content-type": "application/octet-stream",
        "content-disposition": `attachment; filename="${name.replace(/[^\w.-]/g, "_")}"`,
        "x-deploybot-result-size": String(file.size),
        "x-deploybot-result-truncated": String(file.truncated),
      });
    });
}
