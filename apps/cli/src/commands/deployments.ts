import { type Deployment, deployment as deploymentSchema } from "@deploybot/protocol";
import { z } from "zod";
import { type ApiAnswer, type ApiClient, CliError, ExitCode, usageError } from "../client";
import { type Command, type Context, intOption, seg, sleep, stringOption } from "../command";
import { age, duration } from "../output";
import { followEvents } from "../sse";
import { absentHosts } from "./hosts";
import { streamJobLog } from "./logs";

export const deploymentAnswer = z.object({ deployment: deploymentSchema });
const deploymentPage = z.object({ deployments: z.array(deploymentSchema), nextCursor: z.string().nullable() });

const FINAL = new Set(["succeeded", "failed", "superseded", "cancelled"]);
// Controllers before GET /v1/events: the deployment is polled this often instead.
const POLL_MS = 500;
// After the deployment ends, a job's stream says `end` once its log has been quiet ~2 s.
const DRAIN_MS = 10_000;

export function describeDeployment(d: Deployment): string {
  const what = d.image ? d.image : d.sha ? d.sha.slice(0, 12) : (d.ref ?? "-");
  return `deployment ${d.id}: ${d.trigger === "rollback" ? "rollback of " : ""}${d.app} @ ${what} on ${d.hosts.join(", ")}`;
}

export function paintDeployment(ctx: Context, status: string): string {
  const { paint } = ctx.out;
  if (status === "succeeded") return paint.green(status);
  if (status === "failed") return paint.red(status);
  if (status === "superseded" || status === "cancelled") return paint.yellow(status);
  if (status === "building" || status === "deploying") return paint.cyan(status);
  return status;
}

type DeploymentJob = Deployment["jobs"][number];

/**
 * What a deployment runs, short enough for a table: the commit, else the image with its digest
 * cut to 12 hex digits (a repository@sha256:... of a catalog or registry deploy is ~100
 * characters), else the ref.
 */
const versionOf = (d: Deployment) => d.sha?.slice(0, 12) ?? (d.image ? d.image.replace(/@sha256:([0-9a-f]{12})[0-9a-f]{52}$/, "@sha256:$1") : null) ?? d.ref ?? "-";

type Answer = ApiAnswer<z.infer<typeof deploymentAnswer>>;

/**
 * Follows a deployment until it ends: its status and each job's status from `GET /v1/events`
 * (each change of the deployment or one of its jobs is read once, as it commits), each job's log
 * over its own SSE stream. Log lines go to stdout (prefixed with the host when the deployment has
 * more than one), progress to stderr. Exit 0 only on succeeded.
 */
export async function followDeployment(ctx: Context, client: ApiClient, first: Answer): Promise<number> {
  const { out } = ctx;
  let answer = first;
  const multi = first.data.deployment.hosts.length > 1;
  const width = Math.max(5, ...first.data.deployment.hosts.map((h) => h.length));
  const label = (j: DeploymentJob) => (j.kind === "build" ? "build" : (j.host ?? j.kind));
  const prefix = (j: DeploymentJob) => (multi ? `${label(j).padEnd(width)} | ` : "");

  const stopStreams = new AbortController();
  const streams = new Map<string, Promise<void>>();
  const jobStatus = new Map<string, string>();
  let lastStatus: string | undefined;

  const follow = (job: DeploymentJob) => {
    const run = streamJobLog(ctx, client, job.id, { prefix: prefix(job), signal: stopStreams.signal }).then(
      () => undefined,
      (err: unknown) => {
        if (stopStreams.signal.aborted || ctx.signal.aborted) return;
        out.note(`${label(job)}: cannot follow the log of ${job.id}: ${(err as Error).message}`);
      },
    );
    streams.set(job.id, run);
  };
  const show = (next: Answer) => {
    answer = next;
    const dep = next.data.deployment;
    if (dep.status !== lastStatus) {
      out.note(`${lastStatus === undefined ? describeDeployment(dep) : `deployment ${dep.id}`}: ${paintDeployment(ctx, dep.status)}`);
      lastStatus = dep.status;
    }
    for (const job of dep.jobs) {
      if (jobStatus.get(job.id) !== job.status) {
        out.note(`  ${label(job)}: ${job.kind} job ${job.id} ${out.status(job.status)}`);
        jobStatus.set(job.id, job.status);
      }
      if (!streams.has(job.id)) follow(job);
    }
    if (!FINAL.has(dep.status)) out.progress(`${dep.id} ${dep.status} ${duration(dep.createdAt, null)}`);
  };

  try {
    show(first);
    const waiting = first.data.deployment.jobs.filter((j) => j.status === "pending" && j.host).map((j) => j.host!);
    for (const why of await absentHosts(client, waiting)) out.note(`  ${why}`);
    if (!FINAL.has(first.data.deployment.status)) await watchDeployment(ctx, client, first.data.deployment, show);
    // the last lines arrive before each stream's `end`; never wait for ever on a stuck one
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(streams.values()), new Promise((resolve) => (timer = setTimeout(resolve, DRAIN_MS)))]);
    clearTimeout(timer);
  } finally {
    stopStreams.abort();
  }
  if (ctx.signal.aborted) throw new CliError(ExitCode.interrupted, "interrupted");

  const dep = answer.data.deployment;
  if (out.json) out.printJson(answer.raw);
  const took = duration(dep.createdAt, dep.finishedAt);
  if (dep.status === "succeeded") {
    out.note(`deployment ${dep.id} ${paintDeployment(ctx, dep.status)} in ${took}`);
    return ExitCode.ok;
  }
  out.note(`deployment ${dep.id} ${paintDeployment(ctx, dep.status)} after ${took}${dep.error ? `: ${dep.error}` : ""}`);
  return ExitCode.failed;
}

