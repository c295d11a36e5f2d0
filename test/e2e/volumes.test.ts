import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { volumeName } from "../../packages/protocol/src/volumes";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../../apps/cli/test/runCli";
import { ADMIN, type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, jobLog, waitFor, waitForHostOnline, waitForJob } from "../harness/processes";
import { BASE_IMAGE, containersWithLabels, describeDocker, engineRequest, removeAppContainers, uniqueName } from "../support/docker";

/**
 * Volumes with real controller and agent processes on the real engine: a named volume keeps an
 * app's file through a redeploy, a rollback and reconcile's recreation of a removed container;
 * runs see it; `deploybot volumes` lists it with its size; `deploybot remove --purge-volumes`
 * deletes it. Binds outside the agent's roots, through a symlink, or of the Docker socket are
 * refused before anything starts.
 */
describeDocker("volumes (controller + agent processes, real engine)", () => {
  const app = uniqueName("vdata");
  const outsider = uniqueName("vout");
  const escaper = uniqueName("vesc");
  const host = uniqueName("vhost");
  const base = mkdtempSync(join(tmpdir(), "deploybot-e2e-volumes-"));
  const root = join(base, "root");
  const outside = join(base, "outside");
  let ctl: ControllerProcess;
  let agent: AgentProcess;
  const cli = (args: string[]) => runCli({ url: ctl.url, home: mkdtempSync(join(base, "cli-")) }, args, { env: { DEPLOYBOT_TOKEN: ADMIN } });

  // each start appends V to the volume; the first one also leaves a file there
  const appsYaml = (v: string) => `
apps:
  - name: ${app}
    repo: acme/${app}
    hosts: [${host}]
    run:
      env: { V: ${v} }
      command: [sh, -c, "[ -f /data/first ] || echo written-by-$V > /data/first; echo $V >> /data/starts; trap 'exit 0' TERM; sleep 600 & wait"]
      volumes:
        - data:/data
  - name: ${outsider}
    repo: acme/${outsider}
    hosts: [${host}]
    run:
      command: [sleep, "600"]
      volumes: ["${outside}:/x"]
  - name: ${escaper}
    repo: acme/${escaper}
    hosts: [${host}]
    run:
      command: [sleep, "600"]
      volumes: ["${root}/escape:/x:ro"]
`;
  const deploy = async (name: string) => {
    const res = await ctl.api("POST", "/v1/deployments", { app: name, image: BASE_IMAGE });
    expect(res.status).toBe(201);
    return waitDeployment(res.body.deployment.id);
  };
  const waitDeployment = (id: string) =>
    waitFor(`deployment ${id}`, async () => {
      const { body } = await ctl.api("GET", `/v1/deployments/${id}`);
      return ["succeeded", "failed", "cancelled"].includes(body.deployment.status) ? body.deployment : undefined;
    });
  const serving = async (name: string) => (await containersWithLabels([`deploybot.app=${name}`, `deploybot.host=${host}`])).filter((c) => !c.Labels["deploybot.role"]);
  /** a one-off run in the app's current release: what it printed */
  const runIn = async (command: string) => {
    const created = await ctl.api("POST", `/v1/apps/${app}/runs`, { command: ["sh", "-c", command], host });
    expect(created.status).toBe(201);
    const job = await waitForJob(ctl, (await waitFor("the run's job", async () => (await ctl.api("GET", `/v1/runs/${created.body.run.id}`)).body.run.jobId ?? undefined)) as string);
    expect(job.status).toBe("succeeded");
    return (await jobLog(ctl, job.id)).filter((e) => e.stream === "stdout").map((e) => e.line);
  };

  beforeAll(async () => {
    mkdirSync(root, { recursive: true });
    mkdirSync(outside, { recursive: true });
    symlinkSync(outside, join(root, "escape"));
    ctl = await controllerProcess(appsYaml("v1"));
    agent = agentProcess(ctl.url, host, { DEPLOYBOT_RECONCILE_INTERVAL_SECONDS: "1", DEPLOYBOT_AGENT_BIND_ROOTS: root });
    await waitForHostOnline(ctl, host);
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    for (const a of [app, outsider, escaper]) await removeAppContainers(a);
    await engineRequest("DELETE", `/volumes/${volumeName(app, "data")}`);
    rmSync(base, { recursive: true, force: true });
  });

  it("a file in a named volume outlives a redeploy, a rollback and a removed container; a run sees it; purge deletes it", async () => {
    const first = await deploy(app);
    expect(first.status).toBe("succeeded");
    writeFileSync(join(ctl.dir, "apps.yaml"), appsYaml("v2"));
    await ctl.reload();
    expect((await deploy(app)).status).toBe("succeeded");
    expect(await runIn("cat /data/first")).toEqual(["written-by-v1"]);

    const rb = await ctl.api("POST", `/v1/apps/${app}/rollback`, {});
    expect(rb.status).toBe(201);
    expect(rb.body.deployment.releaseId).toBe(first.releaseId);
    expect((await waitDeployment(rb.body.deployment.id)).status).toBe("succeeded");

    // removed behind the agent's back: reconcile creates it again from the desired state
    const [gone] = await serving(app);
    expect((await engineRequest("DELETE", `/containers/${gone!.Id}?force=1`)).status).toBe(204);
    await waitFor("reconcile to recreate the container", async () => {
      const now = (await serving(app)).filter((c) => c.State === "running" && c.Id !== gone!.Id);
      return now.length === 1 ? true : undefined;
    });
    expect(await runIn("sleep 1; cat /data/first /data/starts")).toEqual(["written-by-v1", "v1", "v2", "v1", "v1"]);

    // listed per host with its size, from the agent's heartbeat
    const listed = await waitFor("the volume in deploybot volumes", async () => {
      const run = await cli(["volumes", app, "--json"]);
      expect(run.code).toBe(0);
      const rows = JSON.parse(run.stdout).volumes as { host: string; volume: string; name: string; sizeBytes: number | null }[];
      return rows.length > 0 && rows[0]!.sizeBytes !== null ? rows : undefined;
    });
    expect(listed).toEqual([expect.objectContaining({ host, app, volume: "data", name: volumeName(app, "data"), online: true })]);
    expect(listed[0]!.sizeBytes).toBeGreaterThan(0);
    const table = await cli(["volumes"]);
    expect(table.stdout).toMatch(new RegExp(`${host}\\s+${app}\\s+data\\s+\\d`));

    // remove keeps the data; --purge-volumes deletes it
    expect((await cli(["remove", app, "--host", host])).code).toBe(0);
    expect((await engineRequest("GET", `/volumes/${volumeName(app, "data")}`)).status).toBe(200);
    const purged = await cli(["remove", app, "--host", host, "--purge-volumes"]);
    expect(purged.code).toBe(0);
    expect(purged.stdout + purged.stderr).toMatch(/deleted volume/);
    expect((await engineRequest("GET", `/volumes/${volumeName(app, "data")}`)).status).toBe(404);
  });

  it("binds outside the agent's roots, through a symlink out of them, or of the Docker socket are refused before anything starts", async () => {
    const out = await deploy(outsider);
    expect(out.status).toBe("failed");
    expect(out.error).toMatch(/is outside the directories this host allows \(DEPLOYBOT_AGENT_BIND_ROOTS=/);
    const esc = await deploy(escaper);
    expect(esc.status).toBe("failed");
    expect(esc.error).toMatch(/escape \(it resolves to .*outside\) is outside/);
    expect(await serving(outsider)).toEqual([]);
    expect(await serving(escaper)).toEqual([]);
    // the Docker socket never gets as far as a job: the API refuses the spec
    const socket = await ctl.api("POST", "/v1/jobs", {
      spec: { kind: "deploy", app: outsider, source: { type: "image", image: BASE_IMAGE }, run: { volumes: ["/var/run/docker.sock:/var/run/docker.sock"] } },
      target: { host },
    });
    expect(socket.status).toBe(400);
    expect(JSON.stringify(socket.body)).toMatch(/container engine's socket/);
  });
});
