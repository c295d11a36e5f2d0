import { describe, expect } from "vitest";
import { ADMIN, JOIN, seedJob, test } from "./fixture";

describe("a newer agent talks to this controller (tolerant wire protocol)", () => {
  test("unknown fields in register, heartbeat, containers, logs and status are accepted and ignored", async ({ h }) => {
    const reg = await h.call("POST", "/v1/agents/register", {
      token: JOIN,
      body: { hostname: "web-1", version: "9.0.0", protocolVersion: 2, futureField: { x: 1 }, capabilities: { arch: "x86_64", gpu: "none" } },
    });
    expect(reg.status).toBe(200);
    const registered = await reg.json();
    expect(registered.protocolVersion).toBe(1);
    const agent = { id: registered.agent.id, token: registered.token };
    expect((await h.submit(seedJob)).status).toBe(201);

    const beat = await h.heartbeat(agent, { status: "idle", load: [0.1, 0.2], protocolVersion: 2, containers: [{ id: "c1", health: "healthy", state: "running" }] });
    expect(beat.status).toBe(200);
    const { job, protocolVersion } = await beat.json();
    expect(protocolVersion).toBe(1);
    const { id, leaseId } = job;
    const status = (body: Record<string, unknown>) => h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, ...body } });
    expect((await status({ status: "running", progress: 0.5 })).status).toBe(200);
    const logs = await h.call("POST", `/v1/jobs/${id}/logs`, {
      token: agent.token,
      body: { leaseId, offset: 0, compressed: false, entries: [{ ts: new Date().toISOString(), stream: "trace", level: "info", line: "hello" }] },
    });
    expect(logs.status).toBe(200);
    const stored = await (await h.call("GET", `/v1/jobs/${id}/logs`, { token: ADMIN })).json();
    expect(stored.entries[0]).toMatchObject({ line: "hello", stream: "stdout" });
    expect((await status({ status: "succeeded", progress: 1, result: { ok: true } })).status).toBe(200);
    // a final status is never guessed
    expect((await status({ status: "half-done" })).status).toBe(400);
  });

  test("an unknown agent state degrades to busy: no job is handed out", async ({ h }) => {
    const agent = await h.register("web-1");
    expect((await h.submit(seedJob)).status).toBe(201);
    const beat = await h.heartbeat(agent, { status: "hibernating" });
    expect(beat.status).toBe(200);
    expect((await beat.json()).job).toBeNull();
    const hosts = (await (await h.call("GET", "/v1/hosts", { token: ADMIN })).json()).hosts;
    expect(hosts[0].state).toBe("busy");
  });

  test("JSON nested 5,000 deep from an agent is a 4xx or dropped, never a 500", async ({ h }) => {
    const deepText = `${'{"v":'.repeat(5000)}1${"}".repeat(5000)}`;
    const reg = await h.call("POST", "/v1/agents/register", {
      token: JOIN,
      body: `{"hostname":"web-1","capabilities":{"arch":"x","extra":${deepText}}}`,
    });
    expect(reg.status).toBe(200);
    const { agent, token } = await reg.json();
    expect(agent.capabilities).toEqual({ arch: "x" });
    await h.submit(seedJob);
    const { job } = await (await h.heartbeat({ id: agent.id, token })).json();
    const res = await h.call("POST", `/v1/jobs/${job.id}/status`, {
      token,
      body: `{"leaseId":"${job.leaseId}","status":"succeeded","result":{"r":${deepText}}}`,
    });
    expect(res.status).toBe(400);
    expect((await res.json()).error.message).toContain("nested");
    expect((await h.call("GET", `/v1/jobs/${job.id}`, { token: ADMIN })).status).toBe(200);
  });
});

describe("smaller input checks", () => {
  test("a garbage cursor is a 400, not an empty page; a real one pages", async ({ h }) => {
    for (const path of ["/v1/jobs?cursor=garbage", "/v1/deployments?cursor=garbage"]) {
      const res = await h.call("GET", path, { token: ADMIN });
      expect(res.status).toBe(400);
      expect((await res.json()).error.code).toBe("invalid_query");
    }
    await h.submit(seedJob);
    await h.submit({ ...seedJob, ref: "v2" });
    const first = await (await h.call("GET", "/v1/jobs?limit=1", { token: ADMIN })).json();
    const next = await h.call("GET", `/v1/jobs?limit=1&cursor=${first.nextCursor}`, { token: ADMIN });
    expect(next.status).toBe(200);
    expect((await next.json()).jobs).toHaveLength(1);
  });

  test("secret keys are limited in length and values may not hold NUL", async ({ h }) => {
    expect((await h.call("PUT", `/v1/apps/api/secrets/${"K".repeat(5000)}`, { token: ADMIN, body: { value: "v" } })).status).toBe(400);
    expect((await h.call("PUT", "/v1/apps/api/secrets/KEY", { token: ADMIN, body: { value: "a\u0000b" } })).status).toBe(400);
    expect((await h.call("PUT", "/v1/apps/api/secrets/KEY", { token: ADMIN, body: { value: "ab" } })).status).toBe(200);
  });
});
