import { createTokenRequest } from "@deploybot/protocol";
import { Hono } from "hono";
import { type AppEnv, requireScope } from "../middleware/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";

export function tokenRoutes(s: Services) {
  const admin = requireScope(s.apiTokens, "admin");
  return new Hono<AppEnv>()
    .post("/", admin, validate("json", createTokenRequest), (c) => {
      const { name, scope, apps } = c.req.valid("json");
      return c.json(s.apiTokens.create(name, scope, apps), 201);
    })
    .get("/", admin, (c) => c.json({ tokens: s.apiTokens.list() }))
    .get("/self", requireScope(s.apiTokens, "read"), (c) => {
      const user = c.get("user");
      return c.json({ id: user.tokenId, scope: user.scope, apps: user.apps });
    })
    .delete("/:tokenId", admin, (c) => c.json(s.apiTokens.revoke(c.req.param("tokenId"))));
}
