import { imageResult, prepareImage } from "./prepareImage";
import type { ClaimedJob, JobContext, JobOutcome } from "./types";

/**
 * build = source -> image -> push, nothing runs. The seeds' `POST /v1/builds {name, version,
 * files}` arrives here as a `files` source with `spec.image = <registry>/<name>`, and leaves
 * `<registry>/<name>:<version>` and `:latest` in the registry.
 */
export async function buildJob(job: ClaimedJob, ctx: JobContext, workDir: string): Promise<JobOutcome> {
  if (!job.spec.source) return { ok: false, error: "build job has no source" };
  const prepared = await prepareImage(job, ctx, workDir);
  if (!prepared.ok) return { ok: false, error: prepared.reason };
  if (!job.spec.image) ctx.log("system", "build: no spec.image, the image stays on this host only");
  return { ok: true, result: imageResult(prepared) };
}
