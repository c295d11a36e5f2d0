import { describe, expect, test } from "vitest";
import { makeHarness } from "./fixture";
import { ADMIN, JOIN, startTestController } from "./server";

describe("over real HTTP", () => {
  test("20 agents sharing a label race for 300 jobs: each is claimed exactly once, none is lost", async () => {
    const ctl = await startTestController();
    try {
      const JOBS = 300;
      for (let i = 0; i < JOBS; i++) {
        const res = await ctl.call("POST", "/v1/jobs", ADMIN, {
          spec: { kind: "build", app: "web", source: { type: "image", image: `img-${i}` } },
          target: { labels: ["pool"] },
        });
        expect(res.status).toBe(201);
      }
      const claims = new Map<string, string[]>();
      let done = 0;
      const agents = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const r = await ctl.call("POST", "/v1/agents/register", JOIN, { hostname: `pool-${i}`, labels: ["pool", `n${i}`] });
          return { id: r.body.agent.id as string, token: r.body.token as string };
        }),
      );
      await Promise.all(
        agents.map(async (agent) => {
          let empty = 0;
          while (done < JOBS && empty < 3) {
            const beat = await ctl.call("POST", `/v1/agents/${agent.id}/heartbeat?wait=0.2`, agent.token, {});
            expect(beat.status).toBe(200);
            const job = beat.body.job;
            if (!job) {
              empty++;
              continue;
            }
            empty = 0;
            claims.set(job.id, [...(claims.get(job.id) ?? []), agent.id]);
            for (const status of ["running", "succeeded"]) {
              const r = await ctl.call("POST", `/v1/jobs/${job.id}/status`, agent.token, { leaseId: job.leaseId, status });
              expect(r.status).toBe(200);
            }
            done++;
          }
        }),
      );
      expect(claims.size).toBe(JOBS);
      expect([...claims.values()].every((holders) => holders.length === 1)).toBe(true);
      const byAgent = new Set([...claims.values()].map((h) => h[0]));
      expect(byAgent.size).toBeGreaterThan(1);
      const succeeded = await ctl.call("GET", "/v1/jobs?status=succeeded&limit=200", ADMIN);
      const rest = await ctl.call("GET", `/v1/jobs?status=succeeded&limit=200&cursor=${succeeded.body.nextCursor}`, ADMIN);
      expect(succeeded.body.jobs.length + rest.body.jobs.length).toBe(JOBS);
    } finally {
      await ctl.stop();
    }
  }, 60_000);

  test("agents, jobs, leases and logs survive a controller restart on a file database", async () => {
    const first = await startTestController();
    const reg = await first.call("POST", "/v1/agents/register", JOIN, { hostname: "web-1" });
    const agent = { id: reg.body.agent.id, token: reg.body.token };
    const submitted = await first.call("POST", "/v1/jobs", ADMIN, { repo: "acme/web", ref: "main", host: "web-1" });
    const beat = await first.call("POST", `/v1/agents/${agent.id}/heartbeat`, agent.token, {});
    const { id: jobId, leaseId } = beat.body.job;
    await first.call("POST", `/v1/jobs/${jobId}/status`, agent.token, { leaseId, status: "running" });
    const entries = [0, 1, 2].map((i) => ({ ts: new Date().toISOString(), stream: "stdout", line: `before ${i}` }));
    await first.call("POST", `/v1/jobs/${jobId}/logs`, agent.token, { leaseId, offset: 0, entries });
    await first.stop();

    const second = await startTestController(first.dir);
    try {
      // the same token and lease keep working; nothing was lost
      const hb = await second.call("POST", `/v1/agents/${agent.id}/heartbeat`, agent.token, { status: "busy", heldJobIds: [jobId] });
      expect(hb.status).toBe(200);
      expect(hb.body.cancelJobIds).toEqual([]);
      const more = await second.call("POST", `/v1/jobs/${jobId}/logs`, agent.token, {
        leaseId,
        offset: 3,
        entries: [{ ts: new Date().toISOString(), stream: "stdout", line: "after" }],
      });
      expect(more.body.offset).toBe(4);
      const done = await second.call("POST", `/v1/jobs/${jobId}/status`, agent.token, { leaseId, status: "succeeded" });
      expect(done.body.job.status).toBe("succeeded");
      const logs = await second.call("GET", `/v1/jobs/${jobId}/logs`, ADMIN);
      expect(logs.body.entries.map((e: { line: string }) => e.line)).toEqual(["before 0", "before 1", "before 2", "after"]);
      const hosts = await second.call("GET", "/v1/hosts", ADMIN);
      expect(hosts.body.hosts.map((h: { id: string }) => h.id)).toEqual([agent.id]);
      expect(submitted.body.job.id).toBe(jobId);
    } finally {
      await second.stop();
    }
  });
});

