import { type Job, buildAccepted, buildRequest, buildResult, appImageRepository, isFinal } from "@deploybot/protocol";
import type { Config } from "../config";
import { ApiError } from "../lib/errors";
import { assertAppAllowed } from "../services/auth";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, json, jsonBody, newRouter, oneRoute, route } from "../openapi/route";
import type { Services } from "../services";
import { replayJob } from "./replays";

/** A build job's answer: the job and the tag it pushes (its spec holds both halves). */
const buildAnswer = (job: Job) => ({ job, imageTag: `${job.spec.image}:${job.spec.version}` });

/**
 * For services that hold the files themselves (the seeds' build agent): build a file tree and
 * push `registry/name:version` and `:latest`. Its body limit is DEPLOYBOT_BUILD_BODY_LIMIT.
 */
export function buildRoutes(s: Services, config: Config) {
  const { read, deploy } = guards(s);
  return newRouter()
    .openapi(
      route({
        method: "post",
        path: "/",
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys, { inTransaction: { replay: replayJob(s, buildAnswer) } })],
        summary: "Build {name, version, files} into registry/name:version and :latest",
        request: { body: jsonBody(buildRequest) },
        responses: {
          201: json(buildAccepted, "build job queued"),
          200: json(buildAccepted, "the same build is already queued or running"),
          ...fails({ 400: "invalid body", 413: "body too large (DEPLOYBOT_BUILD_BODY_LIMIT)", 422: "no registry configured, or Idempotency-Key reused" }),
        },
      }),
      async (c) => {
        const body = c.req.valid("json");
        assertAppAllowed(c.get("user"), body.name);
        const image = appImageRepository({ name: body.name }, config.registry);
        if (!image) throw new ApiError(422, "no_registry", "DEPLOYBOT_REGISTRY_URL is not set, so there is nowhere to push");
        const { job, created } = await s.jobs.create({
          spec: { kind: "build", app: body.name, source: { type: "files", files: body.files }, image, version: body.version },
          target: body.host ? { host: body.host } : { labels: ["builder"] },
        }, c.get("idempotency"));
        const answer = buildAnswer(job);
        return created ? c.json(answer, 201) : c.json(answer, 200);
      },
    )
    .openapi(
      oneRoute({ guard: read, summary: "A build's outcome: success and the pushed tag once it ended", key: "jobId", answer: buildResult, noun: "build" }),
      async (c) => {
        const job = await s.jobs.get(c.req.valid("param").jobId, c.get("user"));
        if (job.kind !== "build") throw new ApiError(404, "not_found", `job '${job.id}' is not a build`);
        const done = isFinal(job.status);
        const image = job.spec.image && job.spec.version ? `${job.spec.image}:${job.spec.version}` : null;
        return c.json(
          {
            jobId: job.id,
            status: job.status,
            success: done ? job.status === "succeeded" : null,
            image_tag: job.status === "succeeded" ? image : null,
            error: done && job.status !== "succeeded" ? (job.error ?? job.status) : null,
          },
          200,
        );
      },
    );
}
