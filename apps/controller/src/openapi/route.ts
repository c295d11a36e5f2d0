import { errorBody } from "@deploybot/protocol";
import { createRoute, OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { validator } from "hono/validator";
import { z } from "zod";
import { ApiError, describeZodError } from "../lib/errors";
import { hasNul, nulAt, replaceNul } from "../lib/nul";
import { type AppEnv, requireAgent, requireScope } from "../middleware/auth";
import type { Services } from "../services";

/**
 * How every route is declared: `route({...})` is the one place that names a route's method,
 * path, guard, request schemas and response schemas. `app.openapi(route, handler)` validates the
 * request with those schemas and type-checks what the handler returns against the responses, so
 * /openapi.json (generated from the same declarations) cannot drift from the code.
 *
 *   export function thingRoutes(s: Services) {
 *     const { read } = guards(s);
 *     return newRouter().openapi(
 *       route({ method: "get", path: "/{id}", guard: read, summary: "One thing",
 *               request: { params: idParam("id") },
 *               responses: { 200: json(thingAnswer, "the thing"), ...fails({ 404: "no such thing" }) } }),
 *       (c) => c.json({ thing: s.things.get(c.req.valid("param").id) }, 200),
 *     );
 *   }
 */

export type Auth = "public" | "join" | "agent" | "metrics" | "read" | "deploy" | "admin";

/** Who may call a route: the middleware that checks it, and how the document describes it. */
export interface Guard<A extends Auth = Auth> {
  auth: A;
  middleware: MiddlewareHandler<AppEnv>[];
}

export const authText: Record<Auth, string> = {
  public: "no token",
  join: "the join token (DEPLOYBOT_JOIN_TOKEN), or the agent's own current token",
  agent: "the agent's JWT from /v1/agents/register",
  metrics: "an API token with the metrics scope (or read, deploy, admin), or an address in DEPLOYBOT_METRICS_ALLOW",
  read: "an API token with the read scope (or deploy, admin)",
  deploy: "an API token with the deploy scope (or admin)",
  admin: "an API token with the admin scope",
};

/** The guards of user and agent routes, built once per sub-app. */
export function guards(s: Services) {
  const scope = <A extends "read" | "deploy" | "admin">(auth: A): Guard<A> => ({ auth, middleware: [requireScope(s.apiTokens, auth)] });
  return {
    open: { auth: "public", middleware: [] } as Guard<"public">,
    read: scope("read"),
    deploy: scope("deploy"),
    admin: scope("admin"),
    agent: { auth: "agent", middleware: [requireAgent(s.agentTokens, s.agents)] } as Guard<"agent">,
  };
}

/** A JSON response (or request body) of `schema`. */
export const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { "application/json": { schema } } });
export const jsonBody = <S extends z.ZodType>(schema: S) => ({ required: true, content: { "application/json": { schema } } });

type Failure = ReturnType<typeof json<typeof errorBody>>;
/** Error responses, all `{error:{code, message, details?}}`: `fails({404: "no such job"})`. */
export function fails<const T extends Record<number, string>>(descriptions: T): { [K in keyof T]: Failure } {
  return Object.fromEntries(Object.entries(descriptions).map(([status, text]) => [status, json(errorBody, text)])) as { [K in keyof T]: Failure };
}

const userFailures = fails({ 401: "missing, invalid or revoked API token", 403: "the token's scope is too small" });
const authFailures = {
  public: {},
  join: fails({ 401: "invalid join token", 403: "registration closed, or an agent token used for another host" }),
  agent: fails({ 401: "not a current agent token", 403: "the job or agent is another agent's" }),
  metrics: userFailures,
  read: userFailures,
  deploy: userFailures,
  admin: userFailures,
};

type Declared = Omit<RouteConfig, "middleware" | "security" | "summary"> & {
  summary: string;
  guard: Guard;
  /** runs after the guard, before the request is validated (e.g. idempotency) */
  middleware?: MiddlewareHandler<AppEnv>[];
  /** runs before the guard: only what must answer a request the guard would now refuse (a replayed registration) */
  beforeGuard?: MiddlewareHandler<AppEnv>[];
};

type Declaration<R extends Declared> = Omit<R, "guard" | "middleware" | "beforeGuard" | "responses"> & {
  middleware: MiddlewareHandler<AppEnv>[];
  responses: R["responses"] & (typeof authFailures)[R["guard"]["auth"]];
};

/** Declares a route: its guard runs first and is documented (security, 401/403) with it. */
export function route<const R extends Declared>({ guard, middleware = [], beforeGuard = [], ...config }: R): Declaration<R> {
  return createRoute({
    ...config,
    middleware: [...beforeGuard, ...guard.middleware, ...middleware],
    security: guard.auth === "public" ? [] : [{ bearer: [] }],
    "x-deploybot-auth": guard.auth,
    description: [config.description, `Authorization: ${authText[guard.auth]}.`].filter(Boolean).join("\n\n"),
    responses: { ...config.responses, ...authFailures[guard.auth] },
  }) as unknown as Declaration<R>;
}

const invalidCode = { json: "invalid_body", query: "invalid_query", param: "invalid_param" } as const;

/**
 * One synchronous zod parse per input; a failure is a 400 in our envelope. A NUL character is
 * refused before the parse, or, in what an agent reports (`machineText`), replaced (lib/nul.ts).
 */
