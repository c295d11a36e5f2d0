import { appHostStatus, heartbeatResponse } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { z } from "zod";
import { ADMIN, type Harness, test } from "./fixture";

type Agent = { id: string; token: string };

/** Claims the next job for `agent` and reports it `status` with `result`. */
async function runJob(h: Harness, agent: Agent, status: "succeeded" | "failed", result: Record<string, unknown> = {}) {
  const hb = heartbeatResponse.parse(await (await h.heartbeat(agent)).json());
  if (!hb.job) throw new Error("no job for the agent");
  const { id, leaseId } = hb.job;
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status: "running" } });
  const res = await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status, result } });
  expect(res.status).toBe(200);
  return hb.job;
}

async function deployApi(h: Harness, agent: Agent) {
  await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "postgres://db-secret" } });
  const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "api", image: "127.0.0.1:5000/acme/api:v1", hosts: ["api-1"] } });
  expect(res.status).toBe(201);
  return runJob(h, agent, "succeeded", { image: "127.0.0.1:5000/acme/api@sha256:abc", release: "rel-x" });
}

const heartbeat = async (h: Harness, agent: Agent, body: Record<string, unknown>) => heartbeatResponse.parse(await (await h.heartbeat(agent, body)).json());
const status = async (h: Harness, app: string) => z.object({ app: z.object({ status: z.array(appHostStatus) }) }).parse(await (await h.call("GET", `/v1/apps/${app}`, { token: ADMIN })).json()).app.status;

describe("desired state in heartbeats", () => {
  test("a deploy that succeeded sets the host's state; it is sent only while the agent's version differs", async ({ h }) => {
    const agent = await h.register("api-1");
    expect((await heartbeat(h, agent, { desiredVersion: 0 })).desired).toBeUndefined();
    const job = await deployApi(h, agent);
    const first = await heartbeat(h, agent, { desiredVersion: 0 });
    expect(first.desired?.apps).toEqual([
      expect.objectContaining({ app: "api", image: "127.0.0.1:5000/acme/api@sha256:abc", replicas: 1, state: "running", jobId: job.id, release: job.spec.release }),
    ]);
    // secret values travel only in the agent's copy, by name in the stored run spec
    expect(first.desired?.apps[0]?.run?.secrets).toEqual(["DATABASE_URL"]);
    expect(first.desired?.apps[0]?.secretEnv).toEqual({ DATABASE_URL: "postgres://db-secret" });
    const again = await heartbeat(h, agent, { desiredVersion: first.desired!.version });
    expect(again.desired).toBeUndefined();
    // an agent from before desired state never gets it
    expect((await heartbeat(h, agent, {})).desired).toBeUndefined();
  });

  test("stop, scale and remove change the state when their job succeeds there, not before", async ({ h }) => {
    const agent = await h.register("api-1");
    await deployApi(h, agent);
    const stop = await h.call("POST", "/v1/apps/api/stop", { token: ADMIN, body: { hosts: ["api-1"] } });
    expect(stop.status).toBe(201);
    expect((await status(h, "api"))[0]?.desired).toMatchObject({ state: "running" });
    await runJob(h, agent, "succeeded");
    expect((await status(h, "api")).find((s) => s.host === "api-1")?.desired).toMatchObject({ state: "stopped" });

    await h.call("POST", "/v1/apps/api/scale", { token: ADMIN, body: { hosts: ["api-1"], replicas: 3 } });
    const failed = await runJob(h, agent, "failed");
    expect(failed.kind).toBe("scale");
    expect((await status(h, "api")).find((s) => s.host === "api-1")?.desired).toMatchObject({ state: "stopped", replicas: 1 });
    await h.call("POST", "/v1/apps/api/scale", { token: ADMIN, body: { hosts: ["api-1"], replicas: 3 } });
    const scale = await runJob(h, agent, "succeeded");
    expect(scale.spec.replicas).toBe(3);
    expect((await status(h, "api")).find((s) => s.host === "api-1")?.desired).toMatchObject({ state: "running", replicas: 3 });
    await h.call("POST", "/v1/apps/api/remove", { token: ADMIN, body: { hosts: ["api-1"] } });
    // a remove keeps the app's volumes: only an explicit purge deletes them
    expect((await runJob(h, agent, "succeeded")).spec.purgeVolumes).toBeUndefined();
    expect((await h.call("POST", "/v1/apps/api/remove", { token: ADMIN, body: { hosts: ["api-1"], purgeVolumes: true } })).status).toBe(201);
    expect((await runJob(h, agent, "succeeded")).spec.purgeVolumes).toBe(true);
    const hb = await heartbeat(h, agent, { desiredVersion: 1 });
    expect(hb.desired?.apps[0]).toMatchObject({ app: "api", state: "removed" });
  });

  test("reconcile events are stored once, acknowledged, and shown with the app; status carries what the agent reported", async ({ h }) => {
    const agent = await h.register("api-1");
    await deployApi(h, agent);
    const event = { seq: 1, at: "2026-11-22T12:00:01.000Z", app: "api", kind: "restarted", reason: "restart 1 after: killed (exit code 137, SIGKILL)", container: "api-1c" };
    const appStatus = [{ app: "api", restarts: 1, lastExitCode: 137, lastReason: "killed", since: "2026-11-22T12:00:01.000Z", nextRestartAt: null, healthy: 0, running: 1 }];
    const containers = [{ id: "c1", app: "api", release: "rel-x", state: "running" }];
    expect((await heartbeat(h, agent, { appEvents: [event], appStatus, containers })).appEventsAcked).toBe(1);
    expect((await heartbeat(h, agent, { appEvents: [event], appStatus, containers })).appEventsAcked).toBe(1);
    const events = (await (await h.call("GET", "/v1/apps/api/events", { token: ADMIN })).json()) as { events: unknown[] };
    expect(events.events).toEqual([expect.objectContaining({ kind: "restarted", host: "api-1", reason: event.reason })]);
    const api1 = (await status(h, "api")).find((s) => s.host === "api-1");
    expect(api1).toMatchObject({ online: true, actual: { running: 1, healthy: 0, restarts: 1, lastExitCode: 137, releases: ["rel-x"] } });
  });
});

