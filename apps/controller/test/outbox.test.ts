import { controllerEvent, deployment as deploymentSchema } from "@deploybot/protocol";
import { afterEach, describe, expect } from "vitest";
import { ADMIN, APPS_YAML, type Harness, test } from "./fixture";
import { JOIN, startTestController } from "./server";
import { openStream, type SseEvent } from "./sse";

type Agent = { id: string; token: string };

async function claim(h: Harness, agent: Agent) {
  const beat = await (await h.heartbeat(agent)).json();
  expect(beat.job).not.toBeNull();
  return beat.job as { id: string; leaseId: string; kind: string };
}
const report = (h: Harness, agent: Agent, job: { id: string; leaseId: string }, status: string, result: Record<string, unknown> = {}) =>
  h.call("POST", `/v1/jobs/${job.id}/status`, { token: agent.token, body: { leaseId: job.leaseId, status, result } });
const getDeployment = async (h: Harness, id: string) =>
  deploymentSchema.parse((await (await h.call("GET", `/v1/deployments/${id}`, { token: ADMIN })).json()).deployment);
const deploy = async (h: Harness, body: Record<string, unknown>, headers: Record<string, string> = {}) => {
  const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body, headers });
  expect(res.status).toBe(201);
  return deploymentSchema.parse((await res.json()).deployment);
};
const outboxTypes = (h: Harness) =>
  (h.services.jobs as unknown as { deps: { outbox: { after(id: number, n: number): Promise<Array<{ type: string; data: Record<string, unknown> }>> } } }).deps.outbox.after(0, 10_000);

describe("consequences are applied from the outbox", () => {
  test("an app removed from apps.yaml mid-build: the builder's report is 200 and the deployment ends failed with the reason", async ({ h }) => {
    h.config.registry = { url: "127.0.0.1:5000", username: "u", password: "pw" };
    await h.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", { token: ADMIN, body: { value: "postgres://db/api" } });
    const builder = await h.register("api-1");
    const d = await deploy(h, { app: "api", sha: "0123456789abcdef0123456789abcdef01234567" });
    expect(d.status).toBe("building");
    const build = await claim(h, builder);
    expect(build.kind).toBe("build");
    expect((await report(h, builder, build, "running")).status).toBe(200);

    h.setApps(APPS_YAML.replace(/ {2}- name: api[\s\S]*$/, "")); // the edit, then SIGHUP
    const res = await report(h, builder, build, "succeeded", { version: "0123456789ab", digest: "sha256:feed" });
    expect(res.status).toBe(200);
    expect((await res.json()).job.status).toBe("succeeded");

    const after = await getDeployment(h, d.id);
    expect(after.status).toBe("failed");
    expect(after.error).toMatch(/app 'api' is no longer in .*apps\.yaml; the image was built but not deployed/);
    expect(after.jobs.map((j) => j.kind)).toEqual(["build"]); // nothing fanned out to hosts nobody names
    // the report is final: a retry of it is still a 200
    expect((await report(h, builder, build, "succeeded")).status).toBe(200);
  });

  test("a consequence that throws is retried with backoff, its failure visible, and the others still run", async ({ h }) => {
    let failures = 1;
    const seen: string[] = [];
    h.services.drainer.register({
      name: "flaky",
      types: ["job.changed"],
      kind: "db",
      apply: (e) => {
        if (e.data.status !== "succeeded") return;
        if (failures-- > 0) throw new Error("the flaky consequence failed");
        seen.push(String(e.data.id));
      },
    });
    const agent = await h.register("web-1");
    const d = await deploy(h, { app: "web", ref: "main" });
    const job = await claim(h, agent);
    await report(h, agent, job, "succeeded", { version: "v1", image: "deploybot/web:v1" });

    // the deployment's own consequence ran although the one before... or after it threw
    const failed = await getDeployment(h, d.id);
    expect(failed.status).toBe("succeeded");
    expect(failed.consequenceError).toMatch(/^flaky: the flaky consequence failed \(attempt 1, retrying in 1 s\)$/);
    expect(seen).toEqual([]);
    const failure = (await outboxTypes(h)).find((e) => e.type === "consequence.failed");
    expect(failure?.data).toMatchObject({ consequence: "flaky", eventType: "job.changed", deploymentId: d.id, attempts: 1, retrying: true });
    expect(h.logLines.some((l) => l.includes("a consequence failed; retrying with backoff"))).toBe(true);

    await h.services.drainer.runDueTasks(); // not due yet: the backoff holds it
    expect(seen).toEqual([]);
    h.clock.advance(2_000);
    await h.services.drainer.runDueTasks();
    expect(seen).toEqual([job.id]);
    expect((await getDeployment(h, d.id)).consequenceError).toBeNull();
  });

  test("supersede is a transition with its event; the superseded deployment follows from it", async ({ h }) => {
    await h.register("web-1");
    const first = await deploy(h, { app: "web", ref: "v1" });
    const second = await deploy(h, { app: "web", ref: "v2" });
    expect((await getDeployment(h, first.id)).status).toBe("superseded");
    expect(second.status).toBe("deploying");
    const superseded = (await outboxTypes(h)).find((e) => e.type === "job.changed" && e.data.transition === "superseded");
    expect(superseded?.data).toMatchObject({ id: first.jobs[0]!.id, status: "cancelled", error: `superseded by ${second.id}` });
    const depEvents = (await outboxTypes(h)).filter((e) => e.type === "deployment.changed" && e.data.id === first.id);
    expect(depEvents.map((e) => e.data.status)).toEqual(["deploying", "superseded"]);
  });
});

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl | undefined;
afterEach(async () => {
  await ctl?.stop();
  ctl = undefined;
});
const auth = { authorization: `Bearer ${ADMIN}` };
const dataOf = (e: SseEvent) => controllerEvent.parse(JSON.parse(e.data));

