import { afterEach, describe, expect, test } from "vitest";
import { APPS_YAML } from "../../apps/controller/test/appsYaml";
import { openStream, type SseEvent } from "../../apps/controller/test/sse";
import { ADMIN, type ControllerProcess, controllerProcess, JOIN, waitFor } from "../harness/processes";

// Real controller processes killed with SIGKILL: nothing of them survives but the database file.

let ctl: ControllerProcess | undefined;
afterEach(async () => {
  await ctl?.stop("SIGKILL");
  ctl = undefined;
});

async function call(c: ControllerProcess, method: string, path: string, token: string, body?: unknown) {
  const res = await fetch(c.url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers loosely and check them with assertions
  return { status: res.status, body: (await res.json()) as any };
}

/** A fake agent over HTTP: registers, claims the next job, runs it to `succeeded`. */
async function runNextJob(c: ControllerProcess, hostname: string) {
  const reg = await call(c, "POST", "/v1/agents/register", JOIN, { hostname });
  const agent = { id: reg.body.agent.id as string, token: reg.body.token as string };
  const beat = await call(c, "POST", `/v1/agents/${agent.id}/heartbeat`, agent.token, {});
  const job = beat.body.job as { id: string; leaseId: string };
  expect(job).not.toBeNull();
  expect((await call(c, "POST", `/v1/jobs/${job.id}/status`, agent.token, { leaseId: job.leaseId, status: "running" })).status).toBe(200);
  const done = await call(c, "POST", `/v1/jobs/${job.id}/status`, agent.token, {
    leaseId: job.leaseId,
    status: "succeeded",
    result: { version: "v1", image: "deploybot/web:v1" },
  });
  expect(done.status).toBe(200);
  return job;
}

const deploymentStatus = async (c: ControllerProcess, id: string) => (await call(c, "GET", `/v1/deployments/${id}`, ADMIN)).body.deployment.status;

describe("the outbox across a controller killed with SIGKILL", () => {
  test("consequences not applied when the controller died are applied at the next start", async () => {
    // The drainer held back, so the window between a job's transition and its consequences
    // stays open until the kill (in production it is a few milliseconds wide).
    ctl = await controllerProcess(APPS_YAML, { DEPLOYBOT_TEST_PAUSE_CONSEQUENCES: "1" });
    const created = await call(ctl, "POST", "/v1/deployments", ADMIN, { app: "web", ref: "main" });
    expect(created.status).toBe(201);
    const id = created.body.deployment.id as string;
    await runNextJob(ctl, "web-1");
    expect(await deploymentStatus(ctl, id)).toBe("deploying"); // the job succeeded; its consequence is pending

    expect(await ctl.stop("SIGKILL")).toBeNull();
    await ctl.start({ DEPLOYBOT_TEST_PAUSE_CONSEQUENCES: "0" });
    await waitFor("the deployment to end", async () => ((await deploymentStatus(ctl!, id)) === "succeeded" ? true : undefined), 60_000);
    const app = await call(ctl, "GET", "/v1/apps/web", ADMIN);
    expect(app.body.app.currentRelease).toMatchObject({ id: created.body.deployment.releaseId, version: "v1" });
  });

  test("GET /v1/events resumes across a restart with no event lost or repeated", async () => {
    ctl = await controllerProcess(APPS_YAML);
    const auth = { authorization: `Bearer ${ADMIN}` };
    const received: SseEvent[] = [];
    const real = (e: SseEvent) => e.event !== "message";
    const first = await openStream(`${ctl.url}/v1/events?after=0`, auth);
    const created = (await call(ctl, "POST", "/v1/deployments", ADMIN, { app: "web", ref: "main" })).body.deployment;
    for (let e = await first.next(real); ; e = await first.next(real)) {
      received.push(e);
      if (e.event === "deployment.changed") break;
    }
    await ctl.stop("SIGKILL");
    await first.done; // the connection died with the process
    received.push(...first.queue.filter(real));

    await ctl.start();
    await runNextJob(ctl, "web-1"); // changes while the client is away
    const lastSeen = received.at(-1)!.id!;
    const second = await openStream(`${ctl.url}/v1/events`, { ...auth, "last-event-id": lastSeen });
    for (let e = await second.next(real); ; e = await second.next(real)) {
      received.push(e);
      if (e.event === "deployment.changed" && JSON.parse(e.data).data.status === "succeeded") break;
    }
    await second.close();

    const ids = received.map((e) => Number(e.id));
    // no filter: every outbox row, each once, in order — ids are 1..n without a hole or a repeat
    expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i + 1));
    const transitions = received.filter((e) => e.event === "job.changed").map((e) => JSON.parse(e.data).data.transition);
    expect(transitions).toEqual(["queued", "claimed", "started", "finished"]);
    expect(received.filter((e) => e.event === "deployment.changed").map((e) => JSON.parse(e.data).data.id)).toEqual([created.id, created.id]);
  });
});