describe("X-Request-Id", () => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  test("over real HTTP every answer carries one: the caller's (at most 64 characters) or a new one", async () => {
    const ctl = await startTestController();
    try {
      const get = (path: string, headers: Record<string, string> = {}) => fetch(ctl.url + path, { headers });
      const plain = await get("/healthz");
      expect(plain.status).toBe(200);
      expect(plain.headers.get("x-request-id")).toMatch(UUID);
      expect(plain.headers.get("content-type")).toMatch(/^application\/json/);
      expect(await plain.json()).toEqual({ ok: true });
      const again = await get("/healthz");
      expect(again.headers.get("x-request-id")).not.toBe(plain.headers.get("x-request-id"));
      expect((await get("/healthz", { "x-request-id": "trace-7" })).headers.get("x-request-id")).toBe("trace-7");
      expect((await get("/healthz", { "x-request-id": "x".repeat(100) })).headers.get("x-request-id")).toBe("x".repeat(64));
      // an error answer, a handler's answer with headers of its own, a stream
      const refused = await get("/v1/jobs", { "x-request-id": "trace-8" });
      expect(refused.status).toBe(401);
      expect(refused.headers.get("x-request-id")).toBe("trace-8");
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
      const registered = await fetch(`${ctl.url}/v1/agents/register`, {
        method: "POST",
        headers: { authorization: `Bearer ${JOIN}`, "content-type": "application/json", "idempotency-key": "reg-1", "x-request-id": "trace-9" },
        body: JSON.stringify({ hostname: "web-9" }),
      });
      expect(registered.status).toBe(200);
      expect(registered.headers.get("x-request-id")).toBe("trace-9");
      const replayed = await fetch(`${ctl.url}/v1/agents/register`, {
        method: "POST",
        headers: { authorization: `Bearer ${JOIN}`, "content-type": "application/json", "idempotency-key": "reg-1" },
        body: JSON.stringify({ hostname: "web-9" }),
      });
      expect(replayed.headers.get("idempotent-replayed")).toBe("true");
      expect(replayed.headers.get("x-request-id")).toMatch(UUID);
      const stream = new AbortController();
      const events = await fetch(`${ctl.url}/v1/events`, { headers: { authorization: `Bearer ${ADMIN}`, "x-request-id": "trace-10" }, signal: stream.signal });
      expect(events.headers.get("content-type")).toMatch(/^text\/event-stream/);
      expect(events.headers.get("x-request-id")).toBe("trace-10");
      stream.abort();
    } finally {
      await ctl.stop();
    }
  });

  test("through the app in process (no node server) too", async () => {
    const h = await makeHarness();
    try {
      const res = await h.call("GET", "/healthz", { headers: { "x-request-id": "trace-11" } });
      expect(res.headers.get("x-request-id")).toBe("trace-11");
      expect((await h.call("GET", "/healthz")).headers.get("x-request-id")).toMatch(UUID);
    } finally {
      await h.close();
    }
  });
});
