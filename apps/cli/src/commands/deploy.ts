import { job as jobSchema } from "@deploybot/protocol";
import { z } from "zod";
import { usageError } from "../client";
import { type Command, intOption, listOption, requiredOption, stringOption } from "../command";
import { deploymentAnswer, followDeployment, printDetached } from "./deployments";
import { absentHosts } from "./hosts";
import { describeEnd, followJob } from "./logs";

const jobAnswer = z.object({ job: jobSchema });

export const deploy: Command = {
  name: "deploy",
  summary: "Deploy an app (on all its hosts, or --host ...) and follow it live until it ends.",
  usage: "APP [--ref REF | --sha SHA | --image IMAGE | --image-id ID] [--host H ...] [--detach]  |  --repo REPO --ref REF --host HOST",
  positionals: { names: ["APP"], required: 0 },
  options: {
    ref: { type: "string", value: "REF", description: "branch or tag to deploy (default: the app's branch)" },
    sha: { type: "string", value: "SHA", description: "a commit sha to deploy" },
    image: { type: "string", value: "IMAGE", description: "run this image as it is, no build" },
    "image-id": { type: "string", value: "ID", description: "run an image of the catalog (deploybot images, deploybot build)" },
    host: { type: "string", value: "H", multiple: true, description: "only these hosts (repeat for several; default: the app's hosts)" },
    detach: { type: "boolean", short: "d", description: "print the deployment (or job) id and return at once" },
    repo: { type: "string", value: "REPO", description: "single-job form: GitHub full name as in config/apps.yaml, e.g. acme/web" },
    timeout: { type: "string", value: "SECONDS", description: "single-job form: execution timeout (default: the controller's)" },
  },
  notes: [
    "deploybot deploy APP creates a deployment (POST /v1/deployments): one job per host, after a",
    "build when the app has an image repository. It prints status changes to stderr and every",
    "job's log to stdout (each line after its host when there are several), live over SSE.",
    "Exit 0 when the deployment ends succeeded, 1 when failed, superseded or cancelled.",
    "",
    "The single-job form (--repo, --ref and one --host) submits one job (POST /v1/jobs); an",
    "identical active job is followed instead of a duplicate; exit 1 unless the job succeeds.",
    "",
    "With --detach the id alone goes to stdout: id=$(deploybot deploy web --detach).",
    "Ctrl-C stops following (exit 130); the deployment goes on.",
  ],
  examples: [
    "deploybot deploy web --ref v1.4.2",
    "deploybot deploy web --image-id img_01JD3K2M4N5P6Q7R8S9T0V1W2X",
    "deploybot deploy api --image 127.0.0.1:5000/acme/api:1.2 --host api-1 --detach --json",
    "deploybot deploy --repo acme/web --ref main --host web-1",
  ],
  async run(ctx, values, [app]) {
    if (stringOption(values, "repo") === undefined) {
      if (app === undefined) throw usageError("missing APP\nusage: deploybot deploy APP [--ref REF | --sha SHA | --image IMAGE] [--host H ...]\nsee 'deploybot deploy --help'");
      if (values.timeout !== undefined) throw usageError("--timeout goes with the single-job form (--repo --ref --host)");
      const given = (["ref", "sha", "image", "image-id"] as const).filter((k) => stringOption(values, k) !== undefined);
      if (given.length > 1) throw usageError(`give at most one of --ref, --sha, --image, --image-id (got ${given.map((k) => `--${k}`).join(" and ")})`);
      const hosts = listOption(values, "host");
      const body = {
        app,
        ref: stringOption(values, "ref"),
        sha: stringOption(values, "sha"),
        image: stringOption(values, "image"),
        imageId: stringOption(values, "image-id"),
        hosts: hosts.length > 0 ? hosts : undefined,
      };
      const client = ctx.client();
      const created = await client.post("/v1/deployments", deploymentAnswer, body);
      if (values.detach) return printDetached(ctx, created, "created");
      return followDeployment(ctx, client, created);
    }

    if (app !== undefined) throw usageError(`give the app (${app}) or --repo, not both`);
    for (const k of ["sha", "image", "image-id"]) if (values[k] !== undefined) throw usageError(`--${k} needs the deployment form: deploybot deploy APP --${k} ...`);
    const hosts = listOption(values, "host");
    if (hosts.length > 1) throw usageError("the single-job form takes one --host; for several: deploybot deploy APP --host A --host B");
    if (hosts.length === 0) requiredOption(this, values, "host");
    const body = {
      repo: requiredOption(this, values, "repo"),
      ref: requiredOption(this, values, "ref"),
      host: hosts[0]!,
      timeoutSeconds: intOption(values, "timeout", 1, 86_400),
    };
    const client = ctx.client();
    const created = await client.post("/v1/jobs", jobAnswer, body);
    const { job } = created.data;
    const fresh = created.status === 201;

    if (values.detach) {
      if (ctx.out.json) ctx.out.printJson(created.raw);
      else {
        ctx.out.note(`${fresh ? "queued" : "already active:"} ${describe(job)} (${ctx.out.status(job.status)}); follow: deploybot logs --job ${job.id} -f`);
        ctx.out.line(job.id);
      }
      return 0;
    }

    ctx.out.note(`${fresh ? "queued" : "following the identical active job"} ${describe(job)}`);
    if (job.status === "pending") for (const why of await absentHosts(client, [body.host])) ctx.out.note(`  ${why}`);
    const end = await followJob(ctx, client, job.id);
    if (ctx.out.json) ctx.out.printJson(end.job.raw);
    return describeEnd(ctx, end.job.data.job);
  },
};

function describe(job: z.infer<typeof jobSchema>): string {
  const source = job.spec.source;
  const ref = source?.type === "git" ? `@${source.ref}` : "";
  const target = "host" in job.target ? job.target.host : `labels ${job.target.labels.join(",")}`;
  return `job ${job.id}: ${job.kind} ${job.app}${ref} on ${target}`;
}
