import type { TokenScope } from "@deploybot/protocol";
import { createMiddleware } from "hono/factory";
import { ApiError } from "../lib/errors";
import type { AgentTokens, ApiTokens } from "../services/auth";
import { bearer, scopeAllows, secretsEqual } from "../services/auth";
import type { AgentService } from "../services/agents";
import type { JoinTokens } from "../services/joinTokens";
import type { IdempotencyHandle } from "./idempotency";

export type AgentRow = Awaited<ReturnType<AgentService["authenticate"]>>;
export type UserPrincipal = { tokenId: string; scope: TokenScope; apps: string[] | null };
/** What a registration may do: `join` registers new host names only; `joinToken` may name the one host it (re)registers. */
export type JoinGrant = { kind: "join" } | { kind: "joinToken"; id: string; hostname: string | null };
export type AppEnv = {
  Variables: { user: UserPrincipal; agent: AgentRow; joinGrant: JoinGrant; requestId: string; idempotency: IdempotencyHandle | undefined };
};

/** User routes: an API token (never an agent JWT) with at least `scope`. */
export function requireScope(tokens: ApiTokens, scope: TokenScope) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const principal = await tokens.authenticate(bearer(c.req.header("authorization")));
    if (principal?.kind !== "user") throw new ApiError(401, "unauthorized", "invalid or revoked API token");
    if (!scopeAllows(principal.scope, scope)) throw new ApiError(403, "forbidden", `this route needs the '${scope}' scope`);
    c.set("user", { tokenId: principal.tokenId, scope: principal.scope, apps: principal.apps });
    await next();
  });
}

/** Agent routes: a current agent JWT (never an API token); `:id` in the path must be its own. */
export function requireAgent(jwt: AgentTokens, agents: AgentService) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const check = await jwt.verify(bearer(c.req.header("authorization")));
    if (!check.ok) throw new ApiError(401, "unauthorized", `agent token refused: ${check.reason}`);
    const agent = await jwt.identify(check, () => agents.authenticate(check.agentId, check.tokenVersion));
    const pathAgent = c.req.param("agentId");
    if (pathAgent !== undefined && pathAgent !== agent.id) throw new ApiError(403, "forbidden", "the token belongs to another agent");
    c.set("agent", agent);
    await next();
  });
}

/**
 * Registration: the join token, or an agent's own current token (an agent that registered once
 * keeps working after the join token is rotated, as a CI runner keeps its runner token).
 */
export function requireJoinOrAgentToken(joinToken: string | undefined, jwt: AgentTokens, agents: AgentService, joinTokens: JoinTokens) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const given = bearer(c.req.header("authorization"));
    if (joinToken && secretsEqual(given, joinToken)) {
      c.set("joinGrant", { kind: "join" });
      return next();
    }
    const grant = await joinTokens.check(given);
    if (grant) {
      c.set("joinGrant", { kind: "joinToken", id: grant.id, hostname: grant.hostname });
      return next();
    }
    // an expired token of the current version (or a newer one: a restored backup) still identifies the agent of its host
    const check = given.split(".").length === 3 ? await jwt.verify(given, { allowExpired: true }) : null;
    if (check?.ok) {
      c.set("agent", await agents.authenticateToRegister(check.agentId, check.tokenVersion));
      return next();
    }
    if (!joinToken && !(await joinTokens.any())) throw new ApiError(403, "registration_closed", "DEPLOYBOT_JOIN_TOKEN is not set on the controller and no join token was created");
    throw new ApiError(401, "unauthorized", "invalid join token");
  });
}
