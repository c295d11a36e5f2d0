import { heartbeatQuery, heartbeatRequest, registerRequest } from "@deploybot/protocol";
import { type Context, Hono } from "hono";
import { ApiError } from "../lib/errors";
import { type AppEnv, requireAgent, requireJoinOrAgentToken, requireScope } from "../middleware/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";
import { cloudInit, type InstallTarget, installCommand } from "../services/agentInstall";

const installTarget = (c: Context): InstallTarget => ({
  url: c.req.query("url") ?? new URL(c.req.url).origin,
  labels: c.req.query("labels"),
  hostname: c.req.query("hostname"),
});

export function agentRoutes(s: Services, joinToken: string | undefined) {
  const agentAuth = requireAgent(s.agentTokens, s.agents);
  const joinOrAgent = requireJoinOrAgentToken(joinToken, s.agentTokens, s.agents);
  return new Hono<AppEnv>()
    .post("/register", joinOrAgent, validate("json", registerRequest), async (c) => {
      const body = c.req.valid("json");
      const self = c.get("agent");
      if (self && self.hostname !== body.hostname) throw new ApiError(403, "forbidden", "an agent token may only re-register its own host");
      return c.json(await s.agents.register(body), 200);
    })
    .post("/:agentId/heartbeat", agentAuth, validate("query", heartbeatQuery), validate("json", heartbeatRequest), async (c) => {
      const { wait } = c.req.valid("query");
      return c.json(await s.agents.heartbeat(c.get("agent"), c.req.valid("json"), wait, () => c.req.raw.signal));
    })
    .get("/bundle", joinOrAgent, async (c) => {
      const file = await s.agentDist.file("deploybot-agent.mjs");
      return c.body(file.body, 200, file.headers);
    })
    .get("/dist/:file", joinOrAgent, async (c) => {
      const file = await s.agentDist.file(c.req.param("file"));
      return c.body(file.body, 200, file.headers);
    })
    .get("/install-command", requireScope(s.apiTokens, "admin"), (c) => {
      if (!joinToken) throw new ApiError(409, "registration_closed", "DEPLOYBOT_JOIN_TOKEN is not set on the controller");
      return c.json(installCommand(installTarget(c), joinToken));
    })
    .get("/cloud-init", requireScope(s.apiTokens, "admin"), (c) => {
      if (!joinToken) throw new ApiError(409, "registration_closed", "DEPLOYBOT_JOIN_TOKEN is not set on the controller");
      return c.body(cloudInit(installTarget(c), joinToken), 200, { "content-type": "text/cloud-config; charset=utf-8" });
    })
    .post("/:agentId/revoke", requireScope(s.apiTokens, "admin"), (c) => c.json({ agent: s.agents.revoke(c.req.param("agentId")) }))
    .delete("/:agentId", requireScope(s.apiTokens, "admin"), (c) => {
      s.agents.remove(c.req.param("agentId"));
      return c.body(null, 204);
    });
}
