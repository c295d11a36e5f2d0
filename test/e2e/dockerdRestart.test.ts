import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitFor } from "../harness/processes";
import { BASE_IMAGE, describeDocker, makeGitRepo, type TestGitRepo, uniqueName } from "../support/docker";

/** One Engine API call on a given socket; `body` is piped in when given. */
function engine(socketPath: string, method: string, path: string, body?: NodeJS.ReadableStream): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, headers: body ? { "content-type": "application/x-tar" } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    if (body) body.pipe(req);
    else req.end();
  });
}

/** The shared engine's image as a tar stream (GET /images/get). */
function imageTar(socketPath: string, image: string): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath, path: `/images/get?names=${encodeURIComponent(image)}` }, resolve).on("error", reject);
  });
}

/**
 * A Docker engine of the test's own (its own data root, exec root, socket and containerd
 * namespace), which this test may stop and start while others test on the shared one. It runs
 * in a network namespace of its own (`unshare -n`): dockerd with `--bridge=none` deletes the
 * host's `docker0` at start — in the shared namespace that would cut every container of the
 * shared engine off its bridge. No iptables either. Its apps publish nothing.
 */
class OwnDockerd {
  readonly dir = mkdtempSync(join(tmpdir(), "deploybot-dockerd-"));
  readonly socket = join(this.dir, "docker.sock");
  private child: ChildProcess | null = null;
  private readonly ns = uniqueName("dbt");

  async start(): Promise<void> {
    this.child = spawn(
      "unshare",
      [
        "--net",
        "--",
        "dockerd",
        `--data-root=${join(this.dir, "data")}`,
        `--exec-root=${join(this.dir, "exec")}`,
        `--host=unix://${this.socket}`,
        `--pidfile=${join(this.dir, "dockerd.pid")}`,
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        `--containerd-namespace=${this.ns}`,
        `--containerd-plugins-namespace=${this.ns}-plugins`,
      ],
      { stdio: "ignore" },
    );
    await waitFor("the test's own dockerd", async () => (await engine(this.socket, "GET", "/_ping").then((r) => r.status === 200, () => false)) || undefined, 60_000);
  }

  /** SIGTERM, as systemd stops it: the engine stops its containers first. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
  }

  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const sharedSocket = (process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock").replace(/^unix:\/\//, "");
const haveDockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"].some(existsSync) && ["/usr/bin/unshare", "/bin/unshare"].some(existsSync) && process.getuid?.() === 0;

describeDocker("dockerd restarted: the agent brings the apps back (a second engine of the test's own)", () => {
  const app = uniqueName("rdind");
  const host = uniqueName("rdhost");
  const dockerd = new OwnDockerd();
  let repo: TestGitRepo;
  let ctl: ControllerProcess;
  let agent: AgentProcess;

  const appContainers = async () =>
    JSON.parse((await engine(dockerd.socket, "GET", `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ label: [`deploybot.app=${app}`] }))}`)).text) as {
      Id: string;
      State: string;
    }[];

  beforeAll(async () => {
    if (!haveDockerd) throw new Error("this test starts its own dockerd: it needs root, dockerd (scripts/test-services.sh installs docker.io) and unshare (util-linux)");
    await dockerd.start();
    const load = await engine(dockerd.socket, "POST", "/images/load?quiet=1", await imageTar(sharedSocket, BASE_IMAGE));
    expect(load.status).toBe(200);
    repo = await makeGitRepo();
    await repo.commit({ Dockerfile: `FROM ${BASE_IMAGE}\nCMD ["sh", "-c", "trap 'exit 0' TERM; echo up; while true; do sleep 1; done"]\n` }, "v1");
    ctl = await controllerProcess(`
apps:
  - name: ${app}
    repo: acme/${app}
    url: ${repo.url}
    hosts: [${host}]
`);
    agent = agentProcess(ctl.url, host, { DOCKER_HOST: `unix://${dockerd.socket}`, DEPLOYBOT_RECONCILE_INTERVAL_SECONDS: "1" });
    const res = await ctl.api("POST", "/v1/deployments", { app });
    expect(res.status).toBe(201);
    const deployment = await waitFor("the deployment", async () => {
      const { body } = await ctl.api("GET", `/v1/deployments/${res.body.deployment.id}`);
      return ["succeeded", "failed", "cancelled"].includes(body.deployment.status) ? body.deployment : undefined;
    });
    expect(deployment.status).toBe("succeeded");
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    for (const c of await appContainers().catch(() => [])) await engine(dockerd.socket, "DELETE", `/containers/${c.Id}?force=1`).catch(() => undefined);
    await dockerd.remove();
    await repo?.cleanup();
  });

  it("after the engine restarts, the app's container runs again and the restart is an event", async () => {
    const [before] = await appContainers();
    expect(before?.State).toBe("running");
    await dockerd.stop();
    await dockerd.start();
    // Docker's restart policy is off: only the agent can have started it again
    expect((await appContainers())[0]?.State).not.toBe("running");
    await waitFor("the container running again", async () => ((await appContainers())[0]?.State === "running" ? true : undefined), 90_000);
    expect((await appContainers()).map((c) => c.Id)).toEqual([before!.Id]);
    const events = await waitFor("the restart event", async () => {
      const { body } = await ctl.api("GET", `/v1/apps/${app}/events`);
      return body.events.some((e: { kind: string }) => e.kind === "restarted") ? body.events : undefined;
    });
    expect(events.find((e: { kind: string }) => e.kind === "exited").reason).toMatch(/restarting in 10 s/);
  });
});
