import { healthAnswer, readyAnswer } from "@deploybot/protocol";
import { z } from "zod";
import type { OpenApiDocument } from "../openapi/document";
import { docsPage } from "../openapi/html";
import { fails, type Guard, json, newRouter, route } from "../openapi/route";

const open: Guard<"public"> = { auth: "public", middleware: [] };
/** What /openapi.json answers, as far as a client needs to know before reading it. */
const documentShape = z
  .object({ openapi: z.string(), info: z.object({ title: z.string(), version: z.string() }), paths: z.record(z.string(), z.unknown()) })
  .passthrough();

type Readiness = { ok: true } | { ok: false; code: string; message: string };

/**
 * Public: `/healthz`, `/readyz` (`ready` checks the database), and `/openapi.json` + `/docs` generated from the routes' own declarations
 * (`document` is called on first use, once every route is mounted). `servers` is the URL the
 * client reached: DEPLOYBOT_PUBLIC_URL when set, else this request's origin.
 */
export function metaRoutes(document: () => OpenApiDocument, publicUrl: string | undefined, ready: () => Promise<Readiness>) {
  let html: string | undefined;
  return newRouter()
    .openapi(
      route({ method: "get", path: "/healthz", guard: open, summary: "Liveness", responses: { 200: json(healthAnswer, "alive") } }),
      async (c) => c.json({ ok: true as const }, 200),
    )
    .openapi(
      route({
        method: "get",
        path: "/readyz",
        guard: open,
        summary: "Readiness: the database file is the one opened and answers a query",
        responses: { 200: json(readyAnswer, "ready"), ...fails({ 503: "the database was deleted, replaced or is corrupt" }) },
      }),
      async (c) => {
        const r = await ready();
        if (r.ok) return c.json({ ok: true as const }, 200);
        // code and message also at the top level, as the first /readyz answered
        return c.json({ ...r, error: { code: r.code, message: r.message } }, 503);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/openapi.json",
        guard: open,
        summary: "This API as an OpenAPI 3.1 document",
        responses: { 200: json(documentShape, "the document") },
      }),
      async (c) => {
        const { openapi, info, paths = {}, ...rest } = document();
        return c.json({ openapi, info, servers: [{ url: publicUrl ?? new URL(c.req.url).origin }], paths, ...rest }, 200);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/docs",
        guard: open,
        summary: "This API as a readable page",
        responses: { 200: { description: "HTML", content: { "text/html": { schema: z.string() } } } },
      }),
      async (c) => {
        html ??= docsPage(document());
        return c.html(html);
      },
    );
}
