import { appendLogsResponse, jobLogsResponse } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { TRUNCATION_MARKER } from "../src/services/jobLogs";
import { ADMIN, type Harness, makeHarness, seedJob, test } from "./fixture";

async function claimed(h: Harness) {
  const agent = await h.register("web-1");
  const { job } = await (await h.submit(seedJob)).json();
  const beat = await (await h.heartbeat(agent)).json();
  return { agent, jobId: job.id as string, leaseId: beat.job.leaseId as string };
}
const entries = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ ts: new Date(0).toISOString(), stream: "stdout", line: `line ${from + i}` }));

describe("POST /v1/jobs/:id/status", () => {
  test("running then succeeded; a repeated final status is a 200 no-op", async ({ h }) => {
    const { agent, jobId, leaseId } = await claimed(h);
    const post = (body: unknown) => h.call("POST", `/v1/jobs/${jobId}/status`, { token: agent.token, body });
    expect((await (await post({ leaseId, status: "running" })).json()).job.status).toBe("running");
    const done = await post({ leaseId, status: "succeeded", result: { image: "x@sha256:1" } });
    expect((await done.json()).job).toMatchObject({ status: "succeeded", result: { image: "x@sha256:1" } });
    const again = await post({ leaseId, status: "succeeded" });
    expect(again.status).toBe(200);
    const other = await post({ leaseId, status: "failed" });
    expect(other.status).toBe(409);
    expect((await other.json()).error.code).toBe("job_finished");
  });

  test("a stale lease is 409 and changes nothing; another agent's token is 403", async ({ h }) => {
    const { agent, jobId, leaseId } = await claimed(h);
    const stale = await h.call("POST", `/v1/jobs/${jobId}/status`, { token: agent.token, body: { leaseId: "lse_old", status: "failed" } });
    expect(stale.status).toBe(409);
    expect((await stale.json()).error.code).toBe("stale_lease");
    const intruder = await h.register("web-2");
    const foreign = await h.call("POST", `/v1/jobs/${jobId}/status`, { token: intruder.token, body: { leaseId, status: "failed" } });
    expect(foreign.status).toBe(403);
    const job = (await (await h.call("GET", `/v1/jobs/${jobId}`, { token: ADMIN })).json()).job;
    expect(job.status).toBe("assigned");
  });
});

describe("POST /v1/jobs/:id/logs", () => {
  test("appends at offsets: a retry is not stored twice, an overlap stores the tail, a gap is 409", async ({ h }) => {
    const { agent, jobId, leaseId } = await claimed(h);
    const post = (offset: number, list: unknown[]) =>
      h.call("POST", `/v1/jobs/${jobId}/logs`, { token: agent.token, body: { leaseId, offset, entries: list } });
    expect(appendLogsResponse.parse(await (await post(0, entries(0, 3))).json()).offset).toBe(3);
    expect((await (await post(0, entries(0, 3))).json()).offset).toBe(3); // retry
    expect((await (await post(2, entries(2, 3))).json()).offset).toBe(5); // overlap
    const gap = await post(9, entries(9, 1));
    expect(gap.status).toBe(409);
    expect((await gap.json()).error).toMatchObject({ code: "offset_mismatch", details: { offset: 5 } });
    const logs = jobLogsResponse.parse(await (await h.call("GET", `/v1/jobs/${jobId}/logs`, { token: ADMIN })).json());
    expect(logs.entries.map((e) => e.line)).toEqual(entries(0, 5).map((e) => e.line));
    const tail = jobLogsResponse.parse(await (await h.call("GET", `/v1/jobs/${jobId}/logs?after=2`, { token: ADMIN })).json());
    expect(tail.entries.map((e) => e.seq)).toEqual([3, 4]);
  });

  test("logs still append after the final status, under the same lease", async ({ h }) => {
    const { agent, jobId, leaseId } = await claimed(h);
    await h.call("POST", `/v1/jobs/${jobId}/status`, { token: agent.token, body: { leaseId, status: "succeeded" } });
    const res = await h.call("POST", `/v1/jobs/${jobId}/logs`, { token: agent.token, body: { leaseId, offset: 0, entries: entries(0, 2) } });
    expect(res.status).toBe(200);
  });

  test("a stale lease or another agent cannot append", async ({ h }) => {
    const { agent, jobId, leaseId } = await claimed(h);
    const stale = await h.call("POST", `/v1/jobs/${jobId}/logs`, { token: agent.token, body: { leaseId: "lse_x", offset: 0, entries: entries(0, 1) } });
    expect(stale.status).toBe(409);
    const other = await h.register("web-2");
    const foreign = await h.call("POST", `/v1/jobs/${jobId}/logs`, { token: other.token, body: { leaseId, offset: 0, entries: entries(0, 1) } });
    expect(foreign.status).toBe(403);
    const logs = await (await h.call("GET", `/v1/jobs/${jobId}/logs`, { token: ADMIN })).json();
    expect(logs.entries).toEqual([]);
  });

  test("the per-job cap stores one visible truncation marker and keeps offsets consistent", async () => {
    const h = await makeHarness({ logMaxBytes: 1024 });
    const { agent, jobId, leaseId } = await claimed(h);
    const big = Array.from({ length: 40 }, (_, i) => ({ ts: new Date(0).toISOString(), stream: "stdout", line: `${i}`.padEnd(100, "x") }));
    const res = appendLogsResponse.parse(
      await (await h.call("POST", `/v1/jobs/${jobId}/logs`, { token: agent.token, body: { leaseId, offset: 0, entries: big } })).json(),
    );
    expect(res).toMatchObject({ offset: 40, truncated: true });
    const logs = jobLogsResponse.parse(await (await h.call("GET", `/v1/jobs/${jobId}/logs`, { token: ADMIN })).json());
    expect(logs.entries).toHaveLength(11);
    expect(logs.entries.at(-1)).toMatchObject({ stream: "system", line: TRUNCATION_MARKER });
    expect(logs.truncated).toBe(true);
  });

  test("the answer carries a cancel request", async ({ h }) => {
    const { agent, jobId, leaseId } = await claimed(h);
    await h.call("POST", `/v1/jobs/${jobId}/cancel`, { token: ADMIN });
    const res = await h.call("POST", `/v1/jobs/${jobId}/logs`, { token: agent.token, body: { leaseId, offset: 0, entries: entries(0, 1) } });
    expect((await res.json()).cancelRequested).toBe(true);
  });
});
