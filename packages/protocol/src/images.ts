import { z } from "zod";
import { gitRef, name, queryNumber } from "./schemas";

/**
 * `repo` of `repo:tag`, `repo@sha256:...` or `repo:tag@sha256:...` (a registry port stays part of
 * the repo).
 */
export const repositoryOf = (ref: string): string => ref.replace(/@sha256:[0-9a-f]+$/, "").replace(/:[^:/]+$/, "");

/** What Docker accepts as a tag; a git tag used as an image tag must be one too. */
export const imageTag = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, "must be a valid image tag (letters, digits, '_', '.', '-'; at most 128)");

/**
 * Build (and push) an app's image without deploying it. `tag` is a git tag, built and tagged as
 * itself; `ref` is a branch or commit, resolved to its commit and tagged with the short sha.
 * One image per app and tag: a repeat answers the existing image unless `rebuild`.
 */
export const createImageRequest = z
  .object({
    app: name,
    ref: gitRef.optional(),
    tag: imageTag.optional(),
    rebuild: z.boolean().default(false),
  })
  .strict()
  .refine((b) => (b.ref === undefined) !== (b.tag === undefined), { message: "give exactly one of ref, tag" });
export type CreateImageRequest = z.infer<typeof createImageRequest>;

export const imageStatuses = ["pending", "building", "success", "failed"] as const;

export const image = z.object({
  id: z.string(),
  app: z.string(),
  /** the image tag, unique per app */
  tag: z.string(),
  /** the git ref that was built (a tag, branch or sha) */
  ref: z.string(),
  sha: z.string().nullable(),
  /** repository:tag */
  imageTag: z.string(),
  digest: z.string().nullable(),
  /** what a host pulls: repository@digest once pushed */
  pullRef: z.string().nullable(),
  status: z.enum(imageStatuses),
  error: z.string().nullable(),
  /** the build job; its log is the build log (GET /v1/jobs/{id}/logs, or the log stream) */
  buildJobId: z.string().nullable(),
  builds: z.number().int(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
}).meta({ id: "Image" });
export type Image = z.infer<typeof image>;

export const imageAnswer = z.object({ image, created: z.boolean() });
export const listImagesQuery = z.object({ app: name.optional(), limit: queryNumber(z.coerce.number().int().min(1).max(500).default(100)) });
export const imageList = z.object({ images: z.array(image) });

/** A branch or tag of an app's git remote, as `git ls-remote` lists it. */
export const remoteRef = z.object({
  name: z.string(),
  type: z.enum(["tag", "branch"]),
  /** the commit (annotated tags are peeled) */
  sha: z.string(),
  /** from GitHub's API when a token is set and the remote is on GitHub */
  commit: z.object({ date: z.string().nullable(), author: z.string().nullable(), message: z.string().nullable() }).optional(),
});
export type RemoteRef = z.infer<typeof remoteRef>;
export const appRefsQuery = z.object({ type: z.enum(["tag", "branch", "all"]).default("all") });
export const appRefs = z.object({ app: z.string(), url: z.string(), refs: z.array(remoteRef) });
