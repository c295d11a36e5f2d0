import { describe, expect } from "vitest";
import { idempotencyKeys } from "../src/db/schema";
import { ADMIN, JOIN, test } from "./fixture";

// biome-ignore lint/suspicious/noExplicitAny: tests read answers loosely and check them with assertions
type Answer = { status: number; replayed: string | null; body: Record<string, any> };
const read = async (r: Response): Promise<Answer> => ({ status: r.status, replayed: r.headers.get("idempotent-replayed"), body: await r.json() });

describe("Idempotency-Key on POST /v1/tokens", () => {
  test("8 concurrent creations with one key make one token, and every answer carries it", async ({ h }) => {
    const post = () => h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "ci-once", scope: "read" }, headers: { "idempotency-key": "token-once" } }).then(read);
    const answers = await Promise.all(Array.from({ length: 8 }, post));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(201));
    expect(new Set(answers.map((a) => a.body.token)).size).toBe(1);
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    expect(answers.filter((a) => a.replayed === "true")).toHaveLength(7);
    const list = await (await h.call("GET", "/v1/tokens", { token: ADMIN })).json();
    expect(list.tokens.filter((t: { name: string }) => t.name === "ci-once")).toHaveLength(1);
    // the replayed token is the real one
    const self = await h.call("GET", "/v1/tokens/self", { token: answers[7]!.body.token });
    expect(self.status).toBe(200);
    // kept for the replay, but never in plaintext
    const stored = await h.db.select({ body: idempotencyKeys.body }).from(idempotencyKeys);
    expect(stored).toHaveLength(1);
    expect(stored[0]!.body).not.toContain(answers[0]!.body.token);
  });

  test("a later retry gets the same token; the key with another body is refused", async ({ h }) => {
    const post = (name: string) => h.call("POST", "/v1/tokens", { token: ADMIN, body: { name, scope: "deploy" }, headers: { "idempotency-key": "k1" } }).then(read);
    const first = await post("deployer");
    const again = await post("deployer");
    expect(again).toMatchObject({ status: 201, replayed: "true" });
    expect(again.body.token).toBe(first.body.token);
    expect((await post("someone-else")).status).toBe(422);
  });
});

describe("Idempotency-Key on POST /v1/agents/join-tokens", () => {
  test("a retry (a CLI failing over to another controller) gets the same join token; no second one is created", async ({ h }) => {
    const post = () =>
      h.call("POST", "/v1/agents/join-tokens", { token: ADMIN, body: { host: "web-9" }, headers: { "idempotency-key": "cli-join-once" } }).then(read);
    const first = await post();
    const again = await post();
    expect(first.status).toBe(201);
    expect(again).toMatchObject({ status: 201, replayed: "true" });
    expect(again.body.joinToken).toEqual(first.body.joinToken);
    const list = await (await h.call("GET", "/v1/agents/join-tokens", { token: ADMIN })).json();
    expect(list.joinTokens).toHaveLength(1);
  });
});

describe("Idempotency-Key on POST /v1/agents/register", () => {
  const body = { hostname: "web-1", labels: ["builder"], version: "1.0.0" };

  test("8 concurrent registrations with one key register once: one id, one token that works", async ({ h }) => {
    const post = () => h.call("POST", "/v1/agents/register", { token: JOIN, body, headers: { "idempotency-key": "register-once" } }).then(read);
    const answers = await Promise.all(Array.from({ length: 8 }, post));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(200));
    expect(new Set(answers.map((a) => a.body.agent.id)).size).toBe(1);
    // each registration rotates the token: without the key, only the last of 8 would still work
    expect(new Set(answers.map((a) => a.body.token)).size).toBe(1);
    expect(answers.filter((a) => a.replayed === "true")).toHaveLength(7);
    const agent = { id: answers[0]!.body.agent.id, token: answers[0]!.body.token };
    expect((await h.heartbeat(agent)).status).toBe(200);
  });

  test("a retry after a lost answer gets it even though its single-use join token is spent; another credential does not", async ({ h }) => {
    const created = await (await h.call("POST", "/v1/agents/join-tokens", { token: ADMIN, body: { host: "web-1" } })).json();
    const oneUse = created.joinToken.token as string;
    const register = (token: string, key: string) => h.call("POST", "/v1/agents/register", { token, body, headers: { "idempotency-key": key } }).then(read);
    const first = await register(oneUse, "boot-1");
    expect(first.status).toBe(200);
    const retry = await register(oneUse, "boot-1");
    expect(retry).toMatchObject({ status: 200, replayed: "true" });
    expect(retry.body.token).toBe(first.body.token);
    // without the key the spent token is refused, as before
    expect((await h.call("POST", "/v1/agents/register", { token: oneUse, body })).status).toBe(401);
    // the same key under another credential is another request: no replay of this host's token
    const other = await register("not-a-join-token", "boot-1");
    expect(other.status).toBe(401);
    expect(other.replayed).toBeNull();
  });
});
