import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Dockerode from "dockerode";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BASE_IMAGE, describeDocker, uniqueName } from "../../../test/support/docker";
import { ADMIN, JOIN, startTestController } from "../../controller/test/server";
import { loadAgentConfig } from "../src/config";
import { AgentDaemon } from "../src/daemon";

type Controller = Awaited<ReturnType<typeof startTestController>>;
let ctl: Controller;

beforeAll(async () => {
  // a long heartbeat interval: a busy agent reports before it only because the drain makes it
  ctl = await startTestController(undefined, { DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "300" });
});
afterAll(async () => {
  await ctl?.stop();
});

const agent = (hostname: string, docker: Dockerode, env: Record<string, string> = {}) =>
  new AgentDaemon(
    loadAgentConfig({
      DEPLOYBOT_URL: ctl.url,
      DEPLOYBOT_JOIN_TOKEN: JOIN,
      DEPLOYBOT_HOSTNAME: hostname,
      DEPLOYBOT_STATE_DIR: mkdtempSync(join(tmpdir(), "deploybot-agent-state-")),
      DEPLOYBOT_POLL_WAIT_SECONDS: "1",
      ...env,
    }),
    docker,
    pino({ level: "silent" }),
  );

async function hostState(hostname: string): Promise<string | undefined> {
  const { hosts } = (await ctl.call("GET", "/v1/hosts", ADMIN)).body as { hosts: { hostname: string; state: string }[] };
  return hosts.find((h) => h.hostname === hostname)?.state;
}

async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  let v = await read();
  for (let i = 0; i < 600 && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, 100));
    v = await read();
  }
  if (!ok(v)) throw new Error(`${what}: still ${JSON.stringify(v)}`);
  return v;
}

it("an idle agent told to drain says so before it stops: hosts shows draining, not idle", async () => {
  // registration and heartbeats need no engine
  const noEngine = new Dockerode({ socketPath: join(tmpdir(), "no-such-docker.sock") });
  const hostname = uniqueName("drain-idle");
  const daemon = agent(hostname, noEngine);
  const running = daemon.run();
  await until("first heartbeat", () => hostState(hostname), (s) => s === "idle");
  await daemon.drain();
  await running;
  expect(await hostState(hostname)).toBe("draining");
});

describeDocker("draining with a job", () => {
  it("a busy agent told to drain shows draining while its job finishes, and after", async () => {
    const hostname = uniqueName("drain-busy");
    const daemon = agent(hostname, new Dockerode(), { DEPLOYBOT_DRAIN_TIMEOUT_SECONDS: "10" });
    const running = daemon.run();
    await until("first heartbeat", () => hostState(hostname), (s) => s === "idle");
    const submitted = await ctl.call("POST", "/v1/jobs", ADMIN, {
      spec: { kind: "run", app: "web", source: { type: "image", image: BASE_IMAGE }, run: { ports: [], env: {}, secrets: [], restart: "no", command: ["sleep", "600"] } },
      target: { host: hostname },
    });
    expect(submitted.status).toBe(201);
    const jobId = submitted.body.job.id as string;
    await until("job running", async () => (await ctl.call("GET", `/v1/jobs/${jobId}`, ADMIN)).body.job.status, (s) => s === "running");
    expect(await hostState(hostname)).toBe("busy");
    const drained = daemon.drain();
    await until("host draining", () => hostState(hostname), (s) => s === "draining");
    // the job is still running: the drain waits for it (here cut by the drain timeout)
    expect((await ctl.call("GET", `/v1/jobs/${jobId}`, ADMIN)).body.job.status).toBe("running");
    await drained;
    await running;
    expect(await hostState(hostname)).toBe("draining");
    expect((await ctl.call("GET", `/v1/jobs/${jobId}`, ADMIN)).body.job.status).not.toBe("running");
  });
});
