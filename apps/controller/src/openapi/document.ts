import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../middleware/auth";

export type OpenApiDocument = ReturnType<OpenAPIHono["getOpenAPI31Document"]>;
type Node = Record<string, unknown>;

const tagText: Record<string, string> = {
  meta: "Liveness and this description",
  jobs: "Jobs: submitted by users, claimed, reported and logged by agents",
  logs: "Live log streams",
  hosts: "The Docker hosts (agents) and what they run",
  agents: "Agent registration, heartbeats and administration",
  tokens: "API tokens",
  deployments: "Deployments of an app to its hosts",
  apps: "Apps from apps.yaml: releases, rollbacks, secrets, operations (stop, start, restart, scale, remove), status, reconcile events and container logs",
  builds: "Builds of a file tree into an image",
  webhooks: "GitHub push webhooks",
  github: "Read-only views of GitHub",
  notifications: "Notification deliveries to the targets in apps.yaml, and each attempt",
  events: "Every change, in commit order, as Server-Sent Events",
  runs: "One-off and scheduled runs of a command in an app's current release",
  schedules: "Cron schedules of runs from apps.yaml",
  images: "The catalog of built images per app",
  volumes: "The apps' named volumes per host",
  db: "The controller's database: backups",
};

/** `/v1/jobs/{jobId}/logs` + get → `getV1JobsJobIdLogs`: stable ids for generated clients. */
const operationId = (method: string, path: string) =>
  `${method}${path.replace(/[{}]/g, "").replace(/[/._-]+(\w)/g, (_m, ch: string) => ch.toUpperCase())}`;

/**
 * zod-to-openapi writes a nullable component as `allOf: [{$ref}, {type: [object, null]}]`, which
 * no value satisfies when it is null (the $ref still requires an object) and which generated
 * clients read as never-null. `anyOf: [{$ref}, {type: null}]` says what is meant.
 */
function fixNullableRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(fixNullableRefs);
  if (!node || typeof node !== "object") return node;
  const n = node as Node;
  const all = n.allOf as Node[] | undefined;
  if (all?.length === 2 && typeof all[0]?.$ref === "string" && Array.isArray(all[1]?.type) && (all[1].type as string[]).includes("null")) {
    const { allOf: _drop, ...rest } = n;
    return { ...rest, anyOf: [all[0], { type: "null" }] };
  }
  return Object.fromEntries(Object.entries(n).map(([k, v]) => [k, fixNullableRefs(v)]));
}

/**
 * The OpenAPI 3.1 document of `app`, generated from its route declarations (see route.ts).
 * `servers` is filled in per request (the URL the client reached us at).
 */
export function openApiDocument(app: OpenAPIHono<AppEnv>): OpenApiDocument {
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "An API token (`dbt_…`, or DEPLOYBOT_ADMIN_TOKEN), an agent JWT, or the join token, as each operation says",
  });
  const doc = app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "deploybot controller",
      version: "1",
      description: "Self-hosted pull-based deployments. Every error is {error:{code, message, details?}}; bodies are limited to 1 MiB.",
    },
  });
  const tags = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(item as Record<string, Node>)) {
      const tag = path.split("/").filter(Boolean).find((p) => p !== "v1") ?? "meta";
      const resolved = tag in tagText || path.startsWith("/v1/") ? tag : "meta";
      tags.add(resolved);
      op.operationId ??= operationId(method, path);
      op.tags ??= [resolved];
    }
  }
  return fixNullableRefs({
    ...doc,
    tags: [...tags].map((name) => ({ name, description: tagText[name] ?? name })),
  }) as OpenApiDocument;
}
