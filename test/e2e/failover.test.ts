import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../apps/cli/test/runCli";
import { ADMIN, type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, jobLog, waitFor, waitForHostOnline, waitForJob } from "../harness/processes";
import { BASE_IMAGE, describeDocker, removeAppContainers, uniqueName } from "../support/docker";
import { deadUrl, type SwitchProxy, switchProxy } from "../support/switchProxy";

const LINES = 600;

/** The agent's "switched to another controller" log lines, as {from, to, reason}. */
function switches(agent: AgentProcess): { from: string; to: string; reason: string }[] {
  return readFileSync(agent.logFile, "utf8")
    .split("\n")
    .slice(0, -1) // whole lines only: the last one may still be on its way
    .filter((l) => l.includes('"switched to another controller"'))
    .map((l) => JSON.parse(l));
}

/**
 * Several controller URLs, end to end: a real controller process (restarted on its port, even
 * after kill -9), a URL where nothing listens, and a small proxy in front of the controller that
 * answers 503 like a load balancer whose backend is gone (or loses the controller's answers).
 * The agent and the CLI are the real processes; the job runs on the real engine.
 */
describeDocker("failover between controller URLs (agent and CLI processes, real engine)", () => {
  const app = uniqueName("failover");
  const host = uniqueName("fo-host");
  let ctl: ControllerProcess;
  let proxy: SwitchProxy;
  let dead: string;
  let agent: AgentProcess;
  const home = mkdtempSync(join(tmpdir(), "deploybot-failover-cli-"));
  const cli = (urls: string[], args: string[], timeoutMs?: number) =>
    runCli({ url: urls.join(","), home }, args, { env: { DEPLOYBOT_TOKEN: ADMIN }, ...(timeoutMs ? { timeoutMs } : {}) });
  const deploymentsOfApp = async () => (await ctl.api("GET", `/v1/deployments?app=${app}&limit=100`)).body.deployments as { id: string }[];

  beforeAll(async () => {
    // leases of 15 s: the controller's kill -9 and restart stay within them
    ctl = await controllerProcess(
      `
apps:
  - name: ${app}
    repo: acme/${app}
    hosts: [${host}]
    run:
      command: [sleep, "3600"]
      restart: "no"
`,
      { DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "5" },
    );
    dead = await deadUrl();
    proxy = await switchProxy(ctl.url);
  });

  afterAll(async () => {
    await agent?.stop();
    await proxy?.close();
    await ctl?.stop();
    await removeAppContainers(app);
  });

  it("the agent skips a dead URL, leaves a proxy that answers 503 mid-job, waits out the controller's kill -9: the job's log arrives once, in order", async () => {
    agent = agentProcess([dead, proxy.url, ctl.url].join(","), host);
    await waitForHostOnline(ctl, host);
    // the agent's log reaches its file through a pipe: the host can be online before the line is there
    await waitFor("the agent's switch from the dead URL in its log", async () => (switches(agent).length > 0 ? true : undefined), 30_000);
    expect(switches(agent)).toMatchObject([{ from: dead, to: proxy.url, reason: "ECONNREFUSED" }]);

    const deployed = await ctl.api("POST", "/v1/deployments", { app, image: BASE_IMAGE });
    expect(deployed.status).toBe(201);
    await waitFor("the deployment", async () => {
      const { body } = await ctl.api("GET", `/v1/deployments/${deployed.body.deployment.id}`);
      if (["failed", "cancelled"].includes(body.deployment.status)) throw new Error(`deployment ${body.deployment.status}: ${body.deployment.error}`);
      return body.deployment.status === "succeeded" ? true : undefined;
    });
    // the deploy job's log and status went through the proxy, the URL the agent stuck to
    await waitFor("the deploy job's log through the proxy", async () =>
      proxy.seen.some((r) => r.startsWith("POST /v1/jobs/") && r.endsWith("/logs")) ? true : undefined,
    30_000);

    // ~30 s of output at 20 lines/s: the switches below happen while it is written
    const run = await ctl.api("POST", `/v1/apps/${app}/runs`, {
      command: ["sh", "-c", `i=1; while [ $i -le ${LINES} ]; do echo "line $i"; i=$((i+1)); sleep 0.05; done`],
    });
    expect(run.status).toBe(201);
    const jobId = run.body.run.jobId as string;
    const lineCount = async () => (await jobLog(ctl, jobId)).filter((e) => /^line \d+$/.test(e.line)).length;
    await waitFor("the first lines through the proxy", async () => ((await lineCount()) >= 50 ? true : undefined));

    // the proxy's backend "goes away": the agent moves to the controller's own URL
    proxy.setMode("unavailable");
    await waitFor("the switch to the controller's URL", async () => (switches(agent).length === 2 ? true : undefined), 60_000);
    expect(switches(agent)[1]).toMatchObject({ from: proxy.url, to: ctl.url });
    const before = await lineCount();
    await waitFor("lines through the new URL", async () => ((await lineCount()) >= before + 50 ? true : undefined));

    // the controller itself dies mid-job and comes back on its port
    expect((await ctl.api("GET", `/v1/jobs/${jobId}`)).body.job.status).toBe("running");
    await ctl.stop("SIGKILL");
    await ctl.start();

    const job = await waitForJob(ctl, jobId);
    expect(job.status, job.error).toBe("succeeded");
    const lines = (await jobLog(ctl, jobId)).filter((e) => e.line.startsWith("line ")).map((e) => e.line);
    expect(lines).toEqual(Array.from({ length: LINES }, (_, i) => `line ${i + 1}`));
    // the outage was all URLs failing, then the same controller again: no switch to tell
    expect(switches(agent)).toHaveLength(2);
  }, 300_000);

  describe("CLI", () => {
    it("a dead URL and a 503 are skipped for reads; the switch is told once on stderr", async () => {
      proxy.setMode("unavailable");
      const hosts = await cli([dead, proxy.url, ctl.url], ["hosts", "--json"]);
      expect(hosts.code, hosts.stderr).toBe(0);
      expect(JSON.parse(hosts.stdout).hosts.map((h: { hostname: string }) => h.hostname)).toContain(host);
      expect(hosts.stderr.match(/using /g)).toHaveLength(1);
      expect(hosts.stderr).toContain(`controller ${proxy.url} failed (answered 503); using ${ctl.url}`);

      const none = await cli([dead, proxy.url], ["hosts"]);
      expect(none.code).toBe(5);
      expect(none.stderr).toContain(`cannot reach any controller (${dead}: ECONNREFUSED; ${proxy.url}: answered 503)`);
    });

    it("login stores a URL list (a controller that is down is noted, not refused); later commands use it", async () => {
      const loginHome = mkdtempSync(join(tmpdir(), "deploybot-failover-login-"));
      const env = { DEPLOYBOT_URL: undefined, DEPLOYBOT_TOKEN: undefined };
      const login = await runCli({ url: "", home: loginHome }, ["login", "--url", `${dead},${ctl.url}`, "--token", ADMIN, "--json"], { env });
      expect(login.code, login.stderr).toBe(0);
      expect(JSON.parse(login.stdout)).toMatchObject({ url: `${dead},${ctl.url}`, unreachable: [dead] });
      const hosts = await runCli({ url: "", home: loginHome }, ["hosts", "--json"], { env });
      expect(hosts.code, hosts.stderr).toBe(0);
      expect(hosts.stderr).toContain(`controller ${dead} failed (ECONNREFUSED); using ${ctl.url}`);
      const refused = await runCli({ url: "", home: loginHome }, ["login", "--url", `${dead},${ctl.url}`, "--token", "not-a-token"], { env });
      expect(refused.code).toBe(3);
    });

    it("a POST whose answer was lost is sent to the next controller with the same Idempotency-Key: one deployment", async () => {
      const count = (await deploymentsOfApp()).length;
      proxy.setMode("lose-answers");
      const created = await cli([proxy.url, ctl.url], ["deploy", app, "--image", BASE_IMAGE, "--detach", "--json"]);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stderr).toContain("answered 502");
      // the proxy did pass the POST on: the controller created it there, and replayed it here
      expect(proxy.seen.at(-1)).toBe("POST /v1/deployments");
      const after = await deploymentsOfApp();
      expect(after).toHaveLength(count + 1);
      expect(after.map((d) => d.id)).toContain(JSON.parse(created.stdout).deployment.id);
      await waitFor("that deployment", async () => {
        const { body } = await ctl.api("GET", `/v1/deployments/${JSON.parse(created.stdout).deployment.id}`);
        return ["succeeded", "failed", "cancelled"].includes(body.deployment.status) ? true : undefined;
      });
    });

    it("deploy following GET /v1/events resumes on the next controller with Last-Event-ID when its stream is cut", async () => {
      await agent.stop(); // the job waits for the agent, so the follow is still going when the stream is cut
      proxy.setMode("forward");
      const second = await switchProxy(ctl.url);
      try {
        // the proxy ends the event stream right after passing on its first event, then answers 503
        proxy.cutAfter = (request, chunk) => request.startsWith("GET /v1/events") && /^id:/m.test(chunk);
        const following = cli([proxy.url, second.url], ["deploy", app, "--image", BASE_IMAGE], 240_000);
        await waitFor("the CLI's event stream through the proxy", async () =>
          proxy.seen.some((r) => r.startsWith("GET /v1/events")) ? true : undefined,
        );
        agent.start();
        const run = await following;
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toMatch(/event stream: .*; resuming/);
        expect(run.stderr).toContain(`using ${second.url}`);
        expect(run.stderr).toMatch(/succeeded in/);
        // the reconnect went to the other URL and asked for what came after the event it had
        expect(second.seen.some((r) => /^GET \/v1\/events\S* last-event-id=\S+$/.test(r))).toBe(true);
      } finally {
        proxy.cutAfter = undefined;
        await second.close();
      }
    }, 300_000);
  });
});