describe("POST /v1/apps/{name}/{operation}", () => {
  test("refuses what cannot work, with a reason", async ({ h }) => {
    const call = (path: string, body: unknown, token = ADMIN) => h.call("POST", path, { token, body });
    expect((await call("/v1/apps/nope/stop", {})).status).toBe(404);
    expect((await call("/v1/apps/api/scale", {})).status).toBe(400);
    expect((await call("/v1/apps/api/stop", { replicas: 2 })).status).toBe(400);
    expect((await call("/v1/apps/api/stop", { purgeVolumes: true })).status).toBe(400);
    expect((await call("/v1/apps/api/stop", { hosts: ["-bad"] })).status).toBe(400);
    const notDeployed = await call("/v1/apps/api/start", { hosts: ["api-1"] });
    expect(notDeployed.status).toBe(409);
    expect(((await notDeployed.json()) as { error: { code: string } }).error.code).toBe("not_deployed");
    // web publishes 8080: one container per host
    expect((await call("/v1/apps/web/scale", { replicas: 2, hosts: ["web-1"] })).status).toBe(409);
    expect((await call("/v1/apps/api/stop", {}, "")).status).toBe(401);
    const read = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "r", scope: "read" } })).json()) as { token: string };
    expect((await call("/v1/apps/api/stop", {}, read.token)).status).toBe(403);
    // a token limited to other apps may neither operate this one nor read its events or logs
    const webOnly = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "w", scope: "deploy", apps: ["web"] } })).json()) as { token: string };
    expect((await call("/v1/apps/api/stop", {}, webOnly.token)).status).toBe(403);
    expect((await h.call("GET", "/v1/apps/api/events", { token: webOnly.token })).status).toBe(403);
    expect((await h.call("GET", "/v1/apps/api/logs", { token: webOnly.token })).status).toBe(403);
  });

  test("stop on every host of the app queues one job per host", async ({ h }) => {
    const res = await h.call("POST", "/v1/apps/api/stop", { token: ADMIN, body: {} });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { jobs: { kind: string; target: { host: string } }[] };
    expect(body.jobs.map((j) => [j.kind, j.target.host])).toEqual([
      ["stop", "api-1"],
      ["stop", "api-2"],
    ]);
  });
});
