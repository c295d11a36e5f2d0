import { afterAll, beforeAll, expect, it } from "vitest";
import Dockerode from "dockerode";
import { describeDocker, freePort, httpGet, makeGitRepo, registryDigest, removeAppContainers, type TestGitRepo, testAppFiles, testRegistry, uniqueName } from "../../../test/support/docker";
import { executeJob, listManagedContainers } from "../src/executors";
import { makeContext, makeJob } from "./jobFixture";

const docker = new Dockerode();

describeDocker("deploy from git (real engine + registry)", () => {
  const app = uniqueName("gitapp");
  let repo: TestGitRepo;
  let port: number;
  let cacheRoot: string;
  const cleanups: (() => Promise<void>)[] = [];
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    repo = await makeGitRepo();
    port = await freePort();
  });
  afterAll(async () => {
    await removeAppContainers(app);
    await repo.cleanup();
    for (const c of cleanups) await c();
    console.log(`deploy timings (s): ${JSON.stringify(timings)}`);
  });

  const deploy = async (ref: string, options: { healthTimeout?: number } = {}) => {
    const ctx = await makeContext(docker, { cacheRoot, registries: [{ url: testRegistry.host, username: testRegistry.username, password: testRegistry.password }] });
    cacheRoot ??= ctx.cacheRoot;
    cleanups.push(ctx.cleanup);
    const job = makeJob({
      kind: "deploy",
      app,
      source: { type: "git", url: repo.url, ref },
      image: `${testRegistry.host}/${app}`,
      run: {
        ports: [`127.0.0.1:${port}:80`],
        env: { GREETING: "hi" },
        secrets: [],
        restart: "unless-stopped",
        memory: "64m",
        cpus: 0.5,
        healthcheck: { path: "/health", port: 80, timeout_seconds: options.healthTimeout ?? 20, interval_seconds: 0.2 },
      },
    });
    const started = Date.now();
    const outcome = await executeJob(job, ctx);
    return { outcome, ctx, job, seconds: (Date.now() - started) / 1000 };
  };

  it("deploys a commit: builds, pushes with auth, and the container answers its health URL", async () => {
    const sha = await repo.commit(testAppFiles("v1", { salt: app }), "v1");
    const { outcome, job, seconds } = await deploy("main");
    timings.firstDeploy = seconds;
    expect(outcome).toMatchObject({ ok: true, result: { sha, version: sha } });
    if (!outcome.ok) return;
    expect(outcome.result.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await registryDigest(app, sha)).toBe(outcome.result.digest);
    expect(await registryDigest(app, "latest")).toBe(outcome.result.digest);
    expect(await httpGet(port, "/")).toEqual({ status: 200, body: "v1\n" });

    const containers = (await listManagedContainers(docker)).filter((c) => c.app === app);
    expect(containers).toHaveLength(1);
    expect(containers[0]).toMatchObject({ job: job.id, release: sha, state: "running" });
    const info = await docker.getContainer(containers[0]!.id).inspect();
    expect(info.Config.Env).toContain("GREETING=hi");
    expect(info.HostConfig.Memory).toBe(64 * 1024 * 1024);
    expect(info.HostConfig.NanoCpus).toBe(5e8);
    // reconcile owns restarts; Docker's policy steps aside whatever run.restart says
    expect(info.HostConfig.RestartPolicy?.Name).toBe("no");
  });

  it("redeploys a new commit: one container left, unchanged layers come from the cache", async () => {
    const sha = await repo.commit(testAppFiles("v2", { salt: app }), "v2");
    const { outcome, ctx, seconds } = await deploy(sha);
    timings.cachedRedeploy = seconds;
    expect(outcome).toMatchObject({ ok: true, result: { sha } });
    expect(ctx.text()).toContain("Using cache");
    expect(ctx.text()).toContain("cached mirror");
    expect(await httpGet(port, "/")).toEqual({ status: 200, body: "v2\n" });
    const containers = (await listManagedContainers(docker)).filter((c) => c.app === app);
    expect(containers.map((c) => c.release)).toEqual([sha]);
  });

  it("a release that fails its health check leaves the old one serving and reports why", async () => {
    await repo.commit(testAppFiles("v3-broken", { healthy: false, salt: app }), "v3 broken");
    await repo.tag("v3");
    const { outcome } = await deploy("v3", { healthTimeout: 3 });
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.error).toContain("did not answer 2xx within 3s (last: HTTP 404)");
    expect(outcome.error).toContain("starting version v3-broken");
    expect(await httpGet(port, "/")).toEqual({ status: 200, body: "v2\n" });
    const containers = (await listManagedContainers(docker)).filter((c) => c.app === app);
    expect(containers).toHaveLength(1);
  });
});
