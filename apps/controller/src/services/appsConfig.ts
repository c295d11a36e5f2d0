import { readFileSync } from "node:fs";
import { buildSpec, concurrencyPolicy, envName, label, name, runSpec } from "@deploybot/protocol";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { cronProblem, timezoneProblem } from "./cron";

/** A cron schedule of an app: each tick runs `command` in the app's current release. */
const scheduleDefinition = z
  .object({
    name,
    /** 5 fields, or 6 with seconds first; evaluated in `timezone` */
    cron: z.string().min(1).max(200),
    timezone: z.string().default("UTC"),
    /** argv, no shell: ["sh", "-c", "..."] when a shell is wanted */
    command: z.array(z.string()).min(1),
    concurrency: concurrencyPolicy.default("forbid"),
    /** a tick later than this is recorded missed instead of run; unset: the latest tick always runs */
    starting_deadline_seconds: z.number().int().min(1).max(31 * 86_400).optional(),
    timeout_seconds: z.number().int().min(1).max(86_400).optional(),
    result_file: z.string().startsWith("/").max(1024).optional(),
    host: name.optional(),
    labels: z.array(label).min(1).max(16).optional(),
    env: z.record(envName, z.string()).default({}),
  })
  .strict()
  .superRefine((s, ctx) => {
    const zone = timezoneProblem(s.timezone);
    if (zone) ctx.addIssue({ code: "custom", path: ["timezone"], message: zone });
    else {
      const problem = cronProblem(s.cron, s.timezone);
      if (problem) ctx.addIssue({ code: "custom", path: ["cron"], message: problem });
    }
    if (s.host && s.labels) ctx.addIssue({ code: "custom", path: ["labels"], message: "give host or labels, not both" });
  });
export type ScheduleDefinition = z.infer<typeof scheduleDefinition>;

const appDefinition = z
  .object({
    name,
    /** GitHub full name (owner/name), matched against push webhooks and `POST /v1/jobs {repo}` */
    repo: z.string().regex(/^[\w.-]+\/[\w.-]+$/, "must be a GitHub full name like owner/name"),
    /** clone URL; defaults to the GitHub URL of `repo` */
    url: z.string().min(1).optional(),
    branch: z.string().min(1).default("main"),
    deploy_on_push: z.boolean().default(true),
    hosts: z.array(name).default([]),
    labels: z.array(z.string()).default([]),
    build: buildSpec.default({ dockerfile: "Dockerfile", context: ".", args: {} }),
    /** repository to push to (without a tag); hosts then pull by digest */
    image: z.string().min(1).optional(),
    run: runSpec.default({ ports: [], env: {}, secrets: [], restart: "unless-stopped" }),
    schedules: z.array(scheduleDefinition).default([]),
  })
  .strict()
  .superRefine((app, ctx) => {
    const seen = new Set<string>();
    app.schedules.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: "custom", path: ["schedules", i, "name"], message: `duplicate schedule name '${s.name}'` });
      seen.add(s.name);
    });
  });

const appsFile = z
  .object({ apps: z.array(appDefinition).default([]) })
  .strict()
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.apps.forEach((app, i) => {
      if (seen.has(app.name)) ctx.addIssue({ code: "custom", path: ["apps", i, "name"], message: `duplicate app name '${app.name}'` });
      seen.add(app.name);
    });
  });

export type AppDefinition = z.infer<typeof appDefinition> & { url: string };

export class AppsConfigError extends Error {}

/** Normalises `owner/name`, `https://github.com/owner/name(.git)` and `git@github.com:owner/name.git`. */
export function normaliseRepo(repo: string): string {
  return repo
    .trim()
    .toLowerCase()
    .replace(/^(https?:\/\/|git@)github\.com[/:]/, "")
    .replace(/\.git$/, "")
    .replace(/\/$/, "");
}

export interface AppsConfig {
  apps: AppDefinition[];
  byName(name: string): AppDefinition | undefined;
  byRepo(repo: string): AppDefinition | undefined;
}

export function appsConfigFrom(apps: AppDefinition[]): AppsConfig {
  const names = new Map(apps.map((a) => [a.name, a]));
  const repos = new Map<string, AppDefinition>();
  for (const a of apps) {
    repos.set(normaliseRepo(a.repo), a);
    repos.set(normaliseRepo(a.url), a);
  }
  return { apps, byName: (n) => names.get(n), byRepo: (r) => repos.get(normaliseRepo(r)) };
}

/** Parses and validates apps.yaml text; errors name the file, the line, the path and the reason. */
export function parseAppsConfig(text: string, file: string): AppsConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = lineCounter.linePos(e.pos[0]).line;
    throw new AppsConfigError(`${file}${line ? `:${line}` : ""}: invalid YAML: ${e.message.split("\n")[0]}`);
  }
  const result = appsFile.safeParse(doc.toJS() ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    // An unknown key is reported by zod at its parent; point at the key itself.
    const unknownKey = issue.code === "unrecognized_keys" ? issue.keys[0] : undefined;
    const path = [...issue.path.map(String), ...(unknownKey === undefined ? [] : [unknownKey])];
    // Walk back up the path until a node exists, so a missing key points at its parent.
    let line: number | undefined;
    for (let n = path.length; n >= 0 && line === undefined; n--) {
      const node = (n === path.length && unknownKey !== undefined ? keyNode(doc, path) : doc.getIn(path.slice(0, n).map((p) => (/^\d+$/.test(p) ? Number(p) : p)), true)) as
        | { range?: [number, number, number] }
        | undefined;
      const start = node && (isMap(node) || isSeq(node) || "range" in node) ? node.range?.[0] : undefined;
      if (start !== undefined) line = lineCounter.linePos(start).line;
    }
    const message = unknownKey === undefined ? issue.message : `unknown key '${unknownKey}'`;
    const where = path.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("").replace(/^\./, "");
    throw new AppsConfigError(`${file}${line ? `:${line}` : ""}: ${where || "(root)"}: ${message}`);
  }
  return appsConfigFrom(
    result.data.apps.map((a) => ({ ...a, url: a.url ?? `https://github.com/${a.repo}.git` })),
  );
}

/** The key node of the last path element (a map key has no node of its own through getIn). */
function keyNode(doc: ReturnType<typeof parseDocument>, path: string[]): unknown {
  const parent = doc.getIn(path.slice(0, -1).map((p) => (/^\d+$/.test(p) ? Number(p) : p)), true);
  if (!isMap(parent)) return undefined;
  const pair = parent.items.find((it) => isScalar(it.key) && String(it.key.value) === path[path.length - 1]);
  return pair?.key ?? undefined;
}

export function loadAppsConfig(file: string): AppsConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new AppsConfigError(`${file}: file not found`);
    throw new AppsConfigError(`${file}: ${(err as Error).message}`);
  }
  return parseAppsConfig(text, file);
}
