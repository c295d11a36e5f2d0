import { z } from "zod";
import { envName, gitRef, name, pageCursor, queryNumber, relativePath } from "./schemas";

export const createDeploymentRequest = z
  .object({
    app: name,
    ref: gitRef.optional(),
    sha: z
      .string()
      .regex(/^[0-9a-f]{7,40}$/, "must be a hex commit sha")
      .optional(),
    image: z.string().min(1).max(512).optional(),
    /** an image of the catalog (POST /v1/images) that built successfully */
    imageId: z.string().min(1).max(64).optional(),
    hosts: z.array(name).min(1).max(100).optional(),
  })
  .strict()
  .refine((b) => [b.ref, b.sha, b.image, b.imageId].filter((v) => v !== undefined).length <= 1, {
    message: "give at most one of ref, sha, image, imageId",
  });
export type CreateDeploymentRequest = z.infer<typeof createDeploymentRequest>;

export const deploymentStatuses = ["pending", "building", "deploying", "succeeded", "failed", "superseded", "cancelled"] as const;

export const deployment = z.object({
  id: z.string(),
  app: z.string(),
  ref: z.string().nullable(),
  sha: z.string().nullable(),
  image: z.string().nullable(),
  hosts: z.array(z.string()),
  trigger: z.enum(["api", "webhook", "rollback"]),
  triggeredBy: z.string().nullable(),
  status: z.enum(deploymentStatuses),
  error: z.string().nullable(),
  /** a consequence of this deployment's changes (a commit status, say) that failed and is being retried */
  consequenceError: z.string().nullable().default(null),
  releaseId: z.string().nullable(),
  buildJobId: z.string().nullable(),
  jobs: z.array(
    z.object({
      id: z.string(),
      kind: z.string(),
      host: z.string().nullable(),
      status: z.string(),
      /** why the job failed, or while pending why it waits (an agent without volumes); absent from older controllers */
      error: z.string().nullable().optional(),
    }),
  ),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
}).meta({ id: "Deployment" });
export type Deployment = z.infer<typeof deployment>;

export const listDeploymentsQuery = z.object({
  app: name.optional(),
  cursor: pageCursor("dep").optional(),
  limit: queryNumber(z.coerce.number().int().min(1).max(200).default(50)),
});

export const release = z.object({
  id: z.string(),
  app: z.string(),
  version: z.string(),
  sha: z.string().nullable(),
  imageTag: z.string().nullable(),
  digest: z.string().nullable(),
  config: z.record(z.string(), z.unknown()),
  status: z.enum(["pending", "building", "success", "failed"]),
  buildJobId: z.string().nullable(),
  trigger: z.string(),
  triggeredBy: z.string().nullable(),
  createdAt: z.string(),
  builtAt: z.string().nullable(),
  current: z.boolean(),
}).meta({ id: "Release" });
export type Release = z.infer<typeof release>;

export const rollbackRequest = z
  .object({ release: z.string().max(64).optional(), imageId: z.string().min(1).max(64).optional() })
  .strict()
  .refine((b) => b.release === undefined || b.imageId === undefined, { message: "give at most one of release, imageId" });

export const putSecretRequest = z
  .object({ value: z.string().min(1).max(65_536).refine((v) => !v.includes("\0"), "must not contain NUL (an environment value cannot hold it)") })
  .strict();
/** A secret's key: an environment variable name of at most 128 characters. */
export const secretKeyParam = envName.max(128);

export const buildRequest = z
  .object({
    name,
    version: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, "must be a valid image tag"),
    files: z.record(relativePath, z.string()),
    /** run on this host; default: any agent labelled `builder` */
    host: name.optional(),
  })
  .strict();

export const buildResult = z.object({
  jobId: z.string(),
  status: z.string(),
  success: z.boolean().nullable(),
  image_tag: z.string().nullable(),
  error: z.string().nullable(),
});
