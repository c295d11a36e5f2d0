import { apiToken, tokenSelf } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { apiTokens } from "../src/db/schema";
import { ADMIN, test } from "./fixture";

describe("/v1/tokens", () => {
  test("create shows the token once, list never shows it, revoke kills it", async ({ h }) => {
    const created = await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "ci", scope: "deploy" } });
    expect(created.status).toBe(201);
    const body = await created.json();
    expect(body.token).toMatch(/^dbt_/);
    apiToken.parse(body);
    expect((await h.call("GET", "/v1/hosts", { token: body.token })).status).toBe(200);

    const listText = await (await h.call("GET", "/v1/tokens", { token: ADMIN })).text();
    expect(listText).not.toContain(body.token);
    expect(JSON.parse(listText).tokens).toHaveLength(1);

    const revoked = await h.call("DELETE", `/v1/tokens/${body.id}`, { token: ADMIN });
    expect((await revoked.json()).revokedAt).not.toBeNull();
    expect((await h.call("GET", "/v1/hosts", { token: body.token })).status).toBe(401);
  });

  test("only admin tokens manage tokens", async ({ h }) => {
    const deploy = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "d", scope: "deploy" } })).json()).token;
    expect((await h.call("POST", "/v1/tokens", { token: deploy, body: { name: "x", scope: "admin" } })).status).toBe(403);
    expect((await h.call("GET", "/v1/tokens", { token: deploy })).status).toBe(403);
    expect((await h.call("GET", "/v1/tokens")).status).toBe(401);
  });

  test("tokens are stored hashed", async ({ h }) => {
    const { token } = await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "x", scope: "read" } })).json();
    const rows = await h.services.apiTokens.list();
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(JSON.stringify(await h.db.select().from(apiTokens))).not.toContain(token);
  });

  test("GET /v1/tokens/self tells any valid token its own id and scope, and refuses others", async ({ h }) => {
    const read = await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "viewer", scope: "read" } })).json();
    const self = await h.call("GET", "/v1/tokens/self", { token: read.token });
    expect(self.status).toBe(200);
    expect(tokenSelf.parse(await self.json())).toEqual({ id: read.id, scope: "read", apps: null });
    expect(await (await h.call("GET", "/v1/tokens/self", { token: ADMIN })).json()).toEqual({ id: "bootstrap", scope: "admin", apps: null });
    const limited = await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "web-ci", scope: "deploy", apps: ["web"] } })).json();
    expect(await (await h.call("GET", "/v1/tokens/self", { token: limited.token })).json()).toEqual({ id: limited.id, scope: "deploy", apps: ["web"] });
    expect((await h.call("GET", "/v1/tokens/self", { token: "dbt_not-a-token" })).status).toBe(401);
    expect((await h.call("GET", "/v1/tokens/self")).status).toBe(401);
    await h.call("DELETE", `/v1/tokens/${read.id}`, { token: ADMIN });
    expect((await h.call("GET", "/v1/tokens/self", { token: read.token })).status).toBe(401);
  });

  test("unknown token id is a 404", async ({ h }) => {
    expect((await h.call("DELETE", "/v1/tokens/tok_nope", { token: ADMIN })).status).toBe(404);
  });
});
