import { type RunSpec, runSpec } from "@deploybot/protocol";
import { pruneAppImages } from "../docker/pruneImages";
import { prepareMounts } from "../docker/volumes";
import { imageResult, prepareImage } from "./prepareImage";
import { type RollOutPlan, rollOut } from "./rollOut";
import type { ClaimedJob, JobContext, JobOutcome } from "./types";

/** deploy = source -> image -> roll the app's containers over to it (rollOut). */
export async function deployJob(job: ClaimedJob, ctx: JobContext, workDir: string): Promise<JobOutcome> {
  const run: RunSpec = job.spec.run ?? runSpec.parse({});
  const { domains = [], proxy } = job.spec;
  if (domains.length > 0 && !proxy) return { ok: false, error: "deploy: an app with domains needs proxy.port (the port it listens on in its container)" };
  // A refused bind fails the job before anything is built, pulled or started.
  const mounts = await prepareMounts(ctx.docker, job.app, run, ctx.mountPolicy);
  if (!mounts.ok) return { ok: false, error: `deploy: ${mounts.reason}; nothing was started` };
  const prepared = await prepareImage(job, ctx, workDir);
  if (!prepared.ok) return { ok: false, error: prepared.reason };
  const release = job.spec.release ?? prepared.version;
  const result: Record<string, unknown> = { ...imageResult(prepared), release };
  const plan: RollOutPlan = {
    app: job.app,
    release,
    image: prepared.image,
    run,
    secretEnv: job.spec.secretEnv,
    replicas: job.spec.replicas ?? 1,
    jobId: job.id,
    attempt: job.attempt,
    ...(domains.length > 0 && proxy ? { route: { domains, proxy, tls: job.spec.tls ?? "auto", ...(job.spec.acme ? { acme: job.spec.acme } : {}) } } : {}),
  };
  const outcome = await rollOut(ctx, plan);
  if (!outcome.ok) {
    const keep = outcome.keepContainers ? { keepContainers: outcome.keepContainers } : {};
    return { ok: false, error: outcome.error, result: { ...result, ...(outcome.lastLogLines ? { lastLogLines: outcome.lastLogLines } : {}) }, ...keep };
  }
  ctx.log("system", `deploy: ${job.app} release ${release} is serving (${outcome.containers.map((c) => c.slice(0, 12)).join(", ")})`);
  if (job.spec.keepImages) {
    const repositories = [prepared.image, job.spec.image, `deploybot/${job.app.toLowerCase()}`].filter((r): r is string => !!r);
    const protect = [...(job.spec.protectImages ?? []), prepared.image];
    result.prunedImages = (await pruneAppImages(ctx.docker, { repositories, keep: job.spec.keepImages, protect }, ctx.log)).length;
  }
  return {
    ok: true,
    result: {
      ...result,
      containerId: outcome.containers[0],
      containers: outcome.containers,
      replaced: outcome.removed,
      ...(outcome.healthUrl ? { healthUrl: outcome.healthUrl } : {}),
      ...(plan.route ? { domains: plan.route.domains } : {}),
    },
  };
}
