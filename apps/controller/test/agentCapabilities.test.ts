import { heartbeatResponse } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { ADMIN, type Harness, test } from "./fixture";

// What an agent from before volumes sends when it registers: no `volumes` capability.
const OLD_AGENT = { version: "0.9.0", capabilities: { engineVersion: "27.0.0", arch: "x64" } };

const beat = async (h: Harness, agent: { id: string; token: string }) => {
  const res = await h.heartbeat(agent, { status: "idle", heldJobIds: [] });
  expect(res.status).toBe(200);
  return heartbeatResponse.parse(await res.json());
};
const getJob = async (h: Harness, id: string) => (await (await h.call("GET", `/v1/jobs/${id}`, { token: ADMIN })).json()).job;
const submit = async (h: Harness, spec: Record<string, unknown>, target: Record<string, unknown> = { host: "web-1" }) => {
  const res = await h.submit({ spec: { kind: "deploy", app: "web", source: { type: "image", image: "busybox" }, ...spec }, target });
  expect(res.status).toBe(201);
  return (await res.json()).job as { id: string };
};

describe("jobs an agent cannot honour", () => {
  test("an agent without the volumes capability gets no job with volumes; an ordinary job still reaches it; a current agent gets the held one", async ({ h }) => {
    const old = await h.register("web-1", [], [], OLD_AGENT);
    const withVolumes = await submit(h, { run: { volumes: ["data:/var/lib/app"] } });
    expect((await beat(h, old)).job).toBeNull();
    expect((await beat(h, old)).job).toBeNull();
    const held = await getJob(h, withVolumes.id);
    expect(held.status).toBe("pending");
    expect(held.error).toMatch(/waiting for an agent that supports volumes.*host web-1 runs agent 0\.9\.0/);

    // an ordinary job queued after it still reaches the old agent
    const ordinary = await submit(h, { run: { env: { A: "1" } } });
    expect((await beat(h, old)).job?.id).toBe(ordinary.id);
    expect((await getJob(h, withVolumes.id)).status).toBe("pending");

    // the same host upgraded: the job goes out, and the waiting note is gone
    const current = await h.register("web-1");
    const claimed = await beat(h, current);
    expect(claimed.job?.id).toBe(withVolumes.id);
    expect(claimed.job?.spec.run?.volumes).toEqual(["data:/var/lib/app"]);
    const taken = await getJob(h, withVolumes.id);
    expect(taken.status).toBe("assigned");
    expect(taken.error).toBeNull();
  });

  test("stop_first and a volume purge are held back too, also for labelled jobs", async ({ h }) => {
    const old = await h.register("b-1", ["builder"], [], OLD_AGENT);
    const stopFirst = await submit(h, { run: { stop_first: true } }, { labels: ["builder"] });
    const purge = await h.submit({ spec: { kind: "remove", app: "web", purgeVolumes: true }, target: { host: "b-1" } });
    expect(purge.status).toBe(201);
    const purgeJob = (await purge.json()).job as { id: string };
    expect((await beat(h, old)).job).toBeNull();
    expect((await getJob(h, stopFirst.id)).error).toMatch(/supports volumes/);
    expect((await getJob(h, purgeJob.id)).error).toMatch(/supports volumes/);

    const current = await h.register("b-2", ["builder", "eu"]);
    expect((await beat(h, current)).job?.id).toBe(stopFirst.id);
  });

  test("a deployment of an app with volumes shows why its job waits", async ({ h }) => {
    h.setApps(`
apps:
  - name: store
    repo: acme/store
    url: https://git.example.test/acme/store.git
    hosts: [store-1]
    image: 127.0.0.1:5000/acme/store
    run:
      volumes: ["data:/var/lib/store"]
`);
    const old = await h.register("store-1", [], [], OLD_AGENT);
    const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "store", image: "127.0.0.1:5000/acme/store:v1" } });
    expect(res.status).toBe(201);
    const { deployment } = (await res.json()) as { deployment: { id: string } };
    expect((await beat(h, old)).job).toBeNull();
    const shown = (await (await h.call("GET", `/v1/deployments/${deployment.id}`, { token: ADMIN })).json()).deployment;
    expect(shown.jobs).toEqual([expect.objectContaining({ host: "store-1", status: "pending", error: expect.stringMatching(/supports volumes.*store-1 runs agent 0\.9\.0/) })]);
  });

  test("start and scale jobs wait for an agent that knows them; other jobs still reach the old agent; an upgraded one takes them", async ({ h }) => {
    // an agent from before the reconcile loop: it knows deploy, build, run, stop, restart, remove
    // and fails a start or scale job at once ("this agent does not know job kind 'scale'")
    const old = await h.register("api-1", [], [], { version: "0.1.0", capabilities: {} });
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "postgres://db" } });
    const deploy = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "api", image: "127.0.0.1:5000/acme/api:v1", hosts: ["api-1"] } });
    expect(deploy.status).toBe(201);
    const deployJob = (await beat(h, old)).job!;
    expect(deployJob.kind).toBe("deploy");
    await h.call("POST", `/v1/jobs/${deployJob.id}/status`, { token: old.token, body: { leaseId: deployJob.leaseId, status: "succeeded", result: { release: "rel-1" } } });

    const scale = await h.call("POST", "/v1/apps/api/scale", { token: ADMIN, body: { hosts: ["api-1"], replicas: 2 } });
    expect(scale.status).toBe(201);
    const scaleJob = ((await scale.json()) as { jobs: { id: string }[] }).jobs[0]!;
    // held-back jobs are looked for at most once a minute per agent (on PostgreSQL counted from
    // its last claim, the deploy's)
    h.clock.advance(61_000);
    expect((await beat(h, old)).job).toBeNull();
    const held = await getJob(h, scaleJob.id);
    expect(held.status).toBe("pending");
    expect(held.error).toBe("waiting for an agent that knows 'scale' jobs; host api-1 runs agent 0.1.0, which would fail it: upgrade it");

    // a job of a kind it knows, queued after the held one, still reaches it
    const ordinary = await submit(h, {}, { host: "api-1" });
    expect((await beat(h, old)).job?.id).toBe(ordinary.id);
    expect((await getJob(h, scaleJob.id)).status).toBe("pending");

    // the host's agent upgraded: it takes the scale job, which no longer says it waits
    const current = await h.register("api-1");
    const claimed = await beat(h, current);
    expect(claimed.job).toMatchObject({ id: scaleJob.id, kind: "scale" });
    expect((await getJob(h, scaleJob.id)).error).toBeNull();
  });

  test("a job that times out waiting keeps the reason", async ({ h }) => {
    const old = await h.register("web-1", [], [], OLD_AGENT);
    const job = await submit(h, { run: { volumes: ["data:/data"] } });
    await beat(h, old);
    h.clock.advance(7 * 86_400_000);
    await h.services.leases.sweep();
    const ended = await getJob(h, job.id);
    expect(ended.status).toBe("timed_out");
    expect(ended.error).toMatch(/no agent claimed the job in time; waiting for an agent that supports volumes/);
  });
});
