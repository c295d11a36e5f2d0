import { heartbeatResponse } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { ADMIN, type Harness, seedJob, test } from "./fixture";

const beat = async (h: Harness, agent: { id: string; token: string }, body: Record<string, unknown> = {}, wait?: number) => {
  const res = await h.heartbeat(agent, body, wait);
  expect(res.status).toBe(200);
  return heartbeatResponse.parse(await res.json());
};
const getJob = async (h: Harness, id: string) => (await (await h.call("GET", `/v1/jobs/${id}`, { token: ADMIN })).json()).job;
const submit = async (h: Harness, body: unknown = seedJob) => (await (await h.submit(body)).json()).job;
const labelJob = (labels: string[]) => ({
  spec: { kind: "build", app: "web", source: { type: "image", image: "busybox" } },
  target: { labels },
});

describe("claims through heartbeats", () => {
  test("hands out at most one job per heartbeat, with a lease, and never to a busy agent", async ({ h }) => {
    const agent = await h.register("web-1");
    const a = await submit(h, { ...seedJob, ref: "a" });
    const b = await submit(h, { ...seedJob, ref: "b" });
    const first = await beat(h, agent);
    expect(first.job?.id).toBe(a.id);
    expect(first.job?.leaseId).toMatch(/^lse_/);
    // busy: it holds a
    const second = await beat(h, agent, { status: "busy", heldJobIds: [a.id] });
    expect(second.job).toBeNull();
    // claims the next only when it holds nothing and says it is idle
    expect((await getJob(h, a.id)).status).toBe("assigned");
    expect((await getJob(h, b.id)).status).toBe("pending");
  });

  test("the job goes to the named host only", async ({ h }) => {
    const other = await h.register("web-2");
    await submit(h);
    expect((await beat(h, other)).job).toBeNull();
    const right = await h.register("web-1");
    expect((await beat(h, right)).job).not.toBeNull();
  });

  test("a labelled job goes to an agent carrying every label", async ({ h }) => {
    const partial = await h.register("a", ["builder"]);
    const full = await h.register("b", ["builder", "eu", "x"]);
    const job = await submit(h, labelJob(["builder", "eu"]));
    expect((await beat(h, partial)).job).toBeNull();
    expect((await beat(h, full)).job?.id).toBe(job.id);
  });

  test("registry credentials reach the claiming agent but never the job API", async ({ h }) => {
    h.config.registry = { url: "127.0.0.1:5000", username: "u", password: "registry-pw" };
    const agent = await h.register("web-1");
    const job = await submit(h);
    const claimed = await beat(h, agent);
    expect(claimed.job?.spec.registry?.password).toBe("registry-pw");
    const apiText = await (await h.call("GET", `/v1/jobs/${job.id}`, { token: ADMIN })).text();
    expect(apiText).not.toContain("registry-pw");
    expect(h.logLines.join("")).not.toContain("registry-pw");
  });

  test("long-poll answers the moment a matching job is queued", async ({ h }) => {
    const agent = await h.register("web-1");
    const started = Date.now();
    const polling = beat(h, agent, {}, 20);
    await new Promise((r) => setTimeout(r, 50));
    const job = await submit(h);
    const answer = await polling;
    expect(answer.job?.id).toBe(job.id);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test("long-poll returns a cancel for a held job at once", async ({ h }) => {
    const agent = await h.register("web-1");
    const job = await submit(h);
    await beat(h, agent);
    const polling = beat(h, agent, { status: "busy", heldJobIds: [job.id] }, 20);
    await new Promise((r) => setTimeout(r, 50));
    await h.call("POST", `/v1/jobs/${job.id}/cancel`, { token: ADMIN });
    expect((await polling).cancelJobIds).toEqual([job.id]);
  });
});

describe("leases", () => {
  test("an expired lease hands an assigned job back, and gives up after max attempts", async ({ h }) => {
    const agent = await h.register("web-1");
    const job = await submit(h);
    for (let attempt = 1; attempt <= h.config.maxAttempts; attempt++) {
      expect((await beat(h, agent)).job?.attempt).toBe(attempt);
      h.clock.advance(h.config.heartbeatIntervalSeconds * 3 * 1000 + 1);
      await h.services.leases.sweep();
    }
    const ended = await getJob(h, job.id);
    expect(ended.status).toBe("failed");
    expect(ended.error).toContain(`${h.config.maxAttempts} attempts`);
  });

  test("an expired lease marks a running job lost", async ({ h }) => {
    const agent = await h.register("web-1");
    const job = await submit(h);
    const { job: claimed } = await beat(h, agent);
    await h.call("POST", `/v1/jobs/${job.id}/status`, { token: agent.token, body: { leaseId: claimed!.leaseId, status: "running" } });
    h.clock.advance(h.config.heartbeatIntervalSeconds * 2 * 1000);
    await beat(h, agent, { status: "busy", heldJobIds: [job.id] }); // renews
    h.clock.advance(h.config.heartbeatIntervalSeconds * 2 * 1000);
    await h.services.leases.sweep();
    expect((await getJob(h, job.id)).status).toBe("running");
    h.clock.advance(h.config.heartbeatIntervalSeconds * 2 * 1000);
    await h.services.leases.sweep();
    expect((await getJob(h, job.id)).status).toBe("lost");
  });

  test("heldJobIds reconciliation fails a running job the agent no longer holds", async ({ h }) => {
    const agent = await h.register("web-1");
    const job = await submit(h);
    const { job: claimed } = await beat(h, agent);
    await h.call("POST", `/v1/jobs/${job.id}/status`, { token: agent.token, body: { leaseId: claimed!.leaseId, status: "running" } });
    await beat(h, agent, { heldJobIds: [] });
    const ended = await getJob(h, job.id);
    expect(ended.status).toBe("failed");
    expect(ended.error).toContain("no longer holds");
  });

  test("re-registration with the held job keeps it; without it the job is handed back", async ({ h }) => {
    const agent = await h.register("web-1");
    const job = await submit(h);
    await beat(h, agent);
    await h.register("web-1", [], [job.id]);
    expect((await getJob(h, job.id)).status).toBe("assigned");
    await h.register("web-1", [], []);
    expect((await getJob(h, job.id)).status).toBe("pending");
  });

  test("the reaper enforces job timeouts and cancels reach the agent", async ({ h }) => {
    const agent = await h.register("web-1");
    const job = await submit(h, { ...seedJob, timeoutSeconds: 5 });
    const { job: claimed } = await beat(h, agent);
    await h.call("POST", `/v1/jobs/${job.id}/status`, { token: agent.token, body: { leaseId: claimed!.leaseId, status: "running" } });
    h.clock.advance(6000);
    await h.services.leases.sweep();
    const ended = await getJob(h, job.id);
    expect(ended.status).toBe("timed_out");
    expect((await beat(h, agent, { status: "busy", heldJobIds: [job.id] })).cancelJobIds).toEqual([job.id]);
  });

  test("a job nobody claims times out in the queue", async ({ h }) => {
    const job = await submit(h);
    h.clock.advance(h.config.queueTimeoutSeconds * 1000 + 1);
    await h.services.leases.sweep();
    expect((await getJob(h, job.id)).status).toBe("timed_out");
  });

  test("a job id the agent holds but does not own comes back as a cancel", async ({ h }) => {
    const agent = await h.register("web-1");
    expect((await beat(h, agent, { status: "busy", heldJobIds: ["job_unknown"] })).cancelJobIds).toEqual(["job_unknown"]);
  });
});
