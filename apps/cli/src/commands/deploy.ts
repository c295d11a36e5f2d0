import { job as jobSchema } from "@deploybot/protocol";
import { z } from "zod";
import { type Command, intOption, requiredOption } from "../command";
import { describeEnd, followJob } from "./logs";

const jobAnswer = z.object({ job: jobSchema });

export const deploy: Command = {
  name: "deploy",
  summary: "Deploy the app mapped to a repo at a ref on a host, and follow its log until it ends.",
  usage: "--repo REPO --ref REF --host HOST [--detach] [--timeout SECONDS]",
  options: {
    repo: { type: "string", value: "REPO", description: "GitHub full name as in config/apps.yaml, e.g. acme/web" },
    ref: { type: "string", value: "REF", description: "branch, tag or commit sha" },
    host: { type: "string", value: "HOST", description: "the agent host name to deploy on" },
    detach: { type: "boolean", short: "d", description: "print the job id and return at once" },
    timeout: { type: "string", value: "SECONDS", description: "execution timeout for this job (default: the controller's)" },
  },
  notes: [
    "Exit 0 when the job succeeds, 1 when it ends failed, cancelled, timed_out or lost.",
    "An identical active job (same repo, ref and host) is followed instead of a duplicate.",
    "With --detach the job id alone goes to stdout: id=$(deploybot deploy ... --detach).",
    "Ctrl-C stops following (exit 130); the job goes on: deploybot cancel JOB stops it.",
  ],
  examples: ["deploybot deploy --repo acme/web --ref main --host web-1", "deploybot deploy --repo acme/web --ref v1.4.2 --host web-1 --detach --json"],
  async run(ctx, values) {
    const body = {
      repo: requiredOption(this, values, "repo"),
      ref: requiredOption(this, values, "ref"),
      host: requiredOption(this, values, "host"),
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
