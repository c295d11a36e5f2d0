import { apiToken, createdToken, createTokenRequest, tokenList, tokenSelf } from "@deploybot/protocol";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, idParam, json, jsonBody, newRouter, route } from "../openapi/route";
import type { Services } from "../services";

export function tokenRoutes(s: Services) {
  const { admin, read } = guards(s);
  return newRouter()
    .openapi(
      route({
        method: "post",
        path: "/",
        guard: admin,
        // the answer holds the new token: a retry gets it again, stored sealed for the day it is kept
        middleware: [idempotency(s.idempotencyKeys, { sealed: true })],
        summary: "Create an API token (shown once; a retry with the same Idempotency-Key gets the same token)",
        request: { body: jsonBody(createTokenRequest) },
        responses: { 201: json(createdToken, "created"), ...fails({ 400: "invalid body", 409: "the same Idempotency-Key is still being answered", 422: "Idempotency-Key reused" }) },
      }),
      async (c) => {
        const { name, scope, apps } = c.req.valid("json");
        return c.json(await s.apiTokens.create(name, scope, apps), 201);
      },
    )
    .openapi(
      route({ method: "get", path: "/", guard: admin, summary: "List API tokens", responses: { 200: json(tokenList, "the tokens") } }),
      async (c) => c.json({ tokens: await s.apiTokens.list() }, 200),
    )
    .openapi(
      route({
        method: "get",
        path: "/self",
        guard: read,
        summary: "The token making the request: its id and scope (the dashboard shows only what it may do)",
        responses: { 200: json(tokenSelf, "the token") },
      }),
      async (c) => {
        const user = c.get("user");
        return c.json({ id: user.tokenId, scope: user.scope, apps: user.apps }, 200);
      },
    )
    .openapi(
      route({
        method: "delete",
        path: "/{tokenId}",
        guard: admin,
        summary: "Revoke an API token (it stays listed, revoked)",
        request: { params: idParam("tokenId") },
        responses: { 200: json(apiToken, "revoked"), ...fails({ 404: "no such token" }) },
      }),
      async (c) => c.json(await s.apiTokens.revoke(c.req.valid("param").tokenId), 200),
    );
}
