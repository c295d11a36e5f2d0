import { type Job, job as jobSchema, jobLogsResponse, type storedLogEntry } from "@deploybot/protocol";
import { z } from "zod";
import { type ApiClient, usageError } from "../client";
import { type Command, type Context, seg, sleep, stringOption } from "../command";
import { duration } from "../output";

type LogEntry = z.infer<typeof storedLogEntry>;
type LogPage = z.infer<typeof jobLogsResponse>;

const jobAnswer = z.object({ job: jobSchema });
const PAGE = 1000;
// The brief's figure: quick enough to feel live, cheap for the controller (two small GETs).
export const POLL_MS = 500;

export const fetchJob = (client: ApiClient, id: string) => client.get(`/v1/jobs/${seg(id)}`, jobAnswer);

function printEntry(ctx: Context, e: LogEntry) {
  const { paint } = ctx.out;
  const text = e.stream === "system" ? paint.cyan(e.line) : e.stream === "stderr" ? paint.yellow(e.line) : e.line;
  ctx.out.line(text);
}

/** Reads the log from `after` to its current end, printing as it goes. */
async function drain(ctx: Context, client: ApiClient, id: string, after: number, collect: LogEntry[] | undefined, print: boolean) {
  for (;;) {
    const page = await client.get(`/v1/jobs/${seg(id)}/logs?after=${after}&limit=${PAGE}`, jobLogsResponse);
    for (const e of page.data.entries) {
      if (print) printEntry(ctx, e);
      collect?.push(e);
    }
    after = page.data.next;
    if (page.data.entries.length < PAGE) return { after, page: page.data };
  }
}

/**
 * Follows a job until it ends: its log from `GET .../logs?after=SEQ`, its status from
 * `GET /v1/jobs/{id}`, every POLL_MS. Log lines go to stdout (stderr under --json).
 * `finished` in a log page is read before its entries, so once it is true the page holds
 * every line the job will ever have.
 */
export async function followJob(ctx: Context, client: ApiClient, id: string, opts: { collect?: LogEntry[]; print?: boolean } = {}) {
  const print = opts.print ?? true;
  let after = -1;
  let last: LogPage;
  for (;;) {
    const drained = await drain(ctx, client, id, after, opts.collect, print);
    after = drained.after;
    last = drained.page;
    const current = await fetchJob(client, id);
    if (drained.page.finished) return { job: current, logs: { ...last, entries: opts.collect ?? [] } };
    ctx.out.progress(`${id} ${current.data.job.status} ${duration(current.data.job.createdAt, null)}`);
    await sleep(POLL_MS, ctx.signal);
  }
}

export function describeEnd(ctx: Context, job: Job): number {
  const took = duration(job.startedAt ?? job.createdAt, job.finishedAt);
  if (job.status === "succeeded") {
    ctx.out.note(`job ${job.id} ${ctx.out.status(job.status)} in ${took}`);
    return 0;
  }
  ctx.out.note(`job ${job.id} ${ctx.out.status(job.status)} after ${took}${job.error ? `: ${job.error}` : ""}`);
  return 1;
}

export const logs: Command = {
  name: "logs",
  summary: "Print a job's log; with -f, keep printing until the job ends.",
  usage: "--job ID [-f]",
  options: {
    job: { type: "string", value: "ID", description: "the job (also accepted as the only argument)" },
    follow: { type: "boolean", short: "f", description: "follow the log live until the job ends; exit 1 unless it succeeded" },
  },
  positionals: { names: ["JOB"], required: 0 },
  notes: [
    "Without -f the exit code is 0 whatever the job's state. With --json the whole log is one",
    "document ({jobId, entries, next, truncated, finished}); with -f it is printed when the job ends.",
  ],
  examples: ["deploybot logs --job job_01J9Z8 -f", "deploybot logs job_01J9Z8 --json | jq -r '.entries[].line'"],
  async run(ctx, values, positionals) {
    const id = stringOption(values, "job") ?? positionals[0];
    if (!id) throw usageError("missing --job ID\nusage: deploybot logs --job ID [-f]");
    if (stringOption(values, "job") && positionals[0]) throw usageError("give the job once: --job ID or JOB, not both");
    const client = ctx.client();
    const collect: LogEntry[] = [];

    if (values.follow) {
      // under --json the lines still stream, to stderr, so a CI log shows progress
      const { job, logs } = await followJob(ctx, client, id, { collect });
      if (ctx.out.json) ctx.out.printJson(logs);
      return describeEnd(ctx, job.data.job);
    }

    const { after, page } = await drain(ctx, client, id, -1, collect, !ctx.out.json);
    if (ctx.out.json) ctx.out.printJson({ ...page, entries: collect, next: after });
    else if (collect.length === 0) ctx.out.note(`job ${id} has no log lines yet`);
    if (page.truncated && !ctx.out.json) ctx.out.note("the log was truncated at the controller's size cap");
    return 0;
  },
};
