import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BASE_IMAGE, describeDocker, engineRequest, testAppFiles, testRegistryEnv, uniqueName } from "../support/docker";
import { type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, jobLog, waitFor, waitForHostOnline, waitForJob } from "../harness/processes";

/** The engine's view of an image: null when it is gone. */
async function inspectImage(id: string): Promise<{ RepoTags?: string[] } | null> {
  const res = await engineRequest("GET", `/images/${id}/json`);
  if (res.status === 404) return null;
  if (res.status !== 200) throw new Error(`engine answered ${res.status}: ${res.body}`);
  return JSON.parse(res.body);
}
const imageExists = async (id: string) => (await inspectImage(id)) !== null;

/**
 * Mounting a small tmpfs needs root (CAP_SYS_ADMIN). Where it is refused, the full-disk case is
 * covered at the fs layer only (apps/agent/test/leftovers.test.ts builds the ENOSPC error).
 */
function mountTmpfs(dir: string, size: string): boolean {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * What an agent killed mid-job leaves behind, and a state disk that fills up, with real agent
 * processes, a real controller and the real engine.
 */
describeDocker("agent leftovers and a full state disk (controller + agent processes, real engine)", () => {
  const host = uniqueName("host");
  let ctl: ControllerProcess;
  let agent: AgentProcess;
  const extra: AgentProcess[] = [];
  const mounts: string[] = [];

  const build = async (name: string, files: Record<string, string>, onHost = host) => {
    const res = await ctl.api("POST", "/v1/builds", { name, version: "1", files, host: onHost });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.job.id as string;
  };

  beforeAll(async () => {
    ctl = await controllerProcess("apps: []\n", {
      ...testRegistryEnv,
      // The killed agent must be back before its lease (3 intervals) ends, or the job ends `lost`
      // instead of failed by the restart. Between the kill and the restart the test waits for the
      // engine to drop the cut build: up to ~10 s on a loaded CI machine, past a 9 s lease (3 s
      // intervals). 10 s intervals: a 30 s lease. Nothing here waits for a host to go offline.
      DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "10",
    });
    agent = agentProcess(ctl.url, host);
    await waitForHostOnline(ctl, host);
  });

  afterAll(async () => {
    for (const a of [agent, ...extra]) await a?.stop();
    await ctl?.stop();
    for (const m of mounts) {
      try {
        execFileSync("umount", ["-l", m], { stdio: "ignore" });
      } catch {
        // already gone
      }
      rmSync(m, { recursive: true, force: true });
    }
  });

  it("kill -9 mid-build: the next start removes the work dir, the cut build's dangling layer and acknowledged spools", async () => {
    const name = uniqueName("cut");
    const jobId = await build(name, testAppFiles("cut", { salt: name, slowBuild: true }));
    const record = join(agent.stateDir, "built", jobId);
    await waitFor("the slow build step", async () => ((await jobLog(ctl, jobId)).some((e) => /sleep 60/.test(e.line)) ? true : undefined));
    await waitFor("the build's first layer on record", async () => (existsSync(record) ? true : undefined));
    expect(await agent.stop("SIGKILL")).toBeNull();

    // what kill -9 left
    const layers = readFileSync(record, "utf8").split("\n").filter(Boolean);
    expect(layers.length).toBeGreaterThan(0);
    const workDir = join(agent.stateDir, "work", jobId);
    expect(existsSync(workDir)).toBe(true);
    expect(existsSync(join(agent.stateDir, "spool", `${jobId}.jsonl`))).toBe(true);
    await waitFor("the engine to drop the cut build (its layer dangling)", async () => {
      const info = await inspectImage(layers[0]!);
      return info && (info.RepoTags ?? []).every((t) => t === "<none>:<none>") ? true : undefined;
    });
    // a spool the controller had acknowledged in full, of a job an earlier run finished
    const oldSpool = join(agent.stateDir, "spool", "job-acked-earlier");
    writeFileSync(`${oldSpool}.jsonl`, '{"ts":"2026-01-01T00:00:00Z","stream":"stdout","line":"x"}\n');
    writeFileSync(`${oldSpool}.meta.json`, JSON.stringify({ leaseId: "gone", acked: 1 }));

    agent.start();
    const job = await waitForJob(ctl, jobId, undefined, 60_000);
    expect(job.status).toBe("failed");
    expect(job.error).toMatch(/agent restarted/);
    await waitFor("the leftovers to be removed", async () => {
      const left = [existsSync(workDir), existsSync(record), existsSync(`${oldSpool}.jsonl`), existsSync(join(agent.stateDir, "spool", `${jobId}.jsonl`))];
      for (const id of layers) left.push(await imageExists(id));
      return left.every((l) => !l) ? true : undefined;
    }, 60_000);
    expect(readFileSync(agent.logFile, "utf8")).toContain("removed leftovers of jobs this agent no longer holds");
  });

  it("after each job: a build that fails leaves no dangling layer", async () => {
    const name = uniqueName("fails");
    const files = { Dockerfile: `FROM ${BASE_IMAGE}\nRUN echo ${name} > /stamp\nRUN echo failing on purpose && exit 3\n` };
    const jobId = await build(name, files);
    const job = await waitForJob(ctl, jobId);
    expect(job.status).toBe("failed");
    const lines = (await jobLog(ctl, jobId)).map((e) => e.line.trim());
    const committed = lines.flatMap((l, i) => (/^Removing intermediate container /.test(lines[i - 1] ?? "") ? (/^---> ([0-9a-f]{12})$/.exec(l)?.slice(1) ?? []) : []));
    expect(committed).toHaveLength(1);
    // the sweep removes the layer first and its record after it: wait for both
    const record = join(agent.stateDir, "built", jobId);
    await waitFor("the failed build's layer and its record to be removed", async () => ((await imageExists(committed[0]!)) || existsSync(record) ? undefined : true), 30_000);
    expect(await imageExists(committed[0]!)).toBe(false);
    expect(existsSync(record)).toBe(false);
  });

  it("a state disk that fills up mid-job fails the job saying the disk is full, and where", async (t) => {
    const stateDir = mkdtempSync(join(tmpdir(), "deploybot-e2e-fulldisk-"));
    mounts.push(stateDir);
    if (!mountTmpfs(stateDir, "768k")) {
      console.warn("cannot mount a tmpfs here (needs root): the full-disk case is covered by the unit test only");
      t.skip();
      return;
    }
    mkdirSync(join(stateDir, "s"));
    const small = uniqueName("small");
    const full = agentProcess(ctl.url, small, { DEPLOYBOT_STATE_DIR: join(stateDir, "s"), DEPLOYBOT_SHIP_APP_LOGS: "false" });
    extra.push(full);
    await waitForHostOnline(ctl, small);
    const name = uniqueName("big");
    // 900 KiB of source into a 768 KiB filesystem: the work dir cannot hold it
    const jobId = await build(name, { ...testAppFiles("big", { salt: name }), "www/blob.txt": "x".repeat(900 * 1024) }, small);
    const job = await waitForJob(ctl, jobId);
    expect(job.status).toBe("failed");
    expect(job.error).toMatch(/the disk is full: no space left on the filesystem holding \S*deploybot-e2e-fulldisk-\S*\/s\/work\//);
    expect(job.error).toMatch(/MiB free of 0\.75 MiB/);
    expect(job.error).not.toMatch(/no longer holds/);
    // the work dir went with the job: the next one has its space back
    const next = await build(uniqueName("after"), testAppFiles("after", { salt: name }), small);
    expect((await waitForJob(ctl, next)).status).toBe("succeeded");
  });
});
