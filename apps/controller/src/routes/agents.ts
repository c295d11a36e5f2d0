import { heartbeatQuery, heartbeatRequest, registerRequest } from "@deploybot/protocol";
import { Hono } from "hono";
import { type AppEnv, requireAgent, requireJoinToken, requireScope } from "../middleware/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";

export function agentRoutes(s: Services, joinToken: string | undefined) {
  const agentAuth = requireAgent(s.agentTokens, s.agents);
  return new Hono<AppEnv>()
    .post("/register", requireJoinToken(joinToken), validate("json", registerRequest), async (c) =>
      c.json(await s.agents.register(c.req.valid("json")), 200),
    )
    .post("/:agentId/heartbeat", agentAuth, validate("query", heartbeatQuery), validate("json", heartbeatRequest), async (c) => {
      const { wait } = c.req.valid("query");
      return c.json(await s.agents.heartbeat(c.get("agent"), c.req.valid("json"), wait, () => c.req.raw.signal));
    })
    .post("/:agentId/revoke", requireScope(s.apiTokens, "admin"), (c) => c.json({ agent: s.agents.revoke(c.req.param("agentId")) }))
    .delete("/:agentId", requireScope(s.apiTokens, "admin"), (c) => {
      s.agents.remove(c.req.param("agentId"));
      return c.body(null, 204);
    });
}
