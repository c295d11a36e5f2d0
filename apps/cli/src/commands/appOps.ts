import { type AppHostStatus, type AppOperation, appHostStatus, job as jobSchema } from "@deploybot/protocol";
import { z } from "zod";
import { usageError } from "../client";
import { type Command, type Context, intOption, listOption, seg } from "../command";
import { age } from "../output";
import { describeEnd, followJob } from "./logs";

const appWithStatus = z.object({ name: z.string(), status: z.array(appHostStatus).default([]) }).passthrough();
export const appsAnswer = z.object({ apps: z.array(appWithStatus) });
const jobsAnswer = z.object({ jobs: z.array(jobSchema) });

const shortRelease = (r: string | null | undefined) => (r ? (r.length > 16 ? `${r.slice(0, 16)}…` : r) : "-");

/** One row per app per host: what should run, what runs, and the last thing that went wrong. */
export function psRows(ctx: Context, app: string, status: AppHostStatus[]): string[][] {
  const { paint } = ctx.out;
  return status.map((s) => {
    const want = s.desired ? (s.desired.state === "running" ? s.desired.replicas : 0) : 0;
    const state = !s.desired ? "-" : s.desired.state === "running" ? (s.actual.healthy >= want && want > 0 ? paint.green("running") : paint.yellow("degraded")) : s.desired.state;
    const backoff = s.actual.nextRestartAt ? ` (restart in ${Math.max(0, Math.round((Date.parse(s.actual.nextRestartAt) - Date.now()) / 1000))}s)` : "";
    return [
      app,
      s.host + (s.online ? "" : paint.red(" (offline)")),
      state,
      shortRelease(s.desired?.release),
      s.actual.releases.map(shortRelease).join(",") || "-",
      `${s.actual.running}/${want}`,
      String(s.actual.healthy),
      String(s.actual.restarts),
      s.actual.lastReason ? `${s.actual.lastReason}${backoff}` : "-",
      age(s.actual.since),
    ];
  });
}

export const PS_HEADERS = ["APP", "HOST", "STATE", "DESIRED", "RUNNING RELEASE", "UP", "HEALTHY", "RESTARTS", "LAST EXIT", "SINCE"];

export const ps: Command = {
  name: "ps",
  summary: "Show what runs where: per app and host, desired against actual, health, restarts, the last exit and why.",
  usage: "[APP]",
  positionals: { names: ["APP"], required: 0 },
  notes: [
    "STATE is running when every wanted container is up and healthy, degraded when not, or the",
    "desired stopped / removed. UP is running/wanted. LAST EXIT is the agent's last reason (an exit",
    "code, a kill, a failed health check) and, during a crash-loop backoff, when it restarts next.",
    "What the agent did about it: deploybot apps APP (events).",
  ],
  examples: ["deploybot ps", "deploybot ps web", "deploybot ps --json | jq '.apps[].status[] | select(.actual.restarts > 0)'"],
  async run(ctx, _values, [app]) {
    const client = ctx.client();
    const apps = app
      ? [(await client.get(`/v1/apps/${seg(app)}`, z.object({ app: appWithStatus }))).data.app]
      : (await client.get("/v1/apps", appsAnswer)).data.apps;
    if (ctx.out.json) {
      ctx.out.printJson({ apps: apps.map((a) => ({ name: a.name, status: a.status })) });
      return 0;
    }
    const rows = apps.flatMap((a) => psRows(ctx, a.name, a.status));
    if (rows.length === 0) ctx.out.note("nothing deployed yet (deploybot deploy APP)");
    ctx.out.table(PS_HEADERS, rows);
    return 0;
  },
};

function operation(op: AppOperation, summary: string, notes: string[], examples: string[]): Command {
  return {
    name: op,
    summary,
    usage: op === "scale" ? "APP REPLICAS [--host H ...] [--detach]" : `APP [--host H ...]${op === "remove" ? " [--purge-volumes]" : ""} [--detach]`,
    positionals: op === "scale" ? { names: ["APP", "REPLICAS"], required: 2 } : { names: ["APP"], required: 1 },
    options: {
      host: { type: "string", value: "H", multiple: true, description: "only these hosts (repeat for several; default: every host the app runs on)" },
      detach: { type: "boolean", short: "d", description: "print the job ids and return at once" },
      ...(op === "remove"
        ? { "purge-volumes": { type: "boolean" as const, description: "also delete the app's named volumes on those hosts, with their data (no undo)" } }
        : {}),
    },
    notes: [
      ...notes,
      "One job per host; the command follows them (each log line after its host) and exits 0 when",
      "all succeed, 1 otherwise. The host's desired state changes when its job succeeds, and the",
      "agent's reconcile loop keeps it so from then on.",
    ],
    examples,
    async run(ctx, values, [app, replicasArg]) {
      const hosts = listOption(values, "host");
      const replicas = op === "scale" ? intOption({ replicas: replicasArg }, "replicas", 0, 50) : undefined;
      if (op === "scale" && replicas === undefined) throw usageError("missing REPLICAS");
      const client = ctx.client();
      const created = await client.post(`/v1/apps/${seg(app!)}/${op}`, jobsAnswer, {
        ...(hosts.length > 0 ? { hosts } : {}),
        ...(replicas !== undefined ? { replicas } : {}),
        ...(values["purge-volumes"] ? { purgeVolumes: true } : {}),
      });
      const jobs = created.data.jobs;
      if (values.detach) {
        if (ctx.out.json) ctx.out.printJson(created.raw);
        else for (const j of jobs) ctx.out.line(j.id);
        return 0;
      }
      const hostOf = (j: (typeof jobs)[number]) => ("host" in j.target ? j.target.host : j.target.labels.join(","));
      ctx.out.note(`${op} ${app}: ${jobs.map((j) => `${hostOf(j)} (${j.id})`).join(", ")}`);
      const ends = await Promise.all(jobs.map((j) => followJob(ctx, client, j.id, { prefix: jobs.length > 1 ? `${hostOf(j)} | ` : "" })));
      if (ctx.out.json) ctx.out.printJson({ jobs: ends.map((e) => e.job.data.job) });
      let code = 0;
      for (const e of ends) code = Math.max(code, describeEnd(ctx, e.job.data.job));
      return code;
    },
  };
}

export const stop = operation(
  "stop",
  "Stop an app's containers (kept, not removed); it stays stopped until start.",
  ["The reconcile loop then keeps the app stopped, through agent and host restarts."],
  ["deploybot stop web", "deploybot stop web --host web-2"],
);
export const start = operation(
  "start",
  "Start a stopped app again; each container must pass its health check.",
  ["Missing containers are created again from the current release's image and config."],
  ["deploybot start web"],
);
export const restart = operation(
  "restart",
  "Restart an app's containers one at a time, each health-gated.",
  ["A container that does not become healthy again fails the job with its last log lines."],
  ["deploybot restart web --host web-1"],
);
export const scale = operation(
  "scale",
  "Run REPLICAS containers of the current release on each host (new ones health-gated).",
  ["An app that publishes host ports runs one container per host (two cannot hold one port)."],
  ["deploybot scale worker 3", "deploybot scale worker 0 --host web-2"],
);
export const remove = operation(
  "remove",
  "Remove an app's containers from hosts (all its hosts unless --host); a deploy brings it back.",
  [
    "The app stays in apps.yaml; its releases and images are kept, and so are its named volumes",
    "(deploybot volumes APP) unless --purge-volumes deletes them once the containers are gone.",
  ],
  ["deploybot remove web --host web-3", "deploybot remove db --host old-1 --purge-volumes"],
);
