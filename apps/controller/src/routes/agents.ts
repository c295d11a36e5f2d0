import { heartbeatQuery, heartbeatRequest, registerRequest } from "@deploybot/protocol";
import { Hono } from "hono";
import { ApiError } from "../lib/errors";
import { type AppEnv, requireAgent, requireJoinOrAgentToken, requireScope } from "../middleware/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";

/** Shell-quotes one argument: the command is pasted into a root shell on a new server. */
const quote = (v: string) => `'${v.replace(/'/g, "'\\''")}'`;

/**
 * A ready command for a new Docker host: it fetches the installer from this controller, which
 * then fetches the agent from it too (no checkout on the host). The join token travels in the
 * environment and in a header read from a process substitution, never in an argument list.
 */
function installCommand(url: string, joinToken: string, labels?: string) {
  if (!/^https?:\/\/[^\s'"]+$/.test(url)) throw new ApiError(400, "invalid_url", "url must be an http(s) URL");
  if (labels !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.=:/-]*(,[A-Za-z0-9][A-Za-z0-9_.=:/-]*)*$/.test(labels)) {
    throw new ApiError(400, "invalid_labels", "labels must be a comma-separated list of letters, digits and _ . = : / -");
  }
  const base = url.replace(/\/$/, "");
  const args = ["--url", quote(base), ...(labels ? ["--labels", quote(labels)] : [])];
  return {
    url: base,
    command: [
      `export DEPLOYBOT_JOIN_TOKEN=${quote(joinToken)};`,
      `curl -fsSL -H @<(printf 'Authorization: Bearer %s\\n' "$DEPLOYBOT_JOIN_TOKEN") ${quote(`${base}/v1/agents/dist/install-agent.sh`)}`,
      `| sudo --preserve-env=DEPLOYBOT_JOIN_TOKEN bash -s -- ${args.join(" ")}`,
    ].join(" "),
    note: "run in bash on the new host (Docker, git and Node >= 20.19 installed); it installs the agent from this controller; the command contains the join token",
  };
}

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
      const url = c.req.query("url") ?? new URL(c.req.url).origin;
      const labels = c.req.query("labels");
      return c.json(installCommand(url, joinToken, labels));
    })
    .post("/:agentId/revoke", requireScope(s.apiTokens, "admin"), (c) => c.json({ agent: s.agents.revoke(c.req.param("agentId")) }))
    .delete("/:agentId", requireScope(s.apiTokens, "admin"), (c) => {
      s.agents.remove(c.req.param("agentId"));
      return c.body(null, 204);
    });
}
