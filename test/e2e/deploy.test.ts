import { afterAll, beforeAll, expect, it } from "vitest";
import {
  containersWithLabels,
  describeDocker,
  freePort,
  httpGet,
  makeGitRepo,
  registryDigest,
  removeAppContainers,
  type TestGitRepo,
  testAppFiles,
  testRegistry,
  testRegistryEnv,
  uniqueName,
} from "../support/docker";
import {
  type AgentProcess,
  agentProcess,
  type ControllerProcess,
  controllerProcess,
  jobLog,
  waitFor,
  waitForHostOnline,
  waitForJob,
} from "../harness/processes";

/**
 * The product end to end: real controller and agent processes, the real Docker engine, a real
 * registry with auth, and a bare git repository standing in for GitHub.
 */
describeDocker("deploy end to end (controller + agent processes, real engine and registry)", () => {
  const app = uniqueName("e2e");
  const host = uniqueName("host");
  let port: number;
  let repo: TestGitRepo;
  let ctl: ControllerProcess;
  let agent: AgentProcess;

  const deploy = async (ref: string) => {
    const res = await ctl.api("POST", "/v1/jobs", { repo: `acme/${app}`, ref, host });
    expect(res.status).toBe(201);
    return res.body.job.id as string;
  };

  beforeAll(async () => {
    port = await freePort();
    repo = await makeGitRepo();
    const appsYaml = `
apps:
  - name: ${app}
    repo: acme/${app}
    url: ${repo.url}
    hosts: [${host}]
    image: ${testRegistry.host}/${app}
    run:
      ports: ["127.0.0.1:${port}:80"]
      env: { GREETING: hello }
      healthcheck: { path: /health, port: 80, timeout_seconds: 8 }
      memory: 64m
`;
    ctl = await controllerProcess(appsYaml, {
      ...testRegistryEnv,
      // A lease lasts 3 intervals. With 1 s, an agent restarted on a loaded machine (tsx start-up
      // takes seconds there) came back after its lease ran out, so the kill -9 case saw `lost`
      // before the agent could report `failed`. Long-poll still hands out jobs at once.
      DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "3",
    });
    agent = agentProcess(ctl.url, host);
    await waitForHostOnline(ctl, host);
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await removeAppContainers(app);
    await repo?.cleanup();
  });

  it("deploys a git ref: builds, pushes with auth, runs, answers its health URL", async () => {
    const sha = await repo.commit(testAppFiles("v1", { salt: app }), "v1");
    const job = await waitForJob(ctl, await deploy("main"));
    expect(job.error).toBeNull();
    expect(job.status).toBe("succeeded");
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v1\n" });
    expect(await httpGet(port, "/health")).toMatchObject({ status: 200 });
    expect(await registryDigest(app, sha)).toMatch(/^sha256:/);
    const text = JSON.stringify(await jobLog(ctl, job.id));
    expect(text).not.toContain(testRegistry.password);
  });

  it("redeploys a new commit: the new container replaces the old and cached layers are reused", async () => {
    await repo.commit(testAppFiles("v2", { salt: app }), "v2");
    const job = await waitForJob(ctl, await deploy("main"));
    expect(job.status).toBe("succeeded");
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v2\n" });
    const running = (await containersWithLabels([`deploybot.app=${app}`])).filter((c) => c.State === "running");
    expect(running).toHaveLength(1);
    const lines = (await jobLog(ctl, job.id)).map((e) => e.line).join("\n");
    expect(lines).toMatch(/Using cache/i);
  });

  it("a failing health check fails the job with the reason and last log lines; the old version keeps answering", async () => {
    await repo.commit(testAppFiles("v3-broken", { salt: app, healthy: false }), "broken");
    const job = await waitForJob(ctl, await deploy("main"));
    expect(job.status).toBe("failed");
    expect(job.error).toMatch(/health/i);
    expect(job.error).toContain("starting version v3-broken");
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v2\n" });
    const all = await containersWithLabels([`deploybot.app=${app}`]);
    expect(all).toHaveLength(1);
  });

  it("the builds API: the seeds' {name, version, files} builds and pushes name:version and :latest", async () => {
    const name = uniqueName("files");
    const res = await ctl.api("POST", "/v1/builds", { name, version: "1.0.0", files: testAppFiles("files-1"), host });
    expect(res.status).toBe(201);
    const job = await waitForJob(ctl, res.body.job.id);
    expect(job.status).toBe("succeeded");
    const answer = (await ctl.api("GET", `/v1/builds/${job.id}`)).body;
    expect(answer).toMatchObject({ success: true, image_tag: `${testRegistry.host}/${name}:1.0.0`, error: null });
    const version = await registryDigest(name, "1.0.0");
    expect(version).toMatch(/^sha256:/);
    expect(await registryDigest(name, "latest")).toBe(version);
  });

  it("cancel during a slow build ends the job cancelled within seconds and leaves nothing running", async () => {
    await repo.commit(testAppFiles("slow", { salt: app, slowBuild: true }), "slow", "slow");
    const jobId = await deploy("slow");
    await waitFor("the slow build step", async () =>
      (await jobLog(ctl, jobId)).some((e) => /sleep 60/.test(e.line)) ? true : undefined,
    );
    const asked = Date.now();
    expect((await ctl.api("POST", `/v1/jobs/${jobId}/cancel`)).status).toBe(200);
    const job = await waitForJob(ctl, jobId, undefined, 30_000);
    expect(job.status).toBe("cancelled");
    expect(Date.now() - asked).toBeLessThan(15_000);
    expect((await containersWithLabels([`deploybot.job=${jobId}`])).filter((c) => c.State === "running")).toEqual([]);
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v2\n" });
  });

  it("kill -9 of the agent mid-job, then restart: the job is failed at once, never left running", async () => {
    const jobId = await deploy("slow");
    await waitFor("the slow build step", async () =>
      (await jobLog(ctl, jobId)).some((e) => /sleep 60/.test(e.line)) ? true : undefined,
    );
    await agent.stop("SIGKILL");
    agent.start();
    const job = await waitForJob(ctl, jobId, undefined, 30_000);
    expect(job.status).toBe("failed");
    expect(job.error).toMatch(/agent restarted/);
    expect((await containersWithLabels([`deploybot.job=${jobId}`])).filter((c) => c.State === "running")).toEqual([]);
  });

  it("the controller stopped for 30 s mid-job: the job completes and its log is complete and in order", async () => {
    const files = testAppFiles("v4", { salt: app });
    files.Dockerfile = files.Dockerfile!.replace("COPY www/", "RUN for i in 1 2 3 4 5 6; do echo build-step-$i; sleep 1; done\nCOPY www/");
    await repo.commit(files, "v4");
    const jobId = await deploy("main");
    await waitFor("the job to run", async () => ((await jobLog(ctl, jobId)).length > 0 ? true : undefined));
    expect(await ctl.stop()).toBe(0);
    await new Promise((r) => setTimeout(r, 30_000));
    await ctl.start();
    const job = await waitForJob(ctl, jobId);
    expect(job.status).toBe("succeeded");
    const log = await jobLog(ctl, jobId);
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i));
    expect(log.length).toBe(job.logLines);
    const steps = log.map((e) => e.line).filter((l) => /^build-step-\d$/.test(l.trim()));
    expect(steps.map((l) => l.trim())).toEqual([1, 2, 3, 4, 5, 6].map((i) => `build-step-${i}`));
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v4\n" });
  });

  it("SIGTERM lets the current job finish, flushes its log and exits 0", async () => {
    const files = testAppFiles("v5", { salt: app });
    files.Dockerfile = files.Dockerfile!.replace("COPY www/", "RUN for i in 1 2 3 4; do echo drain-step-$i; sleep 1; done\nCOPY www/");
    await repo.commit(files, "v5");
    const jobId = await deploy("main");
    await waitFor("the job to run", async () => ((await jobLog(ctl, jobId)).length > 0 ? true : undefined));
    expect(await agent.stop("SIGTERM")).toBe(0);
    const job = await waitForJob(ctl, jobId, undefined, 60_000);
    expect(job.status).toBe("succeeded");
    const log = await jobLog(ctl, jobId);
    expect(log.length).toBe(job.logLines);
    expect(log.filter((e) => /^drain-step-\d$/.test(e.line.trim()))).toHaveLength(4);
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v5\n" });
  });
});
