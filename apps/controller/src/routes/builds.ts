import { appImageRepository, buildRequest } from "@deploybot/protocol";
import { Hono } from "hono";
import { ApiError } from "../lib/errors";
import { type AppEnv, requireScope } from "../middleware/auth";
import { assertAppAllowed } from "../services/auth";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import type { Services } from "../services";
import type { Config } from "../config";

/**
 * For services that hold the files themselves (the seeds' build agent): build a file tree and
 * push `registry/name:version` and `:latest`. Its body limit is DEPLOYBOT_BUILD_BODY_LIMIT.
 */
export function buildRoutes(s: Services, config: Config) {
  return new Hono<AppEnv>()
    .post("/", requireScope(s.apiTokens, "deploy"), idempotency(s.idempotencyKeys, { inTransaction: true }), validate("json", buildRequest), (c) => {
      const body = c.req.valid("json");
      assertAppAllowed(c.get("user"), body.name);
      const image = appImageRepository({ name: body.name }, config.registry);
      if (!image) throw new ApiError(422, "no_registry", "DEPLOYBOT_REGISTRY_URL is not set, so there is nowhere to push");
      const { job, created } = s.jobs.create({
        spec: { kind: "build", app: body.name, source: { type: "files", files: body.files }, image, version: body.version },
        target: body.host ? { host: body.host } : { labels: ["builder"] },
      }, c.get("idempotency"));
      return c.json({ job, imageTag: `${image}:${body.version}` }, created ? 201 : 200);
    })
    .get("/:jobId", requireScope(s.apiTokens, "read"), (c) => {
      const job = s.jobs.get(c.req.param("jobId"), c.get("user"));
      if (job.kind !== "build") throw new ApiError(404, "not_found", `job '${job.id}' is not a build`);
      const done = ["succeeded", "failed", "cancelled", "lost", "timed_out"].includes(job.status);
      const image = job.spec.image && job.spec.version ? `${job.spec.image}:${job.spec.version}` : null;
      return c.json({
        jobId: job.id,
        status: job.status,
        success: done ? job.status === "succeeded" : null,
        image_tag: job.status === "succeeded" ? image : null,
        error: done && job.status !== "succeeded" ? (job.error ?? job.status) : null,
      });
    });
}
