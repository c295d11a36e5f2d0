import { appHostStatus, release } from "@deploybot/protocol";
import { z } from "zod";
import { type Command, type Context, seg } from "../command";
import { age } from "../output";
import { PS_HEADERS, psRows } from "./appOps";

// What GET /v1/apps says of an app (apps.yaml plus its current release); read loosely past these.
const appSchema = z
  .object({
    name: z.string(),
    repo: z.string(),
    branch: z.string().optional(),
    hosts: z.array(z.string()),
    image: z.string().nullable(),
    // absent from controllers before it
    imageRepository: z.string().nullable().optional(),
    currentRelease: release.nullable(),
  })
  .passthrough();

const paintRelease = (paint: { green(t: string): string; red(t: string): string; cyan(t: string): string }, status: string) =>
  status === "success" ? paint.green(status) : status === "failed" ? paint.red(status) : paint.cyan(status);

const appEvent = z.object({ host: z.string(), kind: z.string(), reason: z.string(), at: z.string(), container: z.string().nullable().optional() });
const appDetail = z.object({ app: appSchema.extend({ status: z.array(z.unknown()).default([]) }), events: z.array(appEvent).default([]) }).passthrough();

/** `apps APP`: the app, per host what should and does run, and what the agents did about it. */
async function showApp(ctx: Context, name: string): Promise<number> {
  const answer = await ctx.client().get(`/v1/apps/${seg(name)}`, appDetail);
  if (ctx.out.json) {
    ctx.out.printJson(answer.raw);
    return 0;
  }
  const { app, events } = answer.data;
  const r = app.currentRelease;
  ctx.out.fields([
    ["app", app.name],
    ["repo", `${app.repo}${app.branch ? ` (${app.branch})` : ""}`],
    ["hosts", app.hosts.join(", ") || "-"],
    ["image", app.imageRepository ?? app.image ?? (app.imageRepository === null ? "- (each host builds it; nothing is pushed)" : "-")],
    ["current", r ? `${r.version} (${r.id}, ${age(r.builtAt ?? r.createdAt)})` : "-"],
  ]);
  ctx.out.line();
  const status = z.array(appHostStatus).safeParse(app.status);
  ctx.out.table(PS_HEADERS, status.success ? psRows(ctx, app.name, status.data) : []);
  if (events.length > 0) {
    ctx.out.line();
    ctx.out.line(ctx.out.paint.bold("recent events (newest first):"));
    ctx.out.table(
      ["WHEN", "HOST", "EVENT", "CONTAINER", "REASON"],
      events.map((e) => [age(e.at), e.host, e.kind, e.container ?? "-", e.reason]),
    );
  }
  return 0;
}

export const apps: Command = {
  name: "apps",
  summary: "List the apps with their hosts and current release; with APP, its state on every host and recent events.",
  usage: "[APP]",
  positionals: { names: ["APP"], required: 0 },
  examples: ["deploybot apps", "deploybot apps web", "deploybot apps --json | jq -r '.apps[] | [.name, .currentRelease.version] | @tsv'"],
  async run(ctx, _values, [name]) {
    if (name) return showApp(ctx, name);
    const answer = await ctx.client().get("/v1/apps", z.object({ apps: z.array(appSchema) }));
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    if (answer.data.apps.length === 0) {
      ctx.out.note("no apps configured (add them to the controller's apps.yaml)");
      return 0;
    }
    ctx.out.table(
      ["APP", "REPO", "BRANCH", "HOSTS", "IMAGE", "CURRENT", "DEPLOYED"],
      answer.data.apps.map((a) => [
        a.name,
        a.repo,
        a.branch ?? "-",
        a.hosts.join(",") || "-",
        a.imageRepository ?? a.image ?? "-",
        a.currentRelease ? `${a.currentRelease.version} (${a.currentRelease.id})` : "-",
        a.currentRelease ? age(a.currentRelease.builtAt ?? a.currentRelease.createdAt) : "-",
      ]),
    );
    return 0;
  },
};

export const releases: Command = {
  name: "releases",
  summary: "List an app's releases, newest first; * marks the one running now.",
  usage: "APP",
  positionals: { names: ["APP"], required: 1 },
  notes: ["A release is a version that was built (or an image that was run); rollback targets come from here."],
  examples: ["deploybot releases web", "deploybot releases web --json | jq -r '.releases[] | select(.current) | .id'"],
  async run(ctx, _values, [app]) {
    const answer = await ctx.client().get(`/v1/apps/${seg(app!)}/releases`, z.object({ releases: z.array(release) }));
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    if (answer.data.releases.length === 0) {
      ctx.out.note(`app ${app} has no releases yet (deploybot deploy ${app})`);
      return 0;
    }
    const { paint } = ctx.out;
    ctx.out.table(
      ["", "RELEASE", "VERSION", "SHA", "STATUS", "TRIGGER", "CREATED"],
      answer.data.releases.map((r) => [
        r.current ? paint.green("*") : " ",
        r.id,
        r.version,
        r.sha ? r.sha.slice(0, 12) : "-",
        paintRelease(paint, r.status),
        r.trigger,
        age(r.createdAt),
      ]),
    );
    return 0;
  },
};
