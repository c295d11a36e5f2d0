import { listRunsQuery, runAnswer, runPage } from "@deploybot/protocol";
import { fails, guards, idParam, listRoute, newRouter, oneRoute, route } from "../openapi/route";
import type { Services } from "../services";

const runId = idParam("runId");

/** Run history and result files. Runs are made by schedules and by `POST /v1/apps/{name}/runs`. */
export function runRoutes(s: Services) {
  const { read } = guards(s);
  return newRouter()
    .openapi(
      listRoute({
        guard: read,
        summary: "Run history, newest first (?app, ?schedule), with exit code, duration and result file",
        query: listRunsQuery,
        answer: runPage,
      }),
      async (c) => c.json(await s.runs.list(c.req.valid("query")), 200),
    )
    .openapi(
      oneRoute({ guard: read, summary: "One run", key: "runId", answer: runAnswer, noun: "run" }),
      async (c) => c.json({ run: await s.runs.get(c.req.valid("param").runId) }, 200),
    )
    .openapi(
      route({
        method: "get",
        path: "/{runId}/result",
        guard: read,
        summary: "A run's result file as stored (at most 1 MiB; x-deploybot-result-truncated says whether it was cut)",
        request: { params: runId },
        responses: {
          200: { description: "the file's bytes", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
          ...fails({ 404: "no such run, or it has no result file" }),
        },
      }),
      async (c) => {
        const file = await s.runs.result(c.req.valid("param").runId);
        const name = file.path.split("/").pop() || "result";
        return c.body(new Uint8Array(file.content), 200, {
          "content-type": "application/octet-stream",
          "content-disposition": `attachment; filename="${name.replace(/[^\w.-]/g, "_")}"`,
          "x-deploybot-result-size": String(file.size),
          "x-deploybot-result-truncated": String(file.truncated),
        });
      },
    );
}
