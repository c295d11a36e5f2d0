import { readFileSync } from "node:fs";
import { buildSpec, concurrencyPolicy, domainName, envName, label, name, proxySpec, registryPrefix, runSpec, tlsMode } from "@deploybot/protocol";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { cronProblem, timezoneProblem } from "./cron";
import { type NotificationsConfig, noNotifications, notificationsSection } from "./notificationConfig";

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
    /** repository to push to (without a tag); hosts then pull by digest. Normalised like the registry URL. */
    image: z.string().min(1).transform(registryPrefix).optional(),
    run: runSpec.default({ ports: [], env: {}, secrets: [], restart: "unless-stopped" }),
    schedules: z.array(scheduleDefinition).default([]),
    /** served by the proxy on every host of the app (HAProxy, ports 80/443); no host port is published */
    domains: z.array(domainName).max(100).default([]),
    /** how the proxy reaches the app: container port, health path, drain_seconds, response timeout */
    proxy: proxySpec.optional(),
    /** containers per host (rolled one at a time) */
    replicas: z.number().int().min(1).max(100).default(1),
    /** auto: ACME (DEPLOYBOT_ACME_CA), internal: the host's own CA, off: http only */
    tls: tlsMode.default("auto"),
  })
  .strict()
  .superRefine((app, ctx) => {
    if (app.domains.length > 0 && !app.proxy) {
      ctx.addIssue({ code: "custom", path: ["domains"], message: "an app with domains needs proxy.port (the port it listens on in its container)" });
    }
    if (app.domains.length > 0 && app.run.ports.length > 0) {
      ctx.addIssue({ code: "custom", path: ["run", "ports"], message: "an app with domains publishes no host port: the proxy reaches it on the deploybot network" });
    }
    if (app.domains.length === 0 && app.replicas > 1 && app.run.ports.length > 0) {
      ctx.addIssue({ code: "custom", path: ["replicas"], message: "replicas > 1 needs domains: a published host port can be bound by one container only" });
    }
    if (app.run.stop_first && app.replicas > 1) {
      ctx.addIssue({ code: "custom", path: ["run", "stop_first"], message: "stop_first keeps the data from being opened twice, but replicas > 1 run together on it: use one replica" });
    }
    const domains = new Set<string>();
    app.domains.forEach((d, i) => {
      if (domains.has(d)) ctx.addIssue({ code: "custom", path: ["domains", i], message: `duplicate domain '${d}'` });
      domains.add(d);
    });
    const seen = new Set<string>();
    app.schedules.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: "custom", path: ["schedules", i, "name"], message: `duplicate schedule name '${s.name}'` });
      seen.add(s.name);
    });
  });

const appsFile = z
  .object({
    apps: z.array(appDefinition).default([]),
    /** where notifications go (README, "Notifications"); reloaded with the rest of the file */
    notifications: notificationsSection.optional(),
  })
  .strict()
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    const domainOwner = new Map<string, string>();
    file.apps.forEach((app, i) => {
      if (seen.has(app.name)) ctx.addIssue({ code: "custom", path: ["apps", i, "name"], message: `duplicate app name '${app.name}'` });
      seen.add(app.name);
      app.domains.forEach((d, j) => {
        const owner = domainOwner.get(d);
        if (owner && owner !== app.name) ctx.addIssue({ code: "custom", path: ["apps", i, "domains", j], message: `domain '${d}' is already app '${owner}''s` });
        domainOwner.set(d, app.name);
      });
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
  /** every app of a repository, in apps.yaml order: a monorepo deploys several apps on one push */
  byRepo(repo: string): AppDefinition[];
  notifications: NotificationsConfig;
}

export function appsConfigFrom(apps: AppDefinition[], notifications: NotificationsConfig = noNotifications): AppsConfig {
  const names = new Map(apps.map((a) => [a.name, a]));
  const repos = new Map<string, AppDefinition[]>();
  for (const a of apps) {
    // an app whose url is its repo's GitHub URL is listed once under that key
    for (const key of new Set([normaliseRepo(a.repo), normaliseRepo(a.url)])) {
      const list = repos.get(key) ?? [];
      list.push(a);
      repos.set(key, list);
    }
  }
  return { apps, byName: (n) => names.get(n), byRepo: (r) => repos.get(normaliseRepo(r)) ?? [], notifications };
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
  let value: unknown;
  try {
    value = doc.toJS() ?? {};
  } catch (err) {
    // e.g. an unquoted `*name` is a YAML alias that points nowhere
    throw new AppsConfigError(`${file}: invalid YAML: ${(err as Error).message}`);
  }
  const result = appsFile.safeParse(value);
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
    result.data.notifications ?? noNotifications,
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
