import { Hono } from "hono";
import type { AppEnv } from "../middleware/auth";
import { openApiDocument } from "../openapi/document";
import { docsPage } from "../openapi/html";
import { apiRoutes } from "../openapi/routes";

/** Public: `/openapi.json` and `/docs`, rendered once from src/openapi/routes.ts. */
export function docsRoutes() {
  let json: string | undefined;
  let html: string | undefined;
  return new Hono<AppEnv>()
    .get("/openapi.json", (c) => {
      json ??= JSON.stringify(openApiDocument(apiRoutes));
      return c.body(json, 200, { "content-type": "application/json" });
    })
    .get("/docs", (c) => {
      html ??= docsPage(apiRoutes);
      return c.html(html);
    });
}