/**
 * Reads the deployment each time it or one of its jobs changes, until it ends. The read on
 * connect covers what changed before the stream opened; later changes arrive as events. A
 * controller without `GET /v1/events` (404) is polled instead.
 */
async function watchDeployment(ctx: Context, client: ApiClient, dep: Deployment, show: (a: Answer) => void): Promise<void> {
  const ended = new AbortController();
  let failure: unknown;
  let reading: Promise<void> | null = null;
  let again = false;
  const read = async () => {
    const next = await client.get(`/v1/deployments/${seg(dep.id)}`, deploymentAnswer);
    show(next);
    if (FINAL.has(next.data.deployment.status)) ended.abort();
  };
  const refresh = () => {
    if (reading) {
      again = true;
      return;
    }
    reading = (async () => {
      do {
        again = false;
        await read();
      } while (again && !ended.signal.aborted);
    })()
      .catch((err: unknown) => {
        failure = err;
        ended.abort();
      })
      .finally(() => {
        reading = null;
      });
  };
  const mine = (event: { type: string; data: string }) => {
    const data = (JSON.parse(event.data) as { data?: { id?: unknown; deploymentId?: unknown } }).data;
    return event.type === "deployment.changed" ? data?.id === dep.id : data?.deploymentId === dep.id;
  };
  try {
    await followEvents(client, {
      path: `/v1/events?app=${encodeURIComponent(dep.app)}&types=deployment.changed,job.changed`,
      signal: AbortSignal.any([ctx.signal, ended.signal]),
      onOpen: refresh,
      onEvent(event) {
        if (mine(event)) refresh();
        return undefined;
      },
      onReconnect(reason) {
        ctx.out.note(ctx.out.paint.dim(`event stream: ${reason}; resuming`));
      },
    });
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    if (!ended.signal.aborted) {
      if (!(err instanceof CliError && err.httpStatus === 404)) throw err;
      // an older controller: poll
      while (!ended.signal.aborted) {
        await sleep(POLL_MS, ctx.signal);
        await read();
      }
    }
  }
  while (reading) await reading;
  if (failure) throw failure;
}

export function printDeployment(ctx: Context, d: Deployment) {
  ctx.out.fields([
    ["deployment", d.id],
    ["status", paintDeployment(ctx, d.status)],
    ["app", d.app],
    ["trigger", `${d.trigger}${d.triggeredBy ? ` (${d.triggeredBy})` : ""}`],
    ["ref", d.ref ?? "-"],
    ["sha", d.sha ?? "-"],
    ["image", d.image ?? "-"],
    ["release", d.releaseId ?? "-"],
    ["hosts", d.hosts.join(", ")],
    ["created", `${d.createdAt} (${age(d.createdAt)})`],
    ["duration", duration(d.createdAt, d.finishedAt)],
    ...(d.error ? ([["error", ctx.out.paint.red(d.error)]] as [string, string][]) : []),
  ]);
  if (d.jobs.length > 0) {
    ctx.out.line();
    ctx.out.table(
      ["JOB", "KIND", "HOST", "STATUS"],
      d.jobs.map((j) => [j.id, j.kind, j.host ?? "-", ctx.out.status(j.status)]),
    );
  }
}

