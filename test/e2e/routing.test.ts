import http from "node:http";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, stopAgentAndProxy, waitFor } from "../harness/processes";
import { describeDocker, engineRequest, freePort, makeGitRepo, removeAppContainers, type TestGitRepo, testAppFiles, uniqueName } from "../support/docker";

/** GET / through the proxy with a Host header: status and body, or null when nothing answers. */
function viaProxy(port: number, host: string): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/", headers: { host }, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(null));
  });
}

/**
 * The routed path end to end: apps.yaml domains -> a deployment -> the real agent process
 * rolls replicas out through its HAProxy -> the agent's heartbeats report the route -> the API.
 */
describeDocker("routing end to end (controller + agent processes, real engine and HAProxy)", () => {
  const app = uniqueName("e2eroute");
  const host = uniqueName("host");
  const domain = `${app}.e2e.test`;
  const network = uniqueName("deploybot-e2e-net");
  let httpPort: number;
  let repo: TestGitRepo;
  let ctl: ControllerProcess;
  let agent: AgentProcess;

  const deployment = async (ref: string) => {
    const res = await ctl.api("POST", "/v1/deployments", { app, ref });
    expect(res.status).toBe(201);
    const id = res.body.deployment.id as string;
    return waitFor(`deployment ${id}`, async () => {
      const d = (await ctl.api("GET", `/v1/deployments/${id}`)).body.deployment;
      return ["succeeded", "failed", "cancelled"].includes(d.status) ? d : undefined;
    });
  };

  beforeAll(async () => {
    httpPort = await freePort();
    repo = await makeGitRepo();
    ctl = await controllerProcess(`
apps:
  - name: ${app}
    repo: acme/${app}
    url: ${repo.url}
    hosts: [${host}]
    domains: [${domain}]
    proxy: { port: 80, health_path: /health, drain_seconds: 2 }
    replicas: 2
    tls: off
`);
    agent = agentProcess(ctl.url, host, {
      DEPLOYBOT_PROXY_HTTP_PORT: String(httpPort),
      DEPLOYBOT_PROXY_HTTPS_PORT: String(await freePort()),
      DEPLOYBOT_PROXY_ADDRESS: "127.0.0.1",
      DEPLOYBOT_NETWORK: network,
    });
  });

  afterAll(async () => {
    await stopAgentAndProxy(agent);
    await ctl?.stop();
    await removeAppContainers(app);
    await engineRequest("DELETE", `/networks/${network}`).catch(() => undefined);
    await repo?.cleanup();
  });

  it("deploys two replicas behind the domain, reports the route, and keeps serving while the agent restarts", async () => {
    await repo.commit(testAppFiles("r1", { salt: app }), "r1");
    expect(await deployment("main")).toMatchObject({ status: "succeeded" });
    expect(await viaProxy(httpPort, domain)).toEqual({ status: 200, body: "r1" });

    const routes = await waitFor("the route in GET /v1/apps", async () => {
      const body = (await ctl.api("GET", `/v1/apps/${app}`)).body;
      return body.routes?.[0]?.healthy === 2 ? body.routes : undefined;
    });
    expect(routes).toEqual([expect.objectContaining({ host, online: true, domains: [domain], tls: "off", healthy: 2 })]);

    // HAProxy outlives the agent: routing goes on while the agent is down and after it returns.
    expect(await agent.stop()).toBe(0);
    expect(await viaProxy(httpPort, domain)).toEqual({ status: 200, body: "r1" });
    agent.start();
    await repo.commit(testAppFiles("r2", { salt: app }), "r2");
    expect(await deployment("main")).toMatchObject({ status: "succeeded" });
    expect(await viaProxy(httpPort, domain)).toEqual({ status: 200, body: "r2" });
  });
});
