import { agentAnswer, createdJoinToken, createJoinTokenRequest, joinTokenInfo, heartbeatQuery, heartbeatRequest, heartbeatResponse, installCommand, registerRequest, registerResponse } from "@deploybot/protocol";
import { z } from "zod";
import { ApiError } from "../lib/errors";
import { cloudInit, type InstallTarget, installCommand as installCommandFor } from "../services/agentInstall";
import { requireJoinOrAgentToken } from "../middleware/auth";
import { credentialPrincipal, idempotency } from "../middleware/idempotency";
import { fails, type Guard, guards, idParam, json, jsonBody, newRouter, route } from "../openapi/route";
import type { Services } from "../services";
import { CONTROLLER_FEATURES, finishInHeartbeat } from "../services/jobReports";

const installQuery = z.object({
  url: z.string().optional().describe("the controller's URL as the new host reaches it (default: this request's origin)"),
  labels: z.string().optional().describe("comma-separated labels for the new agent"),
  hostname: z.string().optional().describe("the new agent's host name (default: the server's own)"),
});

export function agentRoutes(s: Services, joinToken: string | undefined) {
  const { agent, admin } = guards(s);
  const join: Guard<"join"> = { auth: "join", middleware: [requireJoinOrAgentToken(joinToken, s.agentTokens, s.agents, s.joinTokens)] };
  const agentId = idParam("agentId");
  const requireJoinToken = () => {
    if (!joinToken) throw new ApiError(409, "registration_closed", "DEPLOYBOT_JOIN_TOKEN is not set on the controller");
    return joinToken;
  };
  const installTarget = (q: z.infer<typeof installQuery>, requestUrl: string): InstallTarget => ({ ...q, url: q.url ?? new URL(requestUrl).origin });
  return newRouter()
    .openapi(
      route({
        method: "post",
        path: "/register",
        guard: join,
        // Looked up before the guard, keyed on the credential presented: a retry whose answer was
        // lost gets the same id and token even once its single-use join token is spent. The
        // answer holds the agent's token, so it is stored sealed.
        beforeGuard: [idempotency(s.idempotencyKeys, { sealed: true, principal: credentialPrincipal })],
        summary: "Agent: register with the join token (or re-register with its own current token), get an agent id and a fresh JWT",
        request: { body: jsonBody(registerRequest) },
        responses: {
          200: json(registerResponse, "registered"),
          ...fails({ 400: "invalid body", 409: "the same Idempotency-Key is still being answered", 422: "Idempotency-Key reused" }),
        },
      }),
      async (c) =>
        c.json({ ...(await s.agents.register(c.req.valid("json"), { self: c.get("agent"), grant: c.get("joinGrant") })), features: CONTROLLER_FEATURES }, 200),
    )
    .openapi(
      route({
        method: "post",
        path: "/join-tokens",
        guard: admin,
        // a CLI that fails over re-sends its POST to another controller: one token per key, not two live ones
        middleware: [idempotency(s.idempotencyKeys, { sealed: true })],
        summary: "Create a join token for one host name or any new one (single-use by default; shown once; a retry with the same Idempotency-Key gets the same token)",
        request: { body: jsonBody(createJoinTokenRequest) },
        responses: {
          201: json(z.object({ joinToken: createdJoinToken }), "created"),
          ...fails({ 400: "invalid body", 409: "the same Idempotency-Key is still being answered", 422: "Idempotency-Key reused" }),
        },
      }),
      async (c) => {
        const { host, singleUse, ttlSeconds } = c.req.valid("json");
        return c.json({ joinToken: await s.joinTokens.create({ hostname: host, singleUse, ttlSeconds, createdBy: c.get("user").tokenId }) }, 201);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/join-tokens",
        guard: admin,
        summary: "List join tokens (never the tokens themselves)",
        responses: { 200: json(z.object({ joinTokens: z.array(joinTokenInfo) }), "the join tokens") },
      }),
      async (c) => c.json({ joinTokens: await s.joinTokens.list() }, 200),
    )
    .openapi(
      route({
        method: "delete",
        path: "/join-tokens/{id}",
        guard: admin,
        summary: "Revoke a join token",
        request: { params: idParam("id") },
        responses: { 200: json(z.object({ joinToken: joinTokenInfo }), "revoked"), ...fails({ 404: "no such join token" }) },
      }),
      async (c) => c.json({ joinToken: await s.joinTokens.revoke(c.req.valid("param").id) }, 200),
    )
    .openapi(
      route({
        method: "post",
        path: "/{agentId}/heartbeat",
        guard: agent,
        summary: "Agent: liveness, held jobs and containers, optionally the final status of the held job (`finished`); answers at most one job (long-poll with ?wait=)",
        request: { params: agentId, query: heartbeatQuery, body: jsonBody(heartbeatRequest) },
        responses: { 200: json(heartbeatResponse, "acknowledged"), ...fails({ 400: "invalid body" }) },
      }),
      async (c) => {
        const { wait } = c.req.valid("query");
        const agent = c.get("agent");
        const { heartbeat: body, finished, claimed } = await finishInHeartbeat(s, agent.id, c.req.valid("json"), agent);
        const answer = await s.agents.heartbeat(agent, body, wait, () => c.req.raw.signal, claimed);
        const update = await s.agentUpdates.offer(agent, body.status, answer.job !== null);
        return c.json({ ...answer, features: CONTROLLER_FEATURES, ...(update ? { update } : {}), ...(finished ? { finished } : {}) }, 200);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/bundle",
        guard: join,
        summary: "The agent as one bundled ES module (plain Node >= 20.19); X-Deploybot-Agent-Version and X-Deploybot-Sha256 name it",
        responses: {
          200: { description: "the bundle", content: { "text/javascript": { schema: { type: "string" } } } },
          ...fails({ 503: "no agent distribution" }),
        },
      }),
      async (c) => {
        const file = await s.agentDist.file("deploybot-agent.mjs");
        return c.body(file.body, 200, file.headers);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/dist/{file}",
        guard: join,
        summary:
          "The agent distribution: manifest.json ({version, node, files: {name: {sha256, size}}}), deploybot-agent.mjs, deploybot-agent.service, deploybot-proxy.service, deploybot-proxy.path, install-agent.sh",
        request: { params: idParam("file") },
        responses: {
          200: { description: "the file", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
          ...fails({ 404: "no such file", 503: "no agent distribution" }),
        },
      }),
      async (c) => {
        const file = await s.agentDist.file(c.req.valid("param").file);
        return c.body(file.body, 200, file.headers);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/install-command",
        guard: admin,
        summary: "A ready install command for a new Docker host: fetches install-agent.sh and the agent from this controller (contains the join token)",
        request: { query: installQuery },
        responses: { 200: json(installCommand, "the command"), ...fails({ 400: "bad url, labels or hostname", 409: "no join token configured" }) },
      }),
      async (c) => c.json(installCommandFor(installTarget(c.req.valid("query"), c.req.url), requireJoinToken()), 200),
    )
    .openapi(
      route({
        method: "get",
        path: "/cloud-init",
        guard: admin,
        summary: "cloud-init user-data for a new server: installs Docker, git and Node, then the agent from this controller (contains the join token)",
        request: { query: installQuery },
        responses: {
          200: { description: "the user-data", content: { "text/cloud-config": { schema: { type: "string" } } } },
          ...fails({ 400: "bad url, labels or hostname", 409: "no join token configured" }),
        },
      }),
      async (c) =>
        c.body(cloudInit(installTarget(c.req.valid("query"), c.req.url), requireJoinToken()), 200, { "content-type": "text/cloud-config; charset=utf-8" }),
    )
    .openapi(
      route({
        method: "post",
        path: "/{agentId}/revoke",
        guard: admin,
        summary: "Revoke an agent's token and refuse it",
        request: { params: agentId },
        responses: { 200: json(agentAnswer, "revoked"), ...fails({ 404: "no such agent" }) },
      }),
      async (c) => c.json({ agent: await s.agents.revoke(c.req.valid("param").agentId) }, 200),
    )
    .openapi(
      route({
        method: "delete",
        path: "/{agentId}",
        guard: admin,
        summary: "Forget an agent",
        request: { params: agentId },
        responses: { 204: { description: "gone" }, ...fails({ 404: "no such agent" }) },
      }),
      async (c) => {
        await s.agents.remove(c.req.valid("param").agentId);
        return c.body(null, 204);
      },
    );
}
