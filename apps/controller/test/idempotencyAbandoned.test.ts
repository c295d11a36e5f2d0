import { createHash } from "node:crypto";
import { afterEach, describe, expect, vi } from "vitest";
import { apiTokens, idempotencyKeys } from "../src/db/schema";
import { IN_FLIGHT_LEASE_MS, KEEPALIVE_MS } from "../src/services/idempotency";
import { ADMIN, JOIN, type Harness, test } from "./fixture";

/**
 * A keyed request that takes its Idempotency-Key before its handler runs (registration, tokens,
 * runs, image builds, cancels) and whose process dies before it answers leaves the key taken with
 * nothing made. The retry — the agent's, or the CLI's on another controller — used to get 409
 * "still being answered" until a sweep 10 minutes later. The request renews its key while it
 * runs; once it has not for IN_FLIGHT_LEASE_MS, a retry takes the key over and runs the request.
 */

/** The key exactly as the middleware takes it for this request (route + body hash). */
function claimOf(principal: string, key: string, route: string, body: unknown) {
  const requestHash = createHash("sha256").update(route).update("\0").update(JSON.stringify(body)).digest("hex");
  return { principal, key, route, requestHash };
}

/** What a controller killed while answering leaves behind: the key taken, nothing made, no answer. */
async function diedAnswering(h: Harness, claim: ReturnType<typeof claimOf>) {
  await h.services.idempotencyKeys.take(claim);
}

const registration = { hostname: "web-1", labels: [], version: "1.0.0" };
/** the principal of the configured admin token (services/auth.ts) */
const BOOTSTRAP = "bootstrap";
const joinPrincipal = `credential:${createHash("sha256").update(`Bearer ${JOIN}`).digest("hex")}`;

afterEach(() => {
  vi.useRealTimers();
});

describe("a keyed request whose process died before it made anything", () => {
  test("the agent's registration retry registers once the dead request's lease ran out", async ({ h }) => {
    const claim = claimOf(joinPrincipal, "register-crashed", "POST /v1/agents/register", registration);
    await diedAnswering(h, claim);
    h.clock.advance(IN_FLIGHT_LEASE_MS + 1);
    const post = () => h.call("POST", "/v1/agents/register", { token: JOIN, body: registration, headers: { "idempotency-key": "register-crashed" } });
    const retry = await post();
    expect(retry.status).toBe(200);
    expect(retry.headers.get("idempotent-replayed")).toBeNull();
    const { agent, token } = (await retry.json()) as { agent: { id: string }; token: string };
    expect((await h.heartbeat({ id: agent.id, token })).status).toBe(200);
    // the answer is stored as any other: the next retry replays it, with the same token
    const again = await post();
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as { token: string }).token).toBe(token);
  });

  test("a retry of a token creation runs it once; a key still renewed is not taken over", async ({ h }) => {
    const body = { name: "ci", scope: "read" };
    const keys = h.services.idempotencyKeys;
    const claim = claimOf(BOOTSTRAP, "token-crashed", "POST /v1/tokens", body);
    await diedAnswering(h, claim);
    // renewed within the lease: its request still runs somewhere, whatever the time since it began
    h.clock.advance(IN_FLIGHT_LEASE_MS - 1_000);
    await keys.keepAlive(claim);
    h.clock.advance(IN_FLIGHT_LEASE_MS - 1_000);
    const alive = (await keys.lookup(claim))!;
    expect(keys.abandoned(alive)).toBe(false);
    expect(await keys.takeOver(claim)).toBe(false);
    // not renewed for the lease: abandoned, and the retry runs the request
    h.clock.advance(2_000);
    expect(keys.abandoned((await keys.lookup(claim))!)).toBe(true);
    const tokensBefore = (await h.db.select({ id: apiTokens.id }).from(apiTokens)).length;
    const retry = await h.call("POST", "/v1/tokens", { token: ADMIN, body, headers: { "idempotency-key": "token-crashed" } });
    expect(retry.status).toBe(201);
    expect((await h.db.select({ id: apiTokens.id }).from(apiTokens)).length).toBe(tokensBefore + 1);
    const [row] = await h.db.select({ status: idempotencyKeys.status }).from(idempotencyKeys);
    expect(row!.status).toBe(201);
  });

  test("a request that runs longer than the lease renews its key, so no retry runs it twice", async ({ h }) => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const keys = h.services.idempotencyKeys;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const create = h.services.apiTokens.create.bind(h.services.apiTokens);
    h.services.apiTokens.create = (async (...args: Parameters<typeof create>) => {
      await gate;
      return create(...args);
    }) as typeof create;
    const body = { name: "slow", scope: "read" };
    const first = h.call("POST", "/v1/tokens", { token: ADMIN, body, headers: { "idempotency-key": "token-slow" } });
    const claim = claimOf(BOOTSTRAP, "token-slow", "POST /v1/tokens", body);
    await vi.waitFor(async () => expect(await keys.lookup(claim)).toBeDefined());
    // four renewals, 40 s in all: each one lands before the clock moves on
    for (let i = 0; i < 4; i++) {
      h.clock.advance(KEEPALIVE_MS);
      await vi.advanceTimersByTimeAsync(KEEPALIVE_MS);
      await vi.waitFor(async () => expect((await keys.lookup(claim))!.aliveAt).toBe(h.clock.now));
    }
    expect(keys.abandoned((await keys.lookup(claim))!)).toBe(false);
    expect(await keys.takeOver(claim)).toBe(false);
    release();
    expect((await first).status).toBe(201);
  });
});