function validate(target: keyof typeof invalidCode, schema: z.ZodType, machineText = false) {
  return validator(target, async (raw, c) => {
    const value = (await mayHoldNul(target, raw, c)) ? refuseOrReplaceNul(target, raw, machineText) : raw;
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data as never;
    const { message, details } = describeZodError(parsed.error);
    throw new ApiError(400, invalidCode[target], message, details);
  });
}

/**
 * A JSON text can hold U+0000 only as the escape `\u0000`: one scan of the text the body was
 * parsed from (cached by the request; 0.3 µs for 5.5 KB) instead of a walk of the parsed value (8 µs)
 * for a heartbeat of 20 containers, on a request of ~113 µs.
 */
async function mayHoldNul(target: keyof typeof invalidCode, raw: unknown, c: Context): Promise<boolean> {
  if (target !== "json") return hasNul(raw);
  return (await c.req.text()).includes("\\u0000") && hasNul(raw);
}

function refuseOrReplaceNul(target: keyof typeof invalidCode, raw: unknown, machineText: boolean): unknown {
  if (machineText) return replaceNul(raw);
  const at = nulAt(raw) || target;
  throw new ApiError(400, invalidCode[target], `invalid '${at}': contains a NUL character (U+0000)`, [{ path: at, message: "contains a NUL character" }]);
}

const JSON_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * A body is read only as JSON. Hono's validator reads a body of another media type (or none
 * given) as `{}`: `POST /v1/apps/web/remove` with `{"hosts":["web-1"]}` sent as text/plain removed
 * the app from every host. Such a body is a 415; no body at all is still `{}`.
 */
const jsonOnly: MiddlewareHandler = async (c, next) => {
  const type = c.req.header("content-type")?.split(";")[0]?.trim() ?? "";
  if (!JSON_TYPE.test(type) && (await c.req.text()).length > 0) {
    throw new ApiError(415, "unsupported_media_type", `the body must be JSON, sent with content-type: application/json${type ? ` (not ${type.slice(0, 100)})` : ""}`);
  }
  await next();
};

const isZod = (s: unknown): s is z.ZodType => s instanceof z.ZodType;

/**
 * The validators a declaration asks for: path, query and JSON body (a non-zod body schema is
 * documentation only). `fromAgent`: the body is an agent's report (see validate).
 */
function validatorsOf(request: RouteConfig["request"], fromAgent: boolean): MiddlewareHandler[] {
  if (request?.headers || request?.cookies) throw new Error("route(): header and cookie schemas are not validated here; read them in the handler");
  const out: MiddlewareHandler[] = [];
  if (request?.params) out.push(validate("param", request.params));
  if (request?.query) out.push(validate("query", request.query));
  const media = request?.body?.content?.["application/json"];
  const body = media && "schema" in media ? media.schema : undefined;
  if (isZod(body)) out.push(jsonOnly, validate("json", body, fromAgent));
  return out;
}

/**
 * A sub-app of routes declared with `route()`. `openapi(route, handler)` is @hono/zod-openapi's
 * (same declaration, same document, same handler types) except for validation: the library's
 * zValidator parses asynchronously, calls a hook on every request and gates the content type,
 * 7–10 µs more per heartbeat than one synchronous safeParse per input (in process, 7 rounds of
 * 20k requests: median 60.7 vs 50.7 µs), on a request that costs ~113 µs of server CPU.
 */
export class Router extends OpenAPIHono<AppEnv> {
  constructor() {
    super();
    this.openapi = ((declared: RouteConfig, handler: MiddlewareHandler) => {
      const { middleware, hide, ...config } = declared;
      if (!hide) this.openAPIRegistry.registerPath(config);
      const chain = [...(Array.isArray(middleware) ? middleware : middleware ? [middleware] : []), ...validatorsOf(config.request, config["x-deploybot-auth"] === "agent")];
      this.on([config.method], [config.path.replaceAll(/\/{(.+?)}/g, "/:$1")], ...(chain as MiddlewareHandler[]), handler);
      return this;
    }) as unknown as Router["openapi"];
  }
}

export const newRouter = () => new Router();

/** Path parameters naming one thing: `request: { params: idParam("jobId") }`. Ids are opaque strings. */
export const idParam = <const K extends string>(key: K) => z.object({ [key]: z.string().min(1).max(256) } as { [P in K]: z.ZodString });

/**
 * `GET /` of a collection: `query` filters it, `answer` (a page unless `answered` says otherwise)
 * on 200, a bad query is a 400.
 */
export function listRoute<G extends Guard, Q extends z.ZodObject, A extends z.ZodType>(d: {
  guard: G;
  summary: string;
  query: Q;
  answer: A;
  answered?: string;
}) {
  return route({
    method: "get",
    path: "/",
    guard: d.guard,
    summary: d.summary,
    request: { query: d.query },
    responses: { 200: json(d.answer, d.answered ?? "a page"), ...fails({ 400: "invalid query" }) },
  });
}

/** `GET /{key}`: one `noun` by its id, `answer` on 200, 404 when there is no such one. */
export function oneRoute<G extends Guard, const K extends string, A extends z.ZodType>(d: {
  guard: G;
  summary: string;
  key: K;
  answer: A;
  noun: string;
}) {
  return route({
    method: "get",
    path: `/{${d.key}}` as `/{${K}}`,
    guard: d.guard,
    summary: d.summary,
    request: { params: idParam(d.key) },
    responses: { 200: json(d.answer, `the ${d.noun}`), ...fails({ 404: `no such ${d.noun}` }) },
  });
}

/** A 200 of Server-Sent Events. */
export const eventStream = { description: "the event stream", content: { "text/event-stream": { schema: z.string() } } };
