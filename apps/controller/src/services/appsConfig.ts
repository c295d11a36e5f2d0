import { readFileSync } from "node:fs";
import { buildSpec, name, runSpec } from "@deploybot/protocol";
import { isMap, isSeq, LineCounter, parseDocument } from "yaml";
import { z } from "zod";

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
  })
  .strict();

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
    const path = issue.path.map(String);
    // Walk back up the path until a node exists, so a missing key points at its parent.
    let line: number | undefined;
    for (let n = path.length; n >= 0 && line === undefined; n--) {
      const node = doc.getIn(path.slice(0, n).map((p) => (/^\d+$/.test(p) ? Number(p) : p)), true) as
        | { range?: [number, number, number] }
        | undefined;
      const start = node && (isMap(node) || isSeq(node) || "range" in node) ? node.range?.[0] : undefined;
      if (start !== undefined) line = lineCounter.linePos(start).line;
    }
    const where = path.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("").replace(/^\./, "");
    throw new AppsConfigError(`${file}${line ? `:${line}` : ""}: ${where || "(root)"}: ${issue.message}`);
  }
  return appsConfigFrom(
    result.data.apps.map((a) => ({ ...a, url: a.url ?? `https://github.com/${a.repo}.git` })),
  );
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
