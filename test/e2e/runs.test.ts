import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../../apps/cli/test/runCli";
import { ADMIN, type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitFor, waitForHostOnline } from "../harness/processes";
import { BASE_IMAGE, containersWithLabels, describeDocker, freePort, removeAppContainers, uniqueName } from "../support/docker";

interface RunBody {
  id: string;
  schedule: string | null;
  tickAt: string | null;
  status: string;
  exitCode: number | null;
  jobId: string | null;
  createdAt: string;
  resultFile: { path: string; size: number; truncated: boolean } | null;
}

const FINAL = ["succeeded", "failed", "cancelled", "lost", "timed_out", "missed", "skipped"];

/**
 * Schedules and runs end to end: controller and agent processes, the real engine, an app
 * deployed from the local base image (holding a host port), seconds-level schedules.
 */
describeDocker("scheduled and one-off runs end to end (controller + agent processes, real engine)", () => {
  const app = uniqueName("runs");
  const host = uniqueName("host");
  let ctl: ControllerProcess;
  let agent: AgentProcess;

  const runsOf = async (schedule?: string): Promise<RunBody[]> =>
    (await ctl.api("GET", `/v1/runs?app=${app}&limit=200${schedule ? `&schedule=${schedule}` : ""}`)).body.runs;
  const cli = (args: string[]) => runCli({ url: ctl.url, home: mkdtempSync(join(tmpdir(), "deploybot-runs-cli-")) }, args, { env: { DEPLOYBOT_TOKEN: ADMIN } });

  beforeAll(async () => {
    const port = await freePort();
    // Every 4 s a run writes a result file; every 6 s (at :02, :08, ...) one fails with exit 5.
    ctl = await controllerProcess(`
apps:
  - name: ${app}
    repo: acme/${app}
    hosts: [${host}]
    run:
      command: [sleep, "3600"]
      ports: ["127.0.0.1:${port}:80"]
      env: { GREETING: hello }
      restart: "no"
    schedules:
      - name: report
        cron: "*/4 * * * * *"
        command: [sh, -c, 'echo "$GREETING from the report"; printf "{\\"greeting\\":\\"%s\\"}" "$GREETING" > /tmp/result.json']
        result_file: /tmp/result.json
        concurrency: forbid
        starting_deadline_seconds: 3
      - name: broken
        cron: "2/6 * * * * *"
        command: [sh, -c, "echo failing >&2; exit 5"]
        concurrency: allow
`,
      // leases of 15 s: an agent killed mid-run is back (and re-attached) before its lease ends
      { DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "5" },
    );
    agent = agentProcess(ctl.url, host);
    await waitForHostOnline(ctl, host);
    const created = await ctl.api("POST", "/v1/deployments", { app, image: BASE_IMAGE });
    expect(created.status).toBe(201);
    await waitFor("the deployment", async () => {
      const { body } = await ctl.api("GET", `/v1/deployments/${created.body.deployment.id}`);
      if (["failed", "cancelled"].includes(body.deployment.status)) throw new Error(`deployment ${body.deployment.status}: ${body.deployment.error}`);
      return body.deployment.status === "succeeded" ? true : undefined;
    });
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await removeAppContainers(app);
  });

  it("runs on its seconds-level ticks: exit code, duration and the result file stored and downloadable; no ports taken from the app", async () => {
    const done = await waitFor(
      "two succeeded report runs",
      async () => {
        const ok = (await runsOf("report")).filter((r) => r.status === "succeeded");
        return ok.length >= 2 ? ok : undefined;
      },
      90_000,
    );
    for (const run of done) {
      expect(new Date(run.tickAt!).getUTCSeconds() % 4).toBe(0);
      expect(Date.parse(run.tickAt!) % 1000).toBe(0);
      // queued within its own 4 s period (the scheduler looks just after every second)
      expect(Date.parse(run.createdAt) - Date.parse(run.tickAt!)).toBeLessThan(4000);
      expect(run).toMatchObject({ exitCode: 0, resultFile: { path: "/tmp/result.json", size: 20, truncated: false } });
    }
    const res = await fetch(`${ctl.url}/v1/runs/${done[0]!.id}/result`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ greeting: "hello" });
    const log = (await ctl.api("GET", `/v1/jobs/${done[0]!.jobId}/logs`)).body.entries.map((e: { line: string }) => e.line);
    expect(log).toContain("hello from the report");
    // the finished runs' containers are gone; the app's own (serving, no role label) container
    // still runs and holds its port. A later tick's run container may be running right now
    // (ticks every 4 s and 6 s), so only serving containers are counted.
    const containers = await containersWithLabels([`deploybot.app=${app}`]);
    const serving = containers.filter((c) => c.State === "running" && !c.Labels["deploybot.role"]);
    expect(serving).toHaveLength(1);
    expect(serving[0]!.Ports.some((p) => p.PublicPort !== undefined)).toBe(true);
    for (const run of done) expect(containers.every((c) => c.Labels["deploybot.job"] !== run.jobId)).toBe(true);
  });

  it("a failing command is recorded failed with its exit code", async () => {
    const failed = await waitFor(
      "a failed run of the broken schedule",
      async () => (await runsOf("broken")).find((r) => r.status === "failed" && r.exitCode !== null),
      90_000,
    );
    expect(failed.exitCode).toBe(5);
    expect(new Date(failed.tickAt!).getUTCSeconds() % 6).toBe(2);
  });

  it("a controller restart (kill -9) does not double a tick: one run row and at most one job per tick", async () => {
    const before = (await runsOf()).length;
    await ctl.stop("SIGKILL");
    await new Promise((r) => setTimeout(r, 5000));
    await ctl.start();
    await waitFor(
      "new runs after the restart",
      async () => ((await runsOf()).filter((r) => FINAL.includes(r.status)).length > before + 3 ? true : undefined),
      90_000,
    );
    const all = await runsOf();
    for (const schedule of ["report", "broken"]) {
      const ticks = all.filter((r) => r.schedule === schedule && r.tickAt).map((r) => r.tickAt);
      expect(new Set(ticks).size).toBe(ticks.length);
    }
    const jobIds = all.map((r) => r.jobId).filter((j) => j !== null);
    expect(new Set(jobIds).size).toBe(jobIds.length);
    const { body } = await ctl.api("GET", `/v1/jobs?app=${app}&limit=200`);
    const runJobs = body.jobs.filter((j: { kind: string }) => j.kind === "run");
    expect(runJobs.length).toBe(jobIds.length);
  });

  it("deploybot run APP -- sh -c 'exit 3' follows the output and exits 3; schedules, runs and result on the CLI", async () => {
    for (const name of ["report", "broken"]) expect((await cli(["schedule", "pause", app, name])).code).toBe(0);
    const one = await cli(["run", app, "--", "sh", "-c", "echo one-off $GREETING; exit 3"]);
    expect(one.stdout).toContain("one-off hello");
    expect(one.stderr).toMatch(/exited 3/);
    expect(one.code).toBe(3);

    const list = await cli(["schedules", app]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/report\s+\*\/4 \* \* \* \* \*\s+UTC\s+paused/);
    const history = await cli(["runs", app, "report"]);
    expect(history.code).toBe(0);
    expect(history.stdout).toMatch(/succeeded\s+0\s/);
    const ok = (await runsOf("report")).find((r) => r.status === "succeeded")!;
    const file = await cli(["result", ok.id]);
    expect(file.code).toBe(0);
    expect(JSON.parse(file.stdout)).toEqual({ greeting: "hello" });
  });
  it("an agent killed during a run re-attaches after its restart: exit code and result file still arrive", async () => {
    const created = await ctl.api("POST", `/v1/apps/${app}/runs`, {
      command: ["sh", "-c", "sleep 4; echo survived > /tmp/r.txt; exit 4"],
      resultFile: "/tmp/r.txt",
    });
    expect(created.status).toBe(201);
    const id = created.body.run.id as string;
    const jobId = created.body.run.jobId as string;
    // the job reports running before its container exists: wait for the container itself
    await waitFor("the run's container", async () =>
      (await containersWithLabels([`deploybot.job=${jobId}`])).some((c) => c.State === "running") ? true : undefined,
    );
    await agent.stop("SIGKILL");
    agent.start();
    const run = await waitFor(
      "the re-attached run to end",
      async () => {
        const { body } = await ctl.api("GET", `/v1/runs/${id}`);
        return FINAL.includes(body.run.status) ? (body.run as RunBody) : undefined;
      },
      90_000,
    );
    expect(run).toMatchObject({ status: "failed", exitCode: 4, resultFile: { path: "/tmp/r.txt", size: 9 } });
    const res = await fetch(`${ctl.url}/v1/runs/${id}/result`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(await res.text()).toBe("survived\n");
    expect(await containersWithLabels([`deploybot.job=${run.jobId}`])).toEqual([]);
  });
});
