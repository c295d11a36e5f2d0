import { appLogLine, appLogSilentHost, type Job, jobPage, job as jobSchema, jobLogsResponse, logStreamEnd, logStreamLine, SINCE_FORMS, sinceMs, type storedLogEntry } from "@deploybot/protocol";
import { z } from "zod";
import { type ApiClient, CliError, ExitCode, usageError } from "../client";
import { type Command, type Context, intOption, seg, stringOption } from "../command";
import { duration } from "../output";
import { followEvents, type SseEvent } from "../sse";

type LogEntry = z.infer<typeof storedLogEntry>;
type LogPage = z.infer<typeof jobLogsResponse>;

const jobAnswer = z.object({ job: jobSchema });
const PAGE = 1000;

export const fetchJob = (client: ApiClient, id: string) => client.get(`/v1/jobs/${seg(id)}`, jobAnswer);

export function printEntry(ctx: Context, e: LogEntry, prefix = "") {
  const { paint } = ctx.out;
  const text = e.stream === "system" ? paint.cyan(e.line) : e.stream === "stderr" ? paint.yellow(e.line) : e.line;
  ctx.out.line(prefix ? `${paint.dim(prefix)}${text}` : text);
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

const logEvent = logStreamLine;
const endEvent = logStreamEnd;

/** Reads an event's JSON data; a malformed one is a version mismatch, not a crash. */
export function eventData<S extends z.ZodType>(schema: S, event: SseEvent): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(event.data);
  } catch {
    raw = undefined;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new CliError(ExitCode.api, `unexpected '${event.type}' event in the log stream: ${event.data.slice(0, 200)} (controller and CLI versions differ?)`);
  return parsed.data;
}

export interface FollowOptions {
  collect?: LogEntry[];
  print?: boolean;
  /** put before each printed line, e.g. "web-1 | " */
  prefix?: string;
  /** stops following without an error (the caller's own reasons); Ctrl-C is ctx.signal */
  signal?: AbortSignal;
}

/**
 * Streams one job's log over SSE (`GET /v1/logs/stream?job=ID`) until the controller says
 * `end`, resuming with Last-Event-ID after a dropped connection. Lines are printed once each,
 * in seq order: a seq at or before the last one printed is skipped.
 */
export async function streamJobLog(ctx: Context, client: ApiClient, id: string, opts: FollowOptions = {}) {
  const print = opts.print ?? true;
  let last = -1;
  let status: string | undefined;
  await followEvents(client, {
    path: `/v1/logs/stream?job=${encodeURIComponent(id)}`,
    signal: opts.signal ? AbortSignal.any([ctx.signal, opts.signal]) : ctx.signal,
    onEvent(event) {
      if (event.type === "log") {
        const e = eventData(logEvent, event);
        if (e.seq <= last) return undefined;
        last = e.seq;
        const entry = { seq: e.seq, ts: e.ts, stream: e.stream, line: e.line };
        opts.collect?.push(entry);
        if (print) printEntry(ctx, entry, opts.prefix);
      } else if (event.type === "end") {
        status = eventData(endEvent, event).status;
        return "stop";
      }
      return undefined;
    },
    onReconnect(reason) {
      ctx.out.note(ctx.out.paint.dim(`log stream of ${id}: ${reason}; resuming after line ${last}`));
    },
  });
  return { last, status };
}

/**
 * Follows a job until it ends: its log over SSE, then its final state from `GET /v1/jobs/{id}`.
 * Log lines go to stdout (stderr under --json).
 */
