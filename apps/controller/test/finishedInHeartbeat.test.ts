import { FEATURES, heartbeatResponse, registerResponse } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { ADMIN, type Harness, seedJob, test } from "./fixture";

const jobOf = async (h: Harness, id: string) => (await (await h.call("GET", `/v1/jobs/${id}`, { token: ADMIN })).json()).job;

/** web-1 holds one job and a second one waits in the queue. */
async function holding(h: Harness) {
  const agent = await h.register("web-1");
  const first = (await (await h.submit(seedJob)).json()).job.id as string;
  const claimed = heartbeatResponse.parse(await (await h.heartbeat(agent)).json()).job!;
  expect(claimed.id).toBe(first);
  const second = (await (await h.submit({ ...seedJob, ref: "v2" })).json()).job.id as string;
  return { agent, jobId: first, leaseId: claimed.leaseId, second };
}

/** The heartbeat of an agent that is done with `jobId`: it still says busy and holding it. */
const reporting = (jobId: string, leaseId: string, extra: Record<string, unknown> = {}) => ({
  status: "busy",
  heldJobIds: [jobId],
  finished: { jobId, leaseId, status: "succeeded", result: { image: "x@sha256:1" }, logLines: 0, ...extra },
});

describe("a heartbeat that carries the final status of the held job", () => {
  test("register and heartbeat answers name the feature", async ({ h }) => {
    const res = await h.call("POST", "/v1/agents/register", { token: "join-secret", body: { hostname: "web-9", labels: [], version: "t", capabilities: {}, heldJobIds: [] } });
    const reg = registerResponse.parse(await res.json());
    expect(reg.features).toContain(FEATURES.finishedInHeartbeat);
    const beat = heartbeatResponse.parse(await (await h.heartbeat({ id: reg.agent.id, token: reg.token })).json());
    expect(beat.features).toContain(FEATURES.finishedInHeartbeat);
    expect(beat.finished).toBeUndefined();
  });

  test("finishes the job and claims the next one in the same request", async ({ h }) => {
    const { agent, jobId, leaseId, second } = await holding(h);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, reporting(jobId, leaseId))).json());
    expect(beat.finished).toEqual({ jobId, accepted: true, status: "succeeded" });
    expect(beat.job?.id).toBe(second);
    expect(await jobOf(h, jobId)).toMatchObject({ status: "succeeded", result: { image: "x@sha256:1" } });
  });

  test("a retry of the same report is accepted again and changes nothing", async ({ h }) => {
    const { agent, jobId, leaseId } = await holding(h);
    await h.heartbeat(agent, reporting(jobId, leaseId));
    const finishedAt = (await jobOf(h, jobId)).finishedAt;
    const again = heartbeatResponse.parse(await (await h.heartbeat(agent, reporting(jobId, leaseId))).json());
    expect(again.finished).toEqual({ jobId, accepted: true, status: "succeeded" });
    expect(await jobOf(h, jobId)).toMatchObject({ status: "succeeded", finishedAt });
    // a different final status after the fact is refused, as on the status route
    const other = heartbeatResponse.parse(await (await h.heartbeat(agent, reporting(jobId, leaseId, { status: "failed" }))).json());
    expect(other.finished).toMatchObject({ jobId, accepted: false, error: { httpStatus: 409, code: "job_finished" } });
  });

  test("a stale lease is refused in the answer, changes nothing, and no job is handed out", async ({ h }) => {
    const { agent, jobId } = await holding(h);
    const res = await h.heartbeat(agent, reporting(jobId, "lse_old"));
    expect(res.status).toBe(200);
    const beat = heartbeatResponse.parse(await res.json());
    expect(beat.finished).toMatchObject({ jobId, accepted: false, error: { httpStatus: 409, code: "stale_lease" } });
    expect(beat.job).toBeNull();
    expect((await jobOf(h, jobId)).status).toBe("assigned");
  });

  test("another agent's job is refused (403) and stays with its holder", async ({ h }) => {
    const { jobId, leaseId } = await holding(h);
    const intruder = await h.register("web-2");
    const beat = heartbeatResponse.parse(await (await h.heartbeat(intruder, reporting(jobId, leaseId))).json());
    expect(beat.finished).toMatchObject({ jobId, accepted: false, error: { httpStatus: 403, code: "forbidden" } });
    expect((await jobOf(h, jobId)).status).toBe("assigned");
  });

  test("only a final status travels in a heartbeat: running is a 400", async ({ h }) => {
    const { agent, jobId, leaseId } = await holding(h);
    const res = await h.heartbeat(agent, reporting(jobId, leaseId, { status: "running" }));
    expect(res.status).toBe(400);
    expect((await jobOf(h, jobId)).status).toBe("assigned");
  });

  test("a draining agent's report is accepted and it is handed nothing", async ({ h }) => {
    const { agent, jobId, leaseId } = await holding(h);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, { ...reporting(jobId, leaseId), status: "draining" })).json());
    expect(beat.finished).toMatchObject({ accepted: true, status: "succeeded" });
    expect(beat.job).toBeNull();
  });

  test("without the field the heartbeat is the old one: a busy agent keeps its lease", async ({ h }) => {
    const { agent, jobId } = await holding(h);
    const beat = heartbeatResponse.parse(await (await h.heartbeat(agent, { status: "busy", heldJobIds: [jobId] })).json());
    expect(beat.finished).toBeUndefined();
    expect(beat.job).toBeNull();
    expect((await jobOf(h, jobId)).status).toBe("assigned");
  });
});
