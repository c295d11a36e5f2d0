import { createJoinTokenRequest, heartbeatQuery, heartbeatRequest, registerRequest } from "@deploybot/protocol";
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
  const joinOrAgent = requireJoinOrAgentToken(joinToken, s.agentTokens, s.agents, s.joinTokens);
  return new Hono<AppEnv>()
    .post("/register", joinOrAgent, validate("json", registerRequest), async (c) =>
      c.json(await s.agents.register(c.req.valid("json"), { self: c.get("agent"), grant: c.get("joinGrant") }), 200),
    )
    .post("/join-tokens", requireScope(s.apiTokens, "admin"), validate("json", createJoinTokenRequest), (c) => {
      const { host, singleUse, ttlSeconds } = c.req.valid("json");
      return c.json({ joinToken: s.joinTokens.create({ hostname: host, singleUse, ttlSeconds, createdBy: c.get("user").tokenId }) }, 201);
    })
    .get("/join-tokens", requireScope(s.apiTokens, "admin"), (c) => c.json({ joinTokens: s.joinTokens.list() }))
    .delete("/join-tokens/:id", requireScope(s.apiTokens, "admin"), (c) => c.json({ joinToken: s.joinTokens.revoke(c.req.param("id")) }))
    .post("/:agentId/heartbeat", agentAuth, validate("query", heartbeatQuery), validate("json", heartbeatRequest), async (c) => {
      const { wait } = c.req.valid("query");
      const body = c.req.valid("json");
      const answer = await s.agents.heartbeat(c.get("agent"), body, wait, () => c.req.raw.signal);
      const update = await s.agentUpdates.offer(c.get("agent"), body.status, answer.job !== null);
      return c.json(update ? { ...answer, update } : answer);
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