export async function followJob(ctx: Context, client: ApiClient, id: string, opts: FollowOptions = {}) {
  const collect = opts.collect ?? [];
  const { last } = await streamJobLog(ctx, client, id, { ...opts, collect });
  const [current, tail] = await Promise.all([fetchJob(client, id), client.get(`/v1/jobs/${seg(id)}/logs?after=${last}&limit=1`, jobLogsResponse)]);
  const logs: LogPage = { jobId: id, entries: collect, next: Math.max(last, tail.data.next), truncated: tail.data.truncated, finished: true };
  return { job: current, logs };
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

// A host+app stream replays this many recent jobs; `logs --host --app` without -f prints as many.
const HISTORY_JOBS = 5;

export const logs: Command = {
  name: "logs",
  summary: "Print an app's own output (merged across hosts), a job's log, or an app's recent job logs on a host; -f keeps printing live.",
  usage: "APP [-f] [--host H] [--since 10m] [--tail N]  |  JOB | --job ID [-f]  |  --host HOST --app APP [-f]",
  options: {
    job: { type: "string", value: "ID", description: "the job (also accepted as the only argument: ids start with job_)" },
    host: { type: "string", value: "HOST", description: "APP: only this host; with --app: every job of the app on this host" },
    app: { type: "string", value: "APP", description: "with --host: the app's job logs (deploys, runs) on that host" },
    since: { type: "string", value: "DURATION", description: "APP: lines since 10m, 2h, 1d or an ISO time" },
    tail: { type: "string", value: "N", description: "APP: the last N lines (default: 100 with -f, else all kept, at most 10,000)" },
    follow: { type: "boolean", short: "f", description: "follow live (APP or host+app: until Ctrl-C; a job: until it ends, exit 1 unless it succeeded)" },
  },
  positionals: { names: ["APP|JOB"], required: 0 },
  notes: [
    "APP: the containers' own stdout/stderr, which agents ship continuously, each line after its",
    "host ('web-1 | ...'), oldest first (GET /v1/apps/{app}/logs; -f: the same as Server-Sent",
    "Events, resumed with Last-Event-ID, so no line is lost or printed twice). The controller keeps",
    "DEPLOYBOT_APP_LOG_LINES lines per app and host. With --json: {lines, next}; with -f --json one",
    "JSON object per line ({id, host, container, ts, stream, line}).",
    "",
    "JOB (an id starting with job_) or --job ID: the job's log. --job without -f: exit 0 whatever the",
    "job's state. With --json the whole log is one document ({jobId, entries, next, truncated,",
    "finished}); with -f it is printed when the job ends.",
    `--host H --app A (no APP argument): the app's job logs on that host — the last ${HISTORY_JOBS} jobs, oldest`,
    "first, each after a '== job ID' line; with --json: {host, app, jobs: [{job, entries}]}. With",
    "-f --json: one JSON object per line ({jobId, seq, ts, stream, line}).",
  ],
  examples: [
    "deploybot logs web -f",
    "deploybot logs web --host web-1 --since 10m",
    "deploybot logs web --tail 50 --json | jq -r '.lines[].line'",
    "deploybot logs job_01J9Z8 -f",
    "deploybot logs --host web-1 --app web -f",
  ],
  async run(ctx, values, positionals) {
    const host = stringOption(values, "host");
    const app = stringOption(values, "app");
    const jobOpt = stringOption(values, "job");
    const first = positionals[0];
    if (first !== undefined && !first.startsWith("job_") && !jobOpt && app === undefined) {
      return appLogs(ctx, first, { host, since: stringOption(values, "since"), tail: intOption(values, "tail", 1, 10_000), follow: values.follow === true });
    }
    if (values.since !== undefined || values.tail !== undefined) throw usageError("--since and --tail go with an app's output: deploybot logs APP --since 10m");
    if (host !== undefined || app !== undefined) {
      if (jobOpt || first) throw usageError("give either --job ID, or --host HOST with --app APP\nusage: deploybot logs --job ID [-f] | --host HOST --app APP [-f]");
      if (!host || !app) throw usageError(`missing --${host ? "app" : "host"}: --host and --app go together (an app's own output: deploybot logs APP --host HOST)\nusage: deploybot logs --host HOST --app APP [-f]`);
      return values.follow ? followHostApp(ctx, host, app) : hostAppHistory(ctx, host, app);
    }
    const id = jobOpt ?? first;
    if (!id) throw usageError("missing APP or JOB\nusage: deploybot logs APP [-f] | JOB | --job ID [-f] | --host HOST --app APP [-f]");
    if (jobOpt && first) throw usageError("give the job once: --job ID or JOB, not both");
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

type AppLine = z.infer<typeof appLogLine>;
// silentHosts: from a controller that knows them (an older one leaves it out)
const appLogPage = z.object({ lines: z.array(appLogLine), next: z.number(), silentHosts: z.array(appLogSilentHost).default([]) });

function printAppLine(ctx: Context, l: AppLine) {
  const text = l.stream === "stderr" ? ctx.out.paint.yellow(l.line) : l.line;
  ctx.out.line(`${ctx.out.paint.dim(`${l.host} | `)}${text}`);
}

/** An app's own output: the stored lines, and with `follow` every new one over SSE until Ctrl-C. */
async function appLogs(ctx: Context, app: string, o: { host?: string; since?: string; tail?: number; follow: boolean }): Promise<number> {
  const client = ctx.client();
  const q = new URLSearchParams();
  if (o.host) q.set("host", o.host);
  if (o.since) {
    if (sinceMs(o.since, Date.now()) === null) throw usageError(`--since must look like ${SINCE_FORMS}, not '${o.since}'`);
    q.set("since", o.since);
  }
  if (o.tail !== undefined) q.set("tail", String(o.tail));
  if (!o.follow) {
    const page = await client.get(`/v1/apps/${seg(app)}/logs?${q}`, appLogPage);
    if (ctx.out.json) {
      ctx.out.printJson(page.raw);
      return 0;
    }
    for (const l of page.data.lines) printAppLine(ctx, l);
    // a host whose agent never ships output is named with why, not lumped into "no output yet"
    for (const silent of page.data.silentHosts) ctx.out.note(ctx.out.paint.yellow(silent.message));
    if (page.data.lines.length === 0 && page.data.silentHosts.length === 0) ctx.out.note(`no output from ${app}${o.host ? ` on ${o.host}` : ""} yet`);
    return 0;
  }
  q.set("follow", "1");
  let last = 0;
  await followEvents(client, {
    path: `/v1/apps/${seg(app)}/logs?${q}`,
    signal: ctx.signal,
    onEvent(event) {
      if (event.type === "notice") ctx.out.note(ctx.out.paint.yellow(eventData(appLogSilentHost, event).message));
      if (event.type !== "log") return undefined;
      const l = eventData(appLogLine, event);
      if (l.id <= last) return undefined;
      last = l.id;
      if (ctx.out.json) ctx.out.jsonLine(l);
      else printAppLine(ctx, l);
      return undefined;
    },
    onReconnect(reason) {
      ctx.out.note(ctx.out.paint.dim(`output of ${app}: ${reason}; resuming after line ${last}`));
    },
  });
  return 0;
}

const jobHeader = (ctx: Context, job: Pick<Job, "id"> & Partial<Pick<Job, "status" | "kind">>) =>
  ctx.out.line(ctx.out.paint.dim(`== job ${job.id}${job.kind ? ` (${job.kind}${job.status ? `, ${job.status}` : ""})` : ""}`));

/** The last few jobs of an app on a host, oldest first, each job's whole log: what the stream would replay. */
async function hostAppHistory(ctx: Context, host: string, app: string): Promise<number> {
  const client = ctx.client();
  const q = new URLSearchParams({ host, app, limit: String(HISTORY_JOBS) });
  const page = await client.get(`/v1/jobs?${q}`, jobPage);
  const jobs = [...page.data.jobs].reverse();
  const out: { job: Job; entries: LogEntry[] }[] = [];
  for (const job of jobs) {
    if (!ctx.out.json) jobHeader(ctx, job);
    const entries: LogEntry[] = [];
    await drain(ctx, client, job.id, -1, entries, !ctx.out.json);
    out.push({ job, entries });
  }
  if (ctx.out.json) ctx.out.printJson({ host, app, jobs: out });
  else if (jobs.length === 0) ctx.out.note(`no jobs of app ${app} on host ${host} yet`);
  return 0;
}

/** `GET /v1/logs/stream?host=&app=`: the recent history, then every new job's lines, until Ctrl-C. */
async function followHostApp(ctx: Context, host: string, app: string): Promise<number> {
  const client = ctx.client();
  const seen = new Map<string, number>();
  let current: string | undefined;
  await followEvents(client, {
    path: `/v1/logs/stream?${new URLSearchParams({ host, app })}`,
    signal: ctx.signal,
    onEvent(event) {
      if (event.type === "log") {
        const e = eventData(logEvent, event);
        const jobId = e.jobId ?? "?";
        if (e.seq <= (seen.get(jobId) ?? -1)) return undefined;
        seen.set(jobId, e.seq);
        if (ctx.out.json) {
          ctx.out.jsonLine({ jobId, seq: e.seq, ts: e.ts, stream: e.stream, line: e.line });
          return undefined;
        }
        if (jobId !== current) jobHeader(ctx, { id: jobId });
        current = jobId;
        printEntry(ctx, e);
      } else if (event.type === "job") {
        const end = eventData(endEvent, event);
        if (!ctx.out.json) ctx.out.note(`job ${end.jobId} ${ctx.out.status(end.status)}`);
      }
      return undefined;
    },
    onReconnect(reason) {
      ctx.out.note(ctx.out.paint.dim(`log stream of ${app} on ${host}: ${reason}; resuming`));
    },
  });
  return 0;
}
