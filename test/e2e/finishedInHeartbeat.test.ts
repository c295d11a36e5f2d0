import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import { afterAll, beforeAll, expect, test } from "vitest";
import { APPS_YAML } from "../../apps/controller/test/appsYaml";
import { type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitFor, waitForJob } from "../harness/processes";
import { describeDocker, uniqueName } from "../support/docker";
import { isAgentCall, rewritingProxy } from "../support/rewritingProxy";

/**
 * A real controller process and real agent processes running `stop` jobs of an app with no
 * containers (real jobs through the real engine, done in a moment). What travelled how is read
 * from the controller's request log: one status-route request per job (`running`) when the final
 * status rides in the heartbeat, two when it goes on the status route.
 */

describeDocker("a job's final status in the heartbeat that asks for the next job (controller and agent processes, real engine)", () => {
  let ctl: ControllerProcess;
  const agents: AgentProcess[] = [];
  const proxies: Server[] = [];

  beforeAll(async () => {
    ctl = await controllerProcess(APPS_YAML);
  }, 120_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    for (const p of proxies) await new Promise((r) => p.close(r));
    await ctl?.stop();
  });

  /** Status-route requests the controller logged so far. */
  const statusRequests = () => readFileSync(ctl.logFile, "utf8").split("\n").filter((l) => l.includes('"route":"/v1/jobs/:jobId/status"')).length;

  /** Queues two jobs for a new host, starts its agent at `url`, waits for both to end and `expected` status requests. */
  async function twoJobs(url: string, expected: number) {
    const host = uniqueName("fin");
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await ctl.api("POST", "/v1/jobs", { spec: { kind: "stop", app: uniqueName("nothing") }, target: { host } });
      expect(res.status).toBe(201);
      ids.push(res.body.job.id as string);
    }
    const before = statusRequests();
    agents.push(agentProcess(url, host, { DEPLOYBOT_PROXY: "off", DEPLOYBOT_POLL_WAIT_SECONDS: "1" }));
    const jobs = [];
    for (const id of ids) jobs.push(await waitForJob(ctl, id));
    // the request log line is written as the answer leaves
    await waitFor("the last request to be logged", async () => (statusRequests() - before >= expected ? true : undefined), 10_000).catch(() => undefined);
    return { jobs, statusRequests: statusRequests() - before };
  }

  test("the agent reports each job's end in its next heartbeat: one status-route request per job", async () => {
    const { jobs, statusRequests } = await twoJobs(ctl.url, 2);
    expect(jobs.map((j) => j.status)).toEqual(["succeeded", "succeeded"]);
    expect(statusRequests).toBe(2); // `running`, once per job
  }, 180_000);

  test("a controller that names no features (an older one): the agent reports on the status route", async () => {
    const proxy = await rewritingProxy(ctl.url, {
      request: (path, body) => void (isAgentCall(path) && delete body.finished),
      answer: (path, body) => void (isAgentCall(path) && delete body.features),
    });
    proxies.push(proxy.server);
    const { jobs, statusRequests } = await twoJobs(proxy.url, 4);
    expect(jobs.map((j) => j.status)).toEqual(["succeeded", "succeeded"]);
    expect(statusRequests).toBe(4); // `running` and the final status, per job
  }, 180_000);

  test("a heartbeat answered without `finished` (an older controller behind the same URL): the agent falls back to the status route", async () => {
    let dropped = 0;
    const proxy = await rewritingProxy(ctl.url, {
      // the feature is named, but the report never reaches the controller, as with an older one
      request: (path, body) => {
        if (isAgentCall(path) && body.finished) {
          delete body.finished;
          dropped++;
        }
      },
    });
    proxies.push(proxy.server);
    const { jobs, statusRequests } = await twoJobs(proxy.url, 4);
    expect(jobs.map((j) => j.status)).toEqual(["succeeded", "succeeded"]);
    expect(dropped).toBeGreaterThanOrEqual(2);
    expect(statusRequests).toBe(4);
  }, 180_000);
});
