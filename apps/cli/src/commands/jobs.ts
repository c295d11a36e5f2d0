import { isFinal, type Job, job as jobSchema, jobPage, jobStatus, jobStatuses } from "@deploybot/protocol";
import { z } from "zod";
import { usageError } from "../client";
import { type Command, type Context, intOption, seg, stringOption } from "../command";
import { age, duration } from "../output";
import { absentHosts } from "./hosts";
import { fetchJob } from "./logs";

const jobAnswer = z.object({ job: jobSchema });

const target = (job: Job) => ("host" in job.target ? job.target.host : `labels:${job.target.labels.join(",")}`);
const ref = (job: Job) => (job.spec.source?.type === "git" ? job.spec.source.ref : job.spec.source?.type ?? "-");

export const status: Command = {
  name: "status",
  summary: "Show one job: state, target, timings and error.",
  usage: "JOB",
  positionals: { names: ["JOB"], required: 1 },
  notes: ["Exit 0 whatever state the job is in; read .job.status from --json in scripts."],
  examples: ["deploybot status job_01J9Z8", "deploybot status job_01J9Z8 --json | jq -r .job.status"],
  async run(ctx, _values, [id]) {
    const answer = await fetchJob(ctx.client(), id!);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const job = answer.data.job;
    printJob(ctx, job);
    if (job.status === "pending" && "host" in job.target) for (const why of await absentHosts(ctx.client(), [job.target.host])) ctx.out.note(why);
    return 0;
  },
};

export function printJob(ctx: Context, job: Job) {
  const when = (iso: string | null) => (iso ? `${iso} (${age(iso)})` : "-");
  ctx.out.fields([
    ["job", job.id],
    ["status", `${ctx.out.status(job.status)}${job.cancelRequested && job.status !== "cancelled" ? " (cancel requested)" : ""}`],
    ["app", job.app],
    ["kind", job.kind],
    ["ref", ref(job)],
    ["target", target(job)],
    ["agent", job.agentId ?? "-"],
    // A job is handed out again only when its agent never started it; "1/3" on a failed job
    // read as if two retries were still to come.
    ["attempts", isFinal(job.status) ? String(job.attempts) : `${job.attempts} of at most ${job.maxAttempts}`],
    ["created", when(job.createdAt)],
    ["started", when(job.startedAt)],
    ["finished", when(job.finishedAt)],
    ["duration", duration(job.startedAt, job.finishedAt)],
    ["log lines", String(job.logLines)],
    ...(job.error ? ([["error", ctx.out.paint.red(job.error)]] as [string, string][]) : []),
  ]);
}

export const jobs: Command = {
  name: "jobs",
  summary: "List jobs, newest first.",
  usage: "[--status S] [--host H] [--app A] [--limit N] [--cursor C]",
  options: {
    status: { type: "string", value: "S", description: `only jobs in this state: ${jobStatuses.join(", ")}` },
    host: { type: "string", value: "H", description: "only jobs targeting this host" },
    app: { type: "string", value: "A", description: "only jobs of this app" },
    limit: { type: "string", value: "N", description: "at most N jobs, 1 to 200 (default 50)" },
    cursor: { type: "string", value: "C", description: "continue after this job id (from the previous page)" },
  },
  examples: ["deploybot jobs --status running", "deploybot jobs --app web --limit 5 --json | jq -r '.jobs[].id'"],
  async run(ctx, values) {
    const query = new URLSearchParams();
    const wanted = stringOption(values, "status");
    if (wanted !== undefined) {
      if (!jobStatus.safeParse(wanted).success) throw usageError(`--status must be one of ${jobStatuses.join(", ")}; got '${wanted}'`);
      query.set("status", wanted);
    }
    for (const key of ["host", "app", "cursor"] as const) {
      const v = stringOption(values, key);
      if (v !== undefined) query.set(key, v);
    }
    const limit = intOption(values, "limit", 1, 200);
    if (limit !== undefined) query.set("limit", String(limit));

    const qs = query.toString();
    const answer = await ctx.client().get(`/v1/jobs${qs ? `?${qs}` : ""}`, jobPage);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const page = answer.data;
    if (page.jobs.length === 0) {
      ctx.out.note("no jobs match");
      return 0;
    }
    ctx.out.table(
      ["JOB", "STATUS", "APP", "KIND", "REF", "TARGET", "CREATED", "DURATION"],
      page.jobs.map((j) => [j.id, ctx.out.status(j.status), j.app, j.kind, ref(j), target(j), age(j.createdAt), duration(j.startedAt, j.finishedAt)]),
    );
    if (page.nextCursor) ctx.out.note(`more: deploybot jobs --cursor ${page.nextCursor}${qs ? " (with the same filters)" : ""}`);
    return 0;
  },
};

export const cancel: Command = {
  name: "cancel",
  summary: "Cancel a job: a pending one at once, a running one when its agent stops it.",
  usage: "JOB",
  positionals: { names: ["JOB"], required: 1 },
  notes: ["A job that already ended answers 409 job_finished (exit 6)."],
  examples: ["deploybot cancel job_01J9Z8"],
  async run(ctx, _values, [id]) {
    const answer = await ctx.client().post(`/v1/jobs/${seg(id!)}/cancel`, jobAnswer);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const job = answer.data.job;
    if (job.status === "cancelled") ctx.out.line(`job ${job.id} ${ctx.out.status("cancelled")}`);
    else ctx.out.line(`job ${job.id} is ${ctx.out.status(job.status)}; cancel requested, its agent will stop it (deploybot logs --job ${job.id} -f)`);
    return 0;
  },
};
