import { eq, sql } from "drizzle-orm";
import { describe, expect } from "vitest";
import { agents } from "../src/db/schema";
import { ADMIN, type Harness, JOIN, test } from "./fixture";

const register = (h: Harness, token: string, hostname: string) =>
  h.call("POST", "/v1/agents/register", { token, body: { hostname, version: "test" } });
const joinToken = async (h: Harness, body: Record<string, unknown>) => {
  const res = await h.call("POST", "/v1/agents/join-tokens", { token: ADMIN, body });
  expect(res.status).toBe(201);
  return (await res.json()).joinToken.token as string;
};

describe("host identity", () => {
  test("a stolen join token cannot take over a registered host, its jobs or its secrets", async ({ h }) => {
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "postgres://secret-db" } });
    const real = await h.register("api-1");
    await h.register("api-2");
    await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "api", image: "127.0.0.1:5000/acme/api:1" } });
    const stolen = await register(h, JOIN, "api-1");
    expect(stolen.status).toBe(409);
    const { error } = await stolen.json();
    expect(error.code).toBe("host_exists");
    expect(error.message).toContain("deploybot agents remove api-1");
    // the real agent is untouched and still gets its job with the secret
    const beat = await (await h.heartbeat(real)).json();
    expect(beat.job.spec.secretEnv).toEqual({ DATABASE_URL: "postgres://secret-db" });
  });

  test("the join token still registers new host names; the host's own token re-registers it", async ({ h }) => {
    const first = await register(h, JOIN, "web-1");
    expect(first.status).toBe(200);
    const own = (await first.json()).token;
    const again = await register(h, own, "web-1");
    expect(again.status).toBe(200);
  });

  test("after an admin removes a host, the join token registers the name again", async ({ h }) => {
    const agent = await h.register("web-1");
    expect((await h.call("DELETE", `/v1/agents/${agent.id}`, { token: ADMIN })).status).toBe(204);
    expect((await register(h, JOIN, "web-1")).status).toBe(200);
  });

  test("an expired token of the current version still re-registers its own host", async ({ h }) => {
    const agent = await h.register("web-1");
    // the JWT expiry uses the wall clock: forge one that expired an hour ago
    const tokens = h.services.agentTokens as unknown as { key: Uint8Array };
    const { SignJWT } = await import("jose");
    const expired = await new SignJWT({ tv: 1 })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuer("deploybot")
      .setAudience("deploybot-agent")
      .setSubject(agent.id)
      .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(tokens.key);
    expect((await h.heartbeat({ id: agent.id, token: expired })).status).toBe(401);
    expect((await register(h, expired, "web-1")).status).toBe(200);
    // but it is the current version only: the rotated one is dead
    expect((await register(h, expired, "web-1")).status).toBe(401);
  });

  test("per-host join tokens: one-time, for one name, and they may replace that host", async ({ h }) => {
    const old = await h.register("web-1");
    const forWeb1 = await joinToken(h, { host: "web-1" });
    expect((await register(h, forWeb1, "web-2")).status).toBe(403);
    const replaced = await register(h, forWeb1, "web-1");
    expect(replaced.status).toBe(200);
    expect((await replaced.json()).agent.id).toBe(old.id);
    expect((await h.heartbeat(old)).status).toBe(401);
    // single use
    expect((await register(h, forWeb1, "web-1")).status).toBe(401);
    const anyNew = await joinToken(h, { singleUse: false });
    expect((await register(h, anyNew, "web-7")).status).toBe(200);
    expect((await register(h, anyNew, "web-8")).status).toBe(200);
    expect((await register(h, anyNew, "web-1")).status).toBe(409);
    // listed without the token; refused after revocation or expiry
    const list = await (await h.call("GET", "/v1/agents/join-tokens", { token: ADMIN })).text();
    expect(list).not.toContain(anyNew);
    const { joinTokens } = JSON.parse(list);
    await h.call("DELETE", `/v1/agents/join-tokens/${joinTokens[0].id}`, { token: ADMIN });
    expect((await register(h, anyNew, "web-9")).status).toBe(401);
    const short = await joinToken(h, { ttlSeconds: 60 });
    h.clock.advance(61_000);
    expect((await register(h, short, "web-10")).status).toBe(401);
  });

  test("join tokens are created by admins only", async ({ h }) => {
    const deploy = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "d", scope: "deploy" } })).json()).token;
    expect((await h.call("POST", "/v1/agents/join-tokens", { token: deploy, body: {} })).status).toBe(403);
    expect((await h.call("POST", "/v1/agents/join-tokens", { token: ADMIN, body: { host: "-bad" } })).status).toBe(400);
  });

  test("a token rotated by another writer of the database stops working at once", async ({ h }) => {
    const agent = await h.register("web-1");
    expect((await h.heartbeat(agent)).status).toBe(200);
    await h.db.update(agents).set({ tokenVersion: sql`${agents.tokenVersion} + 1` }).where(eq(agents.id, agent.id));
    expect((await h.heartbeat(agent)).status).toBe(401);
  });

  test("a job's secrets go only to a host the app is configured for", async ({ h }) => {
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "postgres://secret-db" } });
    const stranger = await h.register("web-1");
    // even an admin's deployment to a host outside the app's hosts carries no secret values
    const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "api", image: "127.0.0.1:5000/acme/api:1", hosts: ["web-1"] } });
    expect(res.status).toBe(201);
    const beat = await (await h.heartbeat(stranger)).json();
    expect(beat.job.spec.secretEnv).toEqual({});
    expect(JSON.stringify(beat)).not.toContain("secret-db");
  });
});
