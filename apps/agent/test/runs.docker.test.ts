import net from "node:net";
import Dockerode from "dockerode";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BASE_IMAGE, containersWithLabels, describeDocker, freePort, removeAppContainers, uniqueName } from "../../../test/support/docker";
import { copyResultFile } from "../src/docker/resultFile";
import { executeJob } from "../src/executors";
import { makeContext, makeJob, type TestContext } from "./jobFixture";

const docker = new Dockerode();

describeDocker("run jobs: result files, ports, cancel (real engine)", () => {
  const app = uniqueName("runs");
  const contexts: TestContext[] = [];
  let box: Dockerode.Container;
  const newContext = async () => {
    const ctx = await makeContext(docker);
    contexts.push(ctx);
    return ctx;
  };

  beforeAll(async () => {
    // one stopped container holding every kind of path a result_file could name
    const script = [
      "head -c 2097152 /dev/zero | tr '\\0' x > /big.txt",
      "echo small > /small.txt",
      "mkdir -p /adir && echo a > /adir/a",
      "ln -s /etc/passwd /link",
    ].join(" && ");
    box = await docker.createContainer({ Image: BASE_IMAGE, Cmd: ["sh", "-c", script], Labels: { "deploybot.app": app } });
    await box.start();
    await box.wait();
  });

  afterAll(async () => {
    await removeAppContainers(app);
    for (const ctx of contexts) await ctx.cleanup();
  });

  it("copies a result file out of a stopped container; a 2 MiB file is cut to the 1 MiB cap with its real size", async () => {
    const small = await copyResultFile(docker, box.id, "/small.txt");
    expect(small).toMatchObject({ ok: true, size: 6, truncated: false });
    if (small.ok) expect(small.content.toString()).toBe("small\n");
    const big = await copyResultFile(docker, box.id, "/big.txt");
    expect(big).toMatchObject({ ok: true, size: 2 * 1024 * 1024, truncated: true });
    if (big.ok) expect(big.content.length).toBe(1024 * 1024);
  });

  it("refuses a directory and a symlink, and says so for a missing file", async () => {
    expect(await copyResultFile(docker, box.id, "/adir")).toMatchObject({ ok: false, error: expect.stringMatching(/not a regular file \(a directory/) });
    expect(await copyResultFile(docker, box.id, "/link")).toMatchObject({ ok: false, error: expect.stringMatching(/not a regular file \(a symlink/) });
    expect(await copyResultFile(docker, box.id, "/nope")).toMatchObject({ ok: false, error: "no such file in the container" });
  });

  it("a run of a web app's spec publishes nothing: it succeeds while the app holds its host port", async () => {
    const port = await freePort();
    const holder = net.createServer().listen(port, "127.0.0.1");
    await new Promise((r) => holder.once("listening", r));
    try {
      const ctx = await newContext();
      const job = makeJob({
        kind: "run",
        app,
        source: { type: "image", image: BASE_IMAGE },
        run: { ports: [`127.0.0.1:${port}:80`], env: {}, secrets: [], restart: "unless-stopped", command: ["sh", "-c", "sleep 1; echo ran"], healthcheck: { path: "/", port: 80, timeout_seconds: 5, interval_seconds: 1 } },
      });
      const running = executeJob(job, ctx);
      const seen = await (async () => {
        for (let i = 0; i < 200; i++) {
          const found = await containersWithLabels([`deploybot.job=${job.id}`]);
          if (found.length > 0) return found;
          await new Promise((r) => setTimeout(r, 50));
        }
        return [];
      })();
      // a run's container is never mistaken for one of the app's serving replicas
      expect(seen[0]?.Labels["deploybot.role"]).toBe("run");
      const outcome = await running;
      expect(outcome).toMatchObject({ ok: true, result: { exitCode: 0 } });
      expect(ctx.lines).toContainEqual({ stream: "stdout", line: "ran" });
      expect(await containersWithLabels([`deploybot.job=${job.id}`])).toEqual([]);
    } finally {
      holder.close();
    }
  });

  it("a cancelled (or timed-out) run is killed and its container removed", async () => {
    const ctx = await newContext();
    const job = makeJob({ kind: "run", app, source: { type: "image", image: BASE_IMAGE }, run: { ports: [], env: {}, secrets: [], restart: "no", command: ["sleep", "600"] } });
    const running = executeJob(job, ctx);
    for (let i = 0; i < 100 && (await containersWithLabels([`deploybot.job=${job.id}`])).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    ctx.controller.abort();
    expect(await running).toMatchObject({ ok: false, error: "cancelled" });
    expect(await containersWithLabels([`deploybot.job=${job.id}`])).toEqual([]);
  });
});