describe("GET /v1/events", () => {
  test("streams every change as it commits, filtered by app and type, and resumes with Last-Event-ID", async () => {
    ctl = await startTestController();
    const all = await openStream(`${ctl.url}/v1/events`, auth);
    expect(all.res.status).toBe(200);
    const deployments = await openStream(`${ctl.url}/v1/events?app=web&types=deployment`, auth);
    const reg = await ctl.call("POST", "/v1/agents/register", JOIN, { hostname: "web-1" });
    const online = await all.next((e) => e.event === "host.online");
    expect(dataOf(online).data).toEqual({ id: reg.body.agent.id, hostname: "web-1", first: true });

    const created = await ctl.call("POST", "/v1/deployments", ADMIN, { app: "web", ref: "main" });
    const queued = await all.next((e) => e.event === "job.changed");
    expect(dataOf(queued)).toMatchObject({ type: "job.changed", app: "web", data: { transition: "queued", status: "pending", host: "web-1" } });
    const dep = await deployments.next((e) => e.event !== "message");
    expect(dep.event).toBe("deployment.changed");
    expect(dataOf(dep).data).toMatchObject({ id: created.body.deployment.id, status: "deploying" });
    expect(Number(dep.id)).toBe(dataOf(dep).id);

    // a client that missed events resumes after the last one it saw: the rest, once each, in order
    await all.close();
    const beat = await ctl.call("POST", `/v1/agents/${reg.body.agent.id}/heartbeat`, reg.body.token, {});
    await ctl.call("POST", `/v1/jobs/${beat.body.job.id}/status`, reg.body.token, { leaseId: beat.body.job.leaseId, status: "succeeded" });
    await deployments.next((e) => e.event === "deployment.changed" && dataOf(e).data.status === "succeeded");
    const resumed = await openStream(`${ctl.url}/v1/events`, { ...auth, "last-event-id": queued.id! });
    const transitions: string[] = [];
    for (let e = await resumed.next((x) => x.event !== "message"); ; e = await resumed.next((x) => x.event !== "message")) {
      if (e.event === "job.changed") transitions.push(String(dataOf(e).data.transition));
      if (e.event === "deployment.changed" && dataOf(e).data.status === "succeeded") break;
    }
    expect(transitions).toEqual(["claimed", "finished"]);
    const ids = resumed.queue.length; // nothing after the last change
    expect(ids).toBe(0);
    await Promise.all([resumed.close(), deployments.close()]);
    expect(deployments.queue.filter((e) => e.event !== "deployment.changed" && e.event !== "message")).toEqual([]);
  });

  test("bad cursors and filters are 400, a missing or agent token 401", async () => {
    ctl = await startTestController();
    expect((await ctl.call("GET", "/v1/events?after=abc", ADMIN)).status).toBe(400);
    expect((await ctl.call("GET", "/v1/events?types=Job!", ADMIN)).status).toBe(400);
    const res = await fetch(`${ctl.url}/v1/events`, { headers: { ...auth, "last-event-id": "x" } });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe("invalid_cursor");
    expect((await fetch(`${ctl.url}/v1/events`)).status).toBe(401);
  });

  test("a superseded job's log stream ends, and the events say why", async () => {
    ctl = await startTestController();
    await ctl.call("POST", "/v1/agents/register", JOIN, { hostname: "web-1" });
    const first = (await ctl.call("POST", "/v1/deployments", ADMIN, { app: "web", ref: "v1" })).body.deployment;
    const jobId = first.jobs[0].id as string;
    const events = await openStream(`${ctl.url}/v1/events?types=job.changed`, auth);
    const log = await openStream(`${ctl.url}/v1/logs/stream?job=${jobId}`, auth);
    expect(log.res.status).toBe(200);
    const second = (await ctl.call("POST", "/v1/deployments", ADMIN, { app: "web", ref: "v2" })).body.deployment;
    const superseded = await events.next((e) => e.event === "job.changed" && dataOf(e).data.id === jobId);
    expect(dataOf(superseded).data).toMatchObject({ transition: "superseded", status: "cancelled", error: `superseded by ${second.id}` });
    const end = await log.next((e) => e.event === "end");
    expect(JSON.parse(end.data)).toEqual({ jobId, status: "cancelled" });
    await log.done; // the server closed it
    await events.close();
  });
});
