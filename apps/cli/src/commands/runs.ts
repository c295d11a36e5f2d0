import { writeFileSync } from "node:fs";
import { type Run, runAnswer, runPage, scheduleAnswer, scheduleList } from "@deploybot/protocol";
import { usageError } from "../client";
import { type Command, type Context, intOption, listOption, seg, stringOption } from "../command";
import { age } from "../output";
import { describeEnd, followJob } from "./logs";

const ms = (value: number | null) => (value === null ? "-" : value < 10_000 ? `${(value / 1000).toFixed(1)}s` : `${Math.round(value / 1000)}s`);
const bytes = (n: number) => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`);

function runStatus(ctx: Context, run: Run): string {
  const { paint } = ctx.out;
  if (run.status === "missed" || run.status === "skipped") return paint.yellow(run.status);
  return ctx.out.status(run.status);
}

export const run: Command = {
  name: "run",
  summary: "Run a command once in a container of an app's current release; follow its output and exit with its exit code.",
  usage: "APP [--host H] [--env K=V ...] [--result-file PATH] [--timeout S] [--detach] -- COMMAND [ARGS...]",
  positionals: { names: ["APP"], required: 1, rest: true },
  options: {
    host: { type: "string", value: "H", description: "the host to run on (default: the app's first host)" },
    env: { type: "string", value: "K=V", multiple: true, description: "an environment variable over the release's (repeat for several)" },
    "result-file": { type: "string", value: "PATH", description: "a file in the container to keep as the run's result (deploybot result RUN)" },
    timeout: { type: "string", value: "SECONDS", description: "kill the container after this long (default: the controller's job timeout)" },
    detach: { type: "boolean", short: "d", description: "print the run id and return at once" },
  },
  notes: [
    "The container runs the app's current release: its image and its config (env, secrets,",
    "memory, cpus), with COMMAND instead of the image's command and no published ports, so it",
    "runs beside the app. There is no shell: use -- sh -c '...' for one. Everything after --",
    "is the command, options included.",
    "",
    "The output is printed live; deploybot exits with the container's exit code (like docker",
    "run), or 1 when the run ended without one (the image could not be pulled, it timed out).",
  ],
  examples: ["deploybot run web -- ./manage.py migrate", "deploybot run web -- sh -c 'exit 3'; echo $?", "deploybot run bot --result-file /out/report.json -- ./report"],
  async run(ctx, values, [app, ...command]) {
    if (command.length === 0) throw usageError("missing COMMAND after --\nusage: deploybot run APP [options] -- COMMAND [ARGS...]");
    const env: Record<string, string> = {};
    for (const pair of listOption(values, "env")) {
      const eq = pair.indexOf("=");
      if (eq < 1) throw usageError(`--env takes KEY=VALUE, got '${pair}'`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    const client = ctx.client();
    const created = await client.post(`/v1/apps/${seg(app!)}/runs`, runAnswer, {
      command,
      host: stringOption(values, "host"),
      env: Object.keys(env).length > 0 ? env : undefined,
      resultFile: stringOption(values, "result-file"),
      timeoutSeconds: intOption(values, "timeout", 1, 86_400),
    });
    const { run } = created.data;
    if (values.detach) {
      if (ctx.out.json) ctx.out.printJson(created.raw);
      else {
        ctx.out.note(`queued run ${run.id} of ${run.app} on ${run.host ?? "-"}; follow: deploybot logs --job ${run.jobId} -f`);
        ctx.out.line(run.id);
      }
      return 0;
    }
    ctx.out.note(`run ${run.id}: ${command.join(" ")} in ${run.app} on ${run.host ?? "-"}`);
    const end = await followJob(ctx, client, run.jobId!);
    const done = await client.get(`/v1/runs/${seg(run.id)}`, runAnswer);
    if (ctx.out.json) ctx.out.printJson(done.raw);
    const finished = done.data.run;
    if (finished.exitCode === null) return describeEnd(ctx, end.job.data.job);
    const result = finished.resultFile ? `; result ${bytes(finished.resultFile.size)}: deploybot result ${finished.id}` : "";
    ctx.out.note(`run ${finished.id} exited ${finished.exitCode} after ${ms(finished.durationMs)}${result}`);
    return finished.exitCode;
  },
};

export const runs: Command = {
  name: "runs",
  summary: "An app's run history (scheduled, triggered and one-off), newest first: status, exit code, duration, result.",
  usage: "APP [SCHEDULE] [--limit N]",
  positionals: { names: ["APP", "SCHEDULE"], required: 1 },
  options: { limit: { type: "string", value: "N", description: "at most this many (default 20, at most 200)" } },
  notes: ["missed: the controller was away at the tick (or past the schedule's starting deadline); skipped: an earlier run was still active (concurrency: forbid)."],
  examples: ["deploybot runs bot", "deploybot runs bot nightly --limit 5", "deploybot runs bot --json | jq '.runs[0].exitCode'"],
  async run(ctx, values, [app, schedule]) {
    const limit = intOption(values, "limit", 1, 200) ?? 20;
    const q = new URLSearchParams({ app: app!, limit: String(limit), ...(schedule ? { schedule } : {}) });
    const answer = await ctx.client().get(`/v1/runs?${q}`, runPage);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    if (answer.data.runs.length === 0) {
      ctx.out.note(`no runs of ${app}${schedule ? `/${schedule}` : ""} yet`);
      return 0;
    }
    ctx.out.table(
      ["RUN", "SCHEDULE", "TICK", "STATUS", "EXIT", "DURATION", "HOST", "RESULT", "WHEN"],
      answer.data.runs.map((r) => [
        r.id,
        r.schedule ?? `(${r.trigger})`,
        r.tickAt ?? "-",
        runStatus(ctx, r),
        r.exitCode === null ? "-" : String(r.exitCode),
        ms(r.durationMs),
        r.host ?? "-",
        r.resultFile ? `${bytes(r.resultFile.size)}${r.resultFile.truncated ? " (cut)" : ""}` : "-",
        age(r.createdAt),
      ]),
    );
    const reasons = answer.data.runs.filter((r) => r.reason).slice(0, 3);
    for (const r of reasons) ctx.out.note(`${r.id}: ${r.reason}`);
    return 0;
  },
};

export const result: Command = {
  name: "result",
  summary: "Download a run's result file (to stdout, or -o FILE).",
  usage: "RUN [-o FILE]",
  positionals: { names: ["RUN"], required: 1 },
  options: { output: { type: "string", short: "o", value: "FILE", description: "write it to FILE instead of stdout" } },
  notes: ["Results are kept up to 1 MiB; a longer file was cut there, and the CLI says so on stderr."],
  examples: ["deploybot result run_01J... | jq .", "deploybot result run_01J... -o report.json"],
  async run(ctx, values, [id]) {
    const { data, headers } = await ctx.client().bytes(`/v1/runs/${seg(id!)}/result`);
    const out = stringOption(values, "output");
    if (out) writeFileSync(out, data);
    else process.stdout.write(data);
    if (headers.get("x-deploybot-result-truncated") === "true") {
      ctx.out.note(`the file was ${headers.get("x-deploybot-result-size")} bytes; its first ${data.length} were kept`);
    }
    return 0;
  },
};

export const schedules: Command = {
  name: "schedules",
  summary: "Schedules from apps.yaml (all apps, or one) with their next run times and last run.",
  usage: "[APP]",
  positionals: { names: ["APP"], required: 0 },
  examples: ["deploybot schedules", "deploybot schedules bot --json | jq '.schedules[].nextRuns[0]'"],
  async run(ctx, _values, [app]) {
    const answer = await ctx.client().get(`/v1/schedules${app ? `?app=${encodeURIComponent(app)}` : ""}`, scheduleList);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    if (answer.data.schedules.length === 0) {
      ctx.out.note("no schedules (add them under an app's schedules: in apps.yaml)");
      return 0;
    }
    ctx.out.table(
      ["APP", "SCHEDULE", "CRON", "TIMEZONE", "NEXT", "LAST", "CONCURRENCY"],
      answer.data.schedules.map((s) => [
        s.app,
        s.name,
        s.cron,
        s.timezone,
        s.paused ? ctx.out.paint.yellow("paused") : (s.nextRuns[0] ?? "-"),
        s.lastRun ? `${runStatus(ctx, s.lastRun)}${s.lastRun.exitCode === null ? "" : ` (${s.lastRun.exitCode})`} ${age(s.lastRun.createdAt)}` : "-",
        s.concurrency,
      ]),
    );
    return 0;
  },
};

const scheduleAction = (verb: "trigger" | "pause" | "resume", summary: string): Command => ({
  name: `schedule ${verb}`,
  summary,
  usage: "APP SCHEDULE",
  positionals: { names: ["APP", "SCHEDULE"], required: 2 },
  examples: [`deploybot schedule ${verb} bot nightly`],
  async run(ctx, _values, [app, name]) {
    const path = `/v1/schedules/${seg(app!)}/${seg(name!)}/${verb}`;
    if (verb === "trigger") {
      const answer = await ctx.client().post(path, runAnswer);
      if (ctx.out.json) ctx.out.printJson(answer.raw);
      else {
        ctx.out.note(`queued run ${answer.data.run.id} of ${app}/${name}; follow: deploybot logs --job ${answer.data.run.jobId} -f`);
        ctx.out.line(answer.data.run.id);
      }
      return 0;
    }
    const answer = await ctx.client().post(path, scheduleAnswer);
    if (ctx.out.json) ctx.out.printJson(answer.raw);
    else ctx.out.note(`${app}/${name} ${answer.data.schedule.paused ? "paused" : `resumed; next run ${answer.data.schedule.nextRuns[0] ?? "-"}`}`);
    return 0;
  },
});

export const scheduleTrigger = scheduleAction("trigger", "Run a schedule's command now (whatever its concurrency policy).");
export const schedulePause = scheduleAction("pause", "Pause a schedule: its ticks are not run until it is resumed.");
export const scheduleResume = scheduleAction("resume", "Resume a paused schedule from now on (the paused ticks are not made up).");
