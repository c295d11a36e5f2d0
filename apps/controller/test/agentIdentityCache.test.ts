import { eq, sql } from "drizzle-orm";
import { describe, expect, vi } from "vitest";
import { agents } from "../src/db/schema";
import { ADMIN, type Harness, test, testEngine } from "./fixture";

/**
 * An agent's requests check its token against its row. On SQLite the row checked once is kept
 * (AgentTokens.watchAgents) until a statement changes its identity columns; on PostgreSQL every
 * request reads the live row. Either way a revoked, rotated or removed agent's token is refused
 * on its very next request.
 */
async function warmed(h: Harness) {
  const agent = await h.register("web-1");
  const reads = vi.spyOn(h.services.agents, "authenticate");
  for (let i = 0; i < 3; i++) expect((await h.heartbeat(agent)).status).toBe(200);
  // SQLite: the first request read the row, the next ones used it; PostgreSQL: one read each
  expect(reads).toHaveBeenCalledTimes(testEngine === "sqlite" ? 1 : 3);
  return { agent, reads };
}

describe("the agent identity kept between requests", () => {
  test("is used again while the row is unchanged (SQLite), read every time on PostgreSQL", async ({ h }) => {
    // registration answers with a token; its first heartbeat reads the row
    const agent = await h.register("web-1");
    const reads = vi.spyOn(h.services.agents, "authenticate");
    for (let i = 0; i < 4; i++) expect((await h.heartbeat(agent)).status).toBe(200);
    expect(reads).toHaveBeenCalledTimes(testEngine === "sqlite" ? 1 : 4);
  });

  test("a revoked agent's token is refused on its next request", async ({ h }) => {
    const { agent } = await warmed(h);
    expect((await h.call("POST", `/v1/agents/${agent.id}/revoke`, { token: ADMIN })).status).toBe(200);
    const res = await h.heartbeat(agent);
    expect(res.status).toBe(401);
    expect((await res.json()).error.code).toBe("unauthorized");
  });

  test("a rotated token (re-registration) is refused on its next request; the new one works", async ({ h }) => {
    const { agent: old } = await warmed(h);
    const rotated = await h.register("web-1");
    expect(rotated.id).toBe(old.id);
    expect((await h.heartbeat(old)).status).toBe(401);
    expect((await h.heartbeat(rotated)).status).toBe(200);
    expect((await h.heartbeat(old)).status).toBe(401);
  });

  test("a removed agent's token is refused on its next request", async ({ h }) => {
    const { agent } = await warmed(h);
    expect((await h.call("DELETE", `/v1/agents/${agent.id}`, { token: ADMIN })).status).toBe(204);
    expect((await h.heartbeat(agent)).status).toBe(401);
  });

  test("a token version bumped by any statement on the row is refused on the next request", async ({ h }) => {
    const { agent } = await warmed(h);
    await h.db.update(agents).set({ tokenVersion: sql`${agents.tokenVersion} + 1` }).where(eq(agents.id, agent.id));
    expect((await h.heartbeat(agent)).status).toBe(401);
  });

  test("a changed label reaches the next request (the kept row is dropped when its identity columns change)", async ({ h }) => {
    const { agent } = await warmed(h);
    await h.db.update(agents).set({ labels: ["gpu"] }).where(eq(agents.id, agent.id));
    const seen = vi.spyOn(h.services.agents, "heartbeat");
    expect((await h.heartbeat(agent)).status).toBe(200);
    expect(seen.mock.calls[0]![0].labels).toEqual(["gpu"]);
  });

  test.runIf(testEngine === "sqlite")("a row read inside a transaction that rolls back is not kept", async ({ h }) => {
    const { agent } = await warmed(h);
    const next = (await h.db.select({ v: agents.tokenVersion }).from(agents).where(eq(agents.id, agent.id)))[0]!.v + 1;
    const forged = await h.services.agentTokens.sign(agent.id, next);
    const sqlite = h.db.$client as { exec(sql: string): unknown };
    sqlite.exec("BEGIN");
    try {
      await h.db.update(agents).set({ tokenVersion: next }).where(eq(agents.id, agent.id));
      // the uncommitted row matches the token: accepted now, but never kept
      const seen = await h.services.agentTokens.identify({ agentId: agent.id, tokenVersion: next }, () => h.services.agents.authenticate(agent.id, next));
      expect(seen.tokenVersion).toBe(next);
    } finally {
      sqlite.exec("ROLLBACK");
    }
    expect((await h.heartbeat({ id: agent.id, token: forged })).status).toBe(401);
    expect((await h.heartbeat(agent)).status).toBe(200);
  });
});
