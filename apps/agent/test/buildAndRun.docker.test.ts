import Dockerode from "dockerode";
import { afterAll, expect, it } from "vitest";
import { containersWithLabels, describeDocker, registryDigest, removeAppContainers, testAppFiles, testRegistry, uniqueName } from "../../../test/support/docker";
import { executeJob, findJobContainer } from "../src/executors";
import { makeContext, makeJob, type TestContext } from "./jobFixture";

const docker = new Dockerode();
const registry = { url: testRegistry.host, username: testRegistry.username, password: testRegistry.password };

describeDocker("build, run, cancel and lifecycle jobs (real engine + registry)", () => {
  const apps: string[] = [];
  const contexts: TestContext[] = [];
  const newApp = (prefix: string) => {
    const app = uniqueName(prefix);
    apps.push(app);
    return app;
  };
  const newContext = async () => {
    const ctx = await makeContext(docker);
    contexts.push(ctx);
    return ctx;
  };
  afterAll(async () => {
    for (const app of apps) await removeAppContainers(app);
    for (const ctx of contexts) await ctx.cleanup();
  });

  it("a files build with job credentials pushes :version and :latest", async () => {
    const app = newApp("files");
    const ctx = await newContext();
    const job = makeJob({ kind: "build", app, version: "1.2.3", image: `${testRegistry.host}/${app}`, registry, source: { type: "files", files: testAppFiles("1.2.3") } });
    const outcome = await executeJob(job, ctx);
    expect(outcome).toMatchObject({ ok: true, result: { version: "1.2.3", pushed: [`${testRegistry.host}/${app}:1.2.3`, `${testRegistry.host}/${app}:latest`] } });
    if (!outcome.ok) return;
    expect(await registryDigest(app, "1.2.3")).toBe(outcome.result.digest);
    expect(await registryDigest(app, "latest")).toBe(outcome.result.digest);
    expect(ctx.text()).not.toContain(testRegistry.password);
  });

  it("a push without credentials fails with the registry's refusal", async () => {
    const app = newApp("noauth");
    const outcome = await executeJob(
      makeJob({ kind: "build", app, version: "1", image: `${testRegistry.host}/${app}`, source: { type: "files", files: testAppFiles("1") } }),
      await newContext(),
    );
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.error).toMatch(/push of .* failed: .*(auth|unauthorized)/i);
  });

  it("a build error fails the job with the daemon's message", async () => {
    const app = newApp("badbuild");
    const files = { Dockerfile: "FROM deploybot-test/busybox:latest\nRUN exit 3\n" };
    const outcome = await executeJob(makeJob({ kind: "build", app, source: { type: "files", files } }), await newContext());
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.error).toMatch(/build failed: .*returned a non-zero code: 3/);
  });

  it("cancelling a slow build ends within seconds and leaves nothing behind", async () => {
    const app = newApp("slow");
    const ctx = await newContext();
    const job = makeJob({ kind: "deploy", app, source: { type: "files", files: testAppFiles("slow", { slowBuild: true, salt: app }) } });
    const running = executeJob(job, ctx);
    // Cancel once the sleep step is under way.
    while (!ctx.text().includes("sleep 60")) await new Promise((r) => setTimeout(r, 50));
    const cancelledAt = Date.now();
    ctx.controller.abort();
    const outcome = await running;
    const seconds = (Date.now() - cancelledAt) / 1000;
    expect(outcome).toEqual({ ok: false, error: "cancelled" });
    expect(seconds).toBeLessThan(5);
    // The builder's intermediate container for `RUN sleep 60` goes away with the request. Other
    // files' slow builds may run meanwhile: only this job's step counts (salted with the app name).
    const sleepingOfThisJob = async () => (await docker.listContainers()).filter((c) => c.Command.includes("sleep 60") && c.Command.includes(app));
    let sleeping = await sleepingOfThisJob();
    for (let i = 0; i < 50 && sleeping.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      sleeping = await sleepingOfThisJob();
    }
    expect(sleeping).toEqual([]);
    expect(await containersWithLabels([`deploybot.job=${job.id}`])).toEqual([]);
    expect(await findJobContainer(docker, job.id)).toBeNull();
    console.log(`cancel of a slow build took ${seconds}s`);
  });

  it("a run job streams output, reports the exit code and copies the result file out", async () => {
    const app = newApp("run");
    const ctx = await newContext();
    const files = { Dockerfile: "FROM deploybot-test/busybox:latest\nCMD [\"sh\", \"-c\", \"echo to-stdout; echo to-stderr >&2; echo '{\\\"n\\\":42}' > /tmp/result.json; exit 0\"]\n" };
    const outcome = await executeJob(makeJob({ kind: "run", app, source: { type: "files", files }, run: { ports: [], env: {}, secrets: [], restart: "no", result_file: "/tmp/result.json" } }), ctx);
    expect(outcome).toMatchObject({ ok: true, result: { exitCode: 0, resultFile: { path: "/tmp/result.json", size: 9, stored: 9, truncated: false } } });
    expect(outcome.resultFile?.content.toString()).toBe('{"n":42}\n');
    expect(ctx.lines).toContainEqual({ stream: "stdout", line: "to-stdout" });
    expect(ctx.lines).toContainEqual({ stream: "stderr", line: "to-stderr" });
    expect(await containersWithLabels([`deploybot.app=${app}`])).toEqual([]);

    const failing = { Dockerfile: 'FROM deploybot-test/busybox:latest\nCMD ["sh", "-c", "exit 7"]\n' };
    const failed = await executeJob(makeJob({ kind: "run", app, source: { type: "files", files: failing } }), await newContext());
    expect(failed).toMatchObject({ ok: false, error: "container exited with code 7", result: { exitCode: 7 } });
  });

  it("run.init puts an init process at PID 1 (apps that ignore SIGTERM still stop)", async () => {
    const app = newApp("init");
    const files = { Dockerfile: 'FROM deploybot-test/busybox:latest\nCMD ["cat", "/proc/1/comm"]\n' };
    const run = (init: boolean) => ({ ports: [], env: {}, secrets: [], restart: "no" as const, init });
    const withInit = await newContext();
    expect(await executeJob(makeJob({ kind: "run", app, source: { type: "files", files }, run: run(true) }), withInit)).toMatchObject({ ok: true });
    expect(withInit.lines).toContainEqual({ stream: "stdout", line: "docker-init" });
    const without = await newContext();
    expect(await executeJob(makeJob({ kind: "run", app, source: { type: "files", files }, run: run(false) }), without)).toMatchObject({ ok: true });
    expect(without.lines).toContainEqual({ stream: "stdout", line: "cat" });
  });

  it("stop, restart and remove act on the app's managed containers", async () => {
    const app = newApp("life");
    const deployed = await executeJob(makeJob({ kind: "deploy", app, source: { type: "files", files: testAppFiles("life", { salt: app }) } }), await newContext());
    expect(deployed.ok).toBe(true);
    const state = async () => (await containersWithLabels([`deploybot.app=${app}`])).map((c) => c.State);
    expect(await state()).toEqual(["running"]);
    expect((await executeJob(makeJob({ kind: "stop", app }), await newContext())).ok).toBe(true);
    expect(await state()).toEqual(["exited"]);
    expect((await executeJob(makeJob({ kind: "restart", app }), await newContext())).ok).toBe(true);
    expect(await state()).toEqual(["running"]);
    expect((await executeJob(makeJob({ kind: "remove", app }), await newContext())).ok).toBe(true);
    expect(await state()).toEqual([]);
    expect(await executeJob(makeJob({ kind: "restart", app }), await newContext())).toMatchObject({ ok: false });
  });
});