/** `--detach`: the id alone on stdout (or the API's answer under --json). */
export function printDetached(ctx: Context, answer: ApiAnswer<z.infer<typeof deploymentAnswer>>, verb: string): number {
  const d = answer.data.deployment;
  if (ctx.out.json) ctx.out.printJson(answer.raw);
  else {
    ctx.out.note(`${verb} ${describeDeployment(d)} (${paintDeployment(ctx, d.status)}); follow: deploybot deployments ${d.id} -f`);
    ctx.out.line(d.id);
  }
  return ExitCode.ok;
}

export const rollback: Command = {
  name: "rollback",
  summary: "Roll an app back to its previous release (or --to RELEASE) and follow it until it ends.",
  usage: "APP [--to RELEASE] [--detach]",
  positionals: { names: ["APP"], required: 1 },
  options: {
    to: { type: "string", value: "RELEASE", description: "the release id (deploybot releases APP) or image id (deploybot images APP) to run; default: the release before the current" },
    detach: { type: "boolean", short: "d", description: "print the deployment id and return at once" },
  },
  notes: [
    "Runs the release's image with the config it ran with, on the app's hosts (POST /v1/apps/{app}/rollback).",
    "Exit 0 when the deployment succeeds, 1 otherwise; 6 when there is nothing to roll back to (409).",
  ],
  examples: ["deploybot rollback web", "deploybot rollback api --to rel_01J9Z8 --detach --json | jq -r .deployment.id"],
  async run(ctx, values, [app]) {
    const client = ctx.client();
    const to = stringOption(values, "to");
    const body = to === undefined ? {} : to.startsWith("img_") ? { imageId: to } : { release: to };
    const created = await client.post(`/v1/apps/${seg(app!)}/rollback`, deploymentAnswer, body);
    if (values.detach) return printDetached(ctx, created, "rolling back:");
    return followDeployment(ctx, client, created);
  },
};

export const deployments: Command = {
  name: "deployments",
  summary: "List deployments, newest first; or show one (ID), or follow it (ID -f).",
  usage: "[--app APP] [--limit N] [--cursor C] | ID [-f]",
  positionals: { names: ["ID"], required: 0 },
  options: {
    follow: { type: "boolean", short: "f", description: "with ID: follow it like deploy does until it ends; exit 1 unless it succeeded" },
    app: { type: "string", value: "APP", description: "only this app's deployments" },
    limit: { type: "string", value: "N", description: "at most N, 1 to 200 (default 50)" },
    cursor: { type: "string", value: "C", description: "continue after this deployment id (from the previous page)" },
  },
  examples: ["deploybot deployments --app web", "deploybot deployments dep_01J9Z8 -f", "deploybot deployments --json | jq -r '.deployments[] | select(.status == \"failed\") | .id'"],
  async run(ctx, values, [id]) {
    if (id !== undefined) {
      const client = ctx.client();
      const answer = await client.get(`/v1/deployments/${seg(id)}`, deploymentAnswer);
      if (values.follow) return followDeployment(ctx, client, answer);
      if (ctx.out.json) ctx.out.printJson(answer.raw);
      else printDeployment(ctx, answer.data.deployment);
      return 0;
    }
    if (values.follow) throw usageError("-f needs a deployment ID\nusage: deploybot deployments ID -f");
    const query = new URLSearchParams();
    for (const key of ["app", "cursor"] as const) {
      const v = stringOption(values, key);
      if (v !== undefined) query.set(key, v);
    }
    const limit = intOption(values, "limit", 1, 200);
    if (limit !== undefined) query.set("limit", String(limit));
    const qs = query.toString();
    const answer = await ctx.client().get(`/v1/deployments${qs ? `?${qs}` : ""}`, deploymentPage);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const page = answer.data;
    if (page.deployments.length === 0) {
      ctx.out.note("no deployments yet");
      return 0;
    }
    ctx.out.table(
      ["DEPLOYMENT", "APP", "STATUS", "TRIGGER", "VERSION", "HOSTS", "CREATED", "DURATION"],
      page.deployments.map((d) => [
        d.id,
        d.app,
        paintDeployment(ctx, d.status),
        d.trigger,
        versionOf(d),
        d.hosts.join(","),
        age(d.createdAt),
        duration(d.createdAt, d.finishedAt),
      ]),
    );
    if (page.nextCursor) ctx.out.note(`more: deploybot deployments --cursor ${page.nextCursor}${qs ? " (with the same filters)" : ""}`);
    return 0;
  },
};
