import { errorBody } from "@deploybot/protocol";
import { z } from "zod";
import type { ApiRoute } from "./types";

type JsonSchema = Record<string, unknown> & { properties?: Record<string, JsonSchema>; required?: string[] };

/**
 * JSON Schema of what a client sends (`input`: defaults make fields optional, coercions show
 * their input type) or receives (`output`). Transforms and refinements have no JSON Schema
 * form: they become `{}` rather than failing the whole document.
 */
export function jsonSchema(schema: z.ZodType, io: "input" | "output"): JsonSchema {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as JsonSchema;
  return rest;
}

const scopes = { read: "an API token with the read scope (or deploy, admin)", deploy: "an API token with the deploy scope (or admin)", admin: "an API token with the admin scope" };
export const authText: Record<ApiRoute["auth"], string> = {
  public: "no token",
  join: "the join token (DEPLOYBOT_JOIN_TOKEN)",
  agent: "the agent's JWT from /v1/agents/register",
  metrics: "an API token with the metrics scope (or read, deploy, admin), or an address in DEPLOYBOT_METRICS_ALLOW",
  ...scopes,
};

function parameters(route: ApiRoute) {
  const params: unknown[] = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: "path", required: true, schema: { type: "string" } }));
  if (route.query) {
    const q = jsonSchema(route.query, "input");
    for (const [name, schema] of Object.entries(q.properties ?? {})) {
      const { description, ...rest } = schema;
      params.push({ name, in: "query", required: q.required?.includes(name) ?? false, description, schema: rest });
    }
  }
  return params;
}

function responses(route: ApiRoute) {
  const out: Record<string, unknown> = {};
  const error = jsonSchema(errorBody, "output");
  for (const [status, description] of Object.entries(route.responses)) {
    const code = Number(status);
    let content: Record<string, unknown> | undefined;
    if (code >= 400) content = { "application/json": { schema: error } };
    else if (code !== 204 && route.contentType) content = { [route.contentType]: { schema: { type: "string" } } };
    else if (code !== 204 && route.response) content = { "application/json": { schema: jsonSchema(route.response, "output") } };
    out[status] = content ? { description, content } : { description };
  }
  return out;
}

/** The OpenAPI 3.1 document of `routes`; built from the same zod objects the routes validate with. */
export function openApiDocument(routes: ApiRoute[]) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const tag = route.path.split("/").filter(Boolean).find((p) => p !== "v1") ?? "meta";
    paths[route.path] ??= {};
    paths[route.path]![route.method] = {
      operationId: `${route.method}${route.path.replace(/[{}]/g, "").replace(/[/._-]+(\w)/g, (_m, ch: string) => ch.toUpperCase())}`,
      summary: route.summary,
      tags: [tag],
      security: route.auth === "public" ? [] : [{ bearer: [] }],
      "x-deploybot-auth": route.auth,
      description: `Authorization: ${authText[route.auth]}.`,
      parameters: parameters(route),
      ...(route.body ? { requestBody: { required: true, content: { "application/json": { schema: jsonSchema(route.body, "input") } } } } : {}),
      responses: responses(route),
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "deploybot controller",
      version: "1",
      description: "Self-hosted pull-based deployments. Every error is {error:{code, message, details?}}; bodies are limited to 1 MiB.",
    },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    paths,
  };
}
