import {
  appendLogsRequest,
  jobLogsQuery,
  listJobsQuery,
  RESULT_FILE_LIMIT,
  reportStatusRequest,
  resultUploadHeaders,
  submitJob,
} from "@deploybot/protocol";
import { Hono } from "hono";
import { z } from "zod";
import { ApiError } from "../lib/errors";
import { type AppEnv, requireAgent, requireScope } from "../middleware/auth";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import type { Services } from "../services";
import { jobToWire } from "../services/jobs";

/** The headers of a result upload; the path is URI-encoded so any file name fits in a header. */
const resultUpload = z.object({
  lease: z.string().min(1).max(64),
  path: z
    .string()
    .min(1)
    .max(3072)
    .transform((p, ctx) => {
      try {
        return decodeURIComponent(p);
      } catch {
        ctx.addIssue({ code: "custom", message: "path is not URI-encoded" });
        return z.NEVER;
      }
    }),
  size: z.coerce.number().int().min(0),
});

/** Users submit, read and cancel jobs; the agent holding a job reports its status and logs. */
export function jobRoutes(s: Services) {
  const read = requireScope(s.apiTokens, "read");
  const deploy = requireScope(s.apiTokens, "deploy");
  const agent = requireAgent(s.agentTokens, s.agents);
  return new Hono<AppEnv>()
    .post("/", deploy, idempotency(s.idempotencyKeys, { inTransaction: true }), validate("json", submitJob), (c) => {
      const { job, created } = s.jobs.create(s.jobs.resolveSubmission(c.req.valid("json"), c.get("user")), c.get("idempotency"));
      return c.json({ job }, created ? 201 : 200);
    })
    .get("/", read, validate("query", listJobsQuery), (c) => c.json(s.jobs.list({ ...c.req.valid("query"), apps: c.get("user").apps })))
    .get("/:jobId", read, (c) => c.json({ job: s.jobs.get(c.req.param("jobId"), c.get("user")) }))
    .post("/:jobId/cancel", deploy, idempotency(s.idempotencyKeys), (c) => {
      s.jobs.get(c.req.param("jobId"), c.get("user"));
      return c.json({ job: s.jobs.cancel(c.req.param("jobId")) });
    })
    .get("/:jobId/logs", read, validate("query", jobLogsQuery), (c) => {
      s.jobs.get(c.req.param("jobId"), c.get("user"));
      const { after, limit } = c.req.valid("query");
      return c.json(s.jobLogs.read(c.req.param("jobId"), after, limit));
    })
    .post("/:jobId/status", agent, validate("json", reportStatusRequest), (c) => {
      const jobId = c.req.param("jobId");
      const row = s.leases.reportStatus(c.get("agent").id, jobId, s.redaction.statusReport(jobId, c.req.valid("json")));
      s.runs.adoptInlineResult(row);
      return c.json({ job: jobToWire(row) });
    })
    .put("/:jobId/result", agent, async (c) => {
      const upload = resultUpload.safeParse({
        lease: c.req.header(resultUploadHeaders.lease),
        path: c.req.header(resultUploadHeaders.path),
        size: c.req.header(resultUploadHeaders.size),
      });
      if (!upload.success) throw new ApiError(400, "invalid_headers", `give ${Object.values(resultUploadHeaders).join(", ")}`);
      const content = Buffer.from(await c.req.arrayBuffer());
      const { lease, path, size } = upload.data;
      s.runs.storeResult(c.get("agent").id, c.req.param("jobId"), lease, { path, size, content });
      return c.json({ stored: Math.min(content.length, RESULT_FILE_LIMIT) });
    })
    .post("/:jobId/logs", agent, validate("json", appendLogsRequest), (c) =>
      c.json(s.jobLogs.append(c.get("agent").id, c.req.param("jobId"), c.req.valid("json"))),
    );
}
