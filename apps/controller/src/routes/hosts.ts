import { Hono } from "hono";
import { type AppEnv, requireScope } from "../middleware/auth";
import type { Services } from "../services";

export function hostRoutes(s: Services) {
  return new Hono<AppEnv>().get("/", requireScope(s.apiTokens, "read"), (c) => c.json({ hosts: s.agents.list() }));
}
