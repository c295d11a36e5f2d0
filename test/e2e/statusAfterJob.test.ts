import type { Server } from "node:http";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitForHostOnline, waitForJob } from "../harness/processes";
import { describeDocker, freePort, makeGitRepo, removeAppContainers, type TestGitRepo, testAppFiles, uniqueName } from "../support/docker";
import { isAgentCall, rewritingProxy } from "../support/rewritingProxy";

interface Heartbeat {
  finished?: { jobId: string; status: string };
  appStatus?: { app: string; running: number; healthy: number }[];
}

/**
 * What `deploybot ps` shows right after `deploybot deploy` or `restart` returns: the heartbeat
 * that carries the job's final status also carries the app's status, and the controller shows
 * that until the next heartbeat. It must count the container the job just started (it passed its
 * health check), not leave it out as the container of a job still in progress ("1 up, 0
 * healthy": degraded). Real controller and agent processes on the real engine; the agent's
 * requests pass through a proxy that only records them.
 */
describeDocker("app status in the heartbeat that reports a job's end (controller + agent processes, real engine)", () => {
  const app = uniqueName("stat");
  const host = uniqueName("stathost");
  const heartbeats: Heartbeat[] = [];
  let repo: TestGitRepo;
  let ctl: ControllerProcess;
  let agent: AgentProcess;
  let proxy: Server;

  beforeAll(async () => {
    const port = await freePort();
    repo = await makeGitRepo();
    await repo.commit(testAppFiles("v1", { salt: app }), "v1");
    ctl = await controllerProcess(`
apps:
  - name: ${app}
    repo: acme/${app}
    url: file://${repo.url}
    hosts: [${host}]
    run:
      ports: ["127.0.0.1:${port}:80"]
      healthcheck: { path: /health, port: 80, timeout_seconds: 20 }
      memory: 64m
`);
    const recorder = await rewritingProxy(ctl.url, {
      request: (path, body) => {
        if (isAgentCall(path)) heartbeats.push(structuredClone(body) as Heartbeat);
      },
    });
    proxy = recorder.server;
    agent = agentProcess(recorder.url, host, { DEPLOYBOT_PROXY: "off" });
    await waitForHostOnline(ctl, host);
  }, 120_000);

  afterAll(async () => {
    await agent?.stop();
    await new Promise((r) => proxy?.close(r));
    await ctl?.stop();
    await removeAppContainers(app);
    await repo?.cleanup();
  });

  /** The app's status in the heartbeat that reported `jobId`'s end. */
  const statusReportedWith = (jobId: string) => {
    const carrying = heartbeats.filter((h) => h.finished?.jobId === jobId);
    expect(carrying.length).toBeGreaterThan(0);
    return carrying.map((h) => h.appStatus?.find((s) => s.app === app));
  };

  it("counts the deployed container, and a restarted one, as up and healthy", async () => {
    const created = await ctl.api("POST", "/v1/deployments", { app });
    expect(created.status).toBe(201);
    const deployJob = created.body.deployment.jobs[0].id as string;
    expect((await waitForJob(ctl, deployJob)).status).toBe("succeeded");
    for (const s of statusReportedWith(deployJob)) expect(s).toMatchObject({ running: 1, healthy: 1 });

    const restarted = await ctl.api("POST", `/v1/apps/${app}/restart`, {});
    expect(restarted.status).toBe(201);
    const restartJob = restarted.body.jobs[0].id as string;
    expect((await waitForJob(ctl, restartJob)).status).toBe("succeeded");
    for (const s of statusReportedWith(restartJob)) expect(s).toMatchObject({ running: 1, healthy: 1 });
  }, 180_000);
});
