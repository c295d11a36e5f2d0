import path from "node:path";
import { buildImage } from "../docker/buildImage";
import { authFor } from "../docker/registryAuth";
import { pullImage, pushImage } from "../docker/registryTransfer";
import { materializeSource } from "../sources/materializeSource";
import { PathRefused, resolveInside } from "../sources/safePaths";
import type { ClaimedJob, JobContext } from "./types";

export type PreparedImage =
  | {
      ok: true;
      /** what to run: a local tag of the build, or the pulled reference */
      image: string;
      imageId: string;
      version: string;
      sha?: string;
      digest?: string;
      pushed?: string[];
      build?: { steps: number; cachedSteps: number; seconds: number };
    }
  | { ok: false; reason: string };

/** Tags must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; job ids are the controller's business. */
const tagSafe = (s: string): string => s.replace(/[^A-Za-z0-9_.-]/g, "-").replace(/^[.-]/, "_").slice(0, 128);

/**
 * Source -> runnable image, shared by deploy, build and run jobs: build the tree (and push both
 * `:<version>` and `:latest` when `spec.image` names a repository), or pull an image source.
 * The version is `spec.version`, else the git sha, else the job id.
 */
export async function prepareImage(job: ClaimedJob, ctx: JobContext, workDir: string): Promise<PreparedImage> {
  const { spec } = job;
  const log = ctx.log;
  if (!spec.source) {
    if (!spec.image) return { ok: false, reason: "job has neither a source nor an image" };
    const ref = `${spec.image}:${spec.version ?? "latest"}`;
    const pulled = await pullImage(ctx.docker, ref, authFor(ref, spec.registry, ctx.registries), log, ctx.signal);
    return pulled.ok ? { ok: true, image: ref, imageId: pulled.imageId, version: spec.version ?? "latest", digest: pulled.digest } : pulled;
  }

  const tree = await materializeSource(spec.source, { app: job.app, dest: path.join(workDir, "src"), cacheRoot: ctx.cacheRoot }, log, ctx.signal);
  if (!tree.ok) return tree;
  if (tree.kind === "image") {
    const pulled = await pullImage(ctx.docker, tree.image, authFor(tree.image, spec.registry, ctx.registries), log, ctx.signal);
    return pulled.ok ? { ok: true, image: tree.image, imageId: pulled.imageId, version: spec.version ?? tagSafe(job.id), digest: pulled.digest } : pulled;
  }

  const version = spec.version ?? tree.sha ?? tagSafe(job.id);
  const build = spec.build ?? { dockerfile: "Dockerfile", context: ".", args: {} };
  let contextDir: string;
  try {
    contextDir = await resolveInside(tree.dir, build.context);
    await resolveInside(contextDir, build.dockerfile);
  } catch (err) {
    if (err instanceof PathRefused) return { ok: false, reason: `build spec refused: ${err.message}` };
    throw err;
  }
  const repo = spec.image ?? `deploybot/${job.app.toLowerCase()}`;
  const tags: [string, ...string[]] = spec.image ? [`${repo}:${version}`, `${repo}:latest`] : [`${repo}:${version}`];
  const started = Date.now();
  log("system", `build: ${tags.join(", ")} from ${build.context}/${build.dockerfile}`);
  const built = await buildImage(
    ctx.docker,
    // No build-time labels: the classic builder turns each into an extra step, and one that
    // carries the version is a cache miss on every build (measured ~0.1-0.25 s per step).
    { contextDir, dockerfile: build.dockerfile, args: build.args, target: build.target, tags, ...(ctx.recordLayer ? { onLayer: ctx.recordLayer } : {}) },
    log,
    ctx.signal,
  );
  if (!built.ok) return built;
  const stats = { steps: built.steps, cachedSteps: built.cached, seconds: (Date.now() - started) / 1000 };
  log("system", `build: ${built.imageId} in ${stats.seconds.toFixed(1)}s (${built.cached}/${built.steps} steps from cache)`);
  const image = tags[0];
  if (!spec.image) return { ok: true, image, imageId: built.imageId, version, sha: tree.sha, build: stats };

  const auth = authFor(repo, spec.registry, ctx.registries);
  let digest: string | undefined;
  for (const tag of [version, "latest"]) {
    const pushed = await pushImage(ctx.docker, { imageId: built.imageId, repo, tag, auth }, log, ctx.signal);
    if (!pushed.ok) return pushed;
    digest ??= pushed.digest;
  }
  return { ok: true, image, imageId: built.imageId, version, sha: tree.sha, digest, pushed: tags, build: stats };
}

/** The fields every image-producing job reports. */
export const imageResult = (p: Extract<PreparedImage, { ok: true }>): Record<string, unknown> => ({
  image: p.image,
  imageId: p.imageId,
  version: p.version,
  ...(p.sha ? { sha: p.sha } : {}),
  ...(p.digest ? { digest: p.digest } : {}),
  ...(p.pushed ? { pushed: p.pushed } : {}),
  ...(p.build ? { build: p.build } : {}),
});
