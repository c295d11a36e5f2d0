import { describe, expect, test } from "vitest";
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
