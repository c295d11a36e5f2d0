import {
  appendLogsRequest,
  appendLogsResponse,
  jobAnswer,
  jobLogsQuery,
  jobLogsResponse,
  jobPage,
  listJobsQuery,
  RESULT_FILE_LIMIT,
  reportStatusRequest,
  resultUploadHeaders,
  submitJob,
} from "@deploybot/protocol";
import { z } from "zod";
import { ApiError } from "../lib/errors";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, idParam, json, jsonBody, listRoute, newRouter, oneRoute, route } from "../openapi/route";
import type { Services } from "../services";
import { replayJob } from "./replays";
import { reportJobStatus } from "../services/jobReports";
import { jobToWire } from "../services/jobs";

const jobId = idParam("jobId");

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
  // digits only: z.coerce.number() read an empty header as 0 (and "0x10" or "1e3" as numbers),
  // so a result was stored claiming 0 bytes of a file it had cut at 1 MiB
  size: z
    .string()
    .regex(/^\d{1,15}$/, "must be the file's size in bytes, a whole number")
    .transform(Number),
});

/** Users submit, read and cancel jobs; the agent holding a job reports its status and logs. */
export function jobRoutes(s: Services) {
  const { read, deploy, agent } = guards(s);
  return newRouter()
    .openapi(
      route({
        method: "post",
        path: "/",
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys, { inTransaction: { replay: replayJob(s, (job) => ({ job })) } })],
        summary: "Submit a job: {repo, ref, host} resolved from apps.yaml, or a full {spec, target}",
        request: { body: jsonBody(submitJob) },
        responses: {
          201: json(jobAnswer, "created"),
          200: json(jobAnswer, "an active job with the same repo, ref and target"),
          ...fails({ 400: "invalid body", 404: "no app maps the repo", 422: "Idempotency-Key reused" }),
        },
      }),
      async (c) => {
        const { job, created } = await s.jobs.create(await s.jobs.resolveSubmission(c.req.valid("json"), c.get("user")), c.get("idempotency"));
        return created ? c.json({ job }, 201) : c.json({ job }, 200);
      },
    )
    .openapi(
      listRoute({ guard: read, summary: "List jobs, newest first, with cursor pagination", query: listJobsQuery, answer: jobPage }),
      async (c) => c.json(await s.jobs.list({ ...c.req.valid("query"), apps: c.get("user").apps }), 200),
    )
    .openapi(
      oneRoute({ guard: read, summary: "One job", key: "jobId", answer: jobAnswer, noun: "job" }),
      async (c) => c.json({ job: await s.jobs.get(c.req.valid("param").jobId, c.get("user")) }, 200),
    )
    .openapi(
      route({
        method: "post",
        path: "/{jobId}/cancel",
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys)],
        summary: "Cancel a job: pending ends at once, a held job is stopped by its agent",
        request: { params: jobId },
        responses: { 200: json(jobAnswer, "the job"), ...fails({ 404: "no such job", 422: "Idempotency-Key reused" }) },
      }),
      async (c) => {
        const { jobId } = c.req.valid("param");
        await s.jobs.get(jobId, c.get("user"));
        return c.json({ job: await s.jobs.cancel(jobId) }, 200);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/{jobId}/logs",
        guard: read,
        summary: "A page of a job's log after a seq",
        request: { params: jobId, query: jobLogsQuery },
        responses: { 200: json(jobLogsResponse, "a page"), ...fails({ 400: "invalid query", 404: "no such job" }) },
      }),
      async (c) => {
        const { jobId } = c.req.valid("param");
        await s.jobs.get(jobId, c.get("user"));
        const { after, limit } = c.req.valid("query");
        return c.json(await s.jobLogs.read(jobId, after, limit), 200);
      },
    )
    .openapi(
      route({
        method: "post",
        path: "/{jobId}/status",
        guard: agent,
        summary: "Agent: report running | succeeded | failed | cancelled under the job's lease",
        request: { params: jobId, body: jsonBody(reportStatusRequest) },
        responses: {
          200: json(jobAnswer, "the job"),
          ...fails({ 400: "invalid body", 404: "no such job", 409: "stale lease or job already ended" }),
        },
      }),
      async (c) => {
        const { jobId } = c.req.valid("param");
        const row = await reportJobStatus(s, c.get("agent").id, jobId, c.req.valid("json"));
        return c.json({ job: jobToWire(row) }, 200);
      },
    )
    .openapi(
      route({
        method: "put",
        path: "/{jobId}/result",
        guard: agent,
        summary: "The agent holding a run uploads its result file (raw bytes, at most 1 MiB)",
        // headers described, checked in the handler: a bad one is one 400 naming all three
        parameters: [
          { name: resultUploadHeaders.lease, in: "header", required: true, schema: { type: "string" }, description: "the job's lease id" },
          { name: resultUploadHeaders.path, in: "header", required: true, schema: { type: "string" }, description: "the file's path in the container, URI-encoded" },
          { name: resultUploadHeaders.size, in: "header", required: true, schema: { type: "integer" }, description: "the file's full size (the body may be cut at 1 MiB)" },
        ],
        request: { params: jobId, body: { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } } },
        responses: {
          200: json(z.object({ stored: z.number().int().describe("bytes kept") }), "stored"),
          ...fails({ 400: "missing headers", 404: "no such job", 409: "stale lease, or not a run job", 413: "larger than 1 MiB" }),
        },
      }),
      async (c) => {
        const upload = resultUpload.safeParse({
          lease: c.req.header(resultUploadHeaders.lease),
          path: c.req.header(resultUploadHeaders.path),
          size: c.req.header(resultUploadHeaders.size),
        });
        if (!upload.success) {
          const issue = upload.error.issues[0]!;
          const header = resultUploadHeaders[issue.path[0] as keyof typeof resultUploadHeaders];
          throw new ApiError(400, "invalid_headers", `${header}: ${issue.code === "invalid_type" ? "missing" : issue.message}; give ${Object.values(resultUploadHeaders).join(", ")}`);
        }
        const content = Buffer.from(await c.req.arrayBuffer());
        const { lease, path, size } = upload.data;
        await s.runs.storeResult(c.get("agent").id, c.req.valid("param").jobId, lease, { path, size, content });
        return c.json({ stored: Math.min(content.length, RESULT_FILE_LIMIT) }, 200);
      },
    )
    .openapi(
      route({
        method: "post",
        path: "/{jobId}/logs",
        guard: agent,
        summary: "Agent: append log lines at an offset (idempotent on retry)",
        request: { params: jobId, body: jsonBody(appendLogsRequest) },
        responses: {
          200: json(appendLogsResponse, "stored up to offset"),
          ...fails({ 400: "invalid body", 404: "no such job", 409: "offset mismatch or stale lease" }),
        },
      }),
      async (c) => c.json(await s.jobLogs.append(c.get("agent").id, c.req.valid("param").jobId, c.req.valid("json")), 200),
    );
}
