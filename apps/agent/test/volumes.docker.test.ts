import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type DesiredApp, type RunSpec, volumeName } from "@deploybot/protocol";
import Dockerode from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BASE_IMAGE, containersWithLabels, describeDocker, freePort, httpGet, removeAppContainers, uniqueName } from "../../../test/support/docker";
import { measureVolumes, type MountPolicy } from "../src/docker/volumes";
import { executeJob } from "../src/executors";
import { createReplica } from "../src/reconcile/replicas";
import { makeContext, makeJob, type TestContext } from "./jobFixture";

const docker = new Dockerode();

const volumeExists = async (name: string) =>
  docker
    .getVolume(name)
    .inspect()
    .then(() => true)
    .catch((err: { statusCode?: number }) => (err.statusCode === 404 ? false : Promise.reject(err)));

describeDocker("volumes: named volumes outlive containers, binds only below allowed roots (real engine)", () => {
  const apps: string[] = [];
  const contexts: TestContext[] = [];
  const dirs: string[] = [];
  const volumes: string[] = [];
  let root: string;
  let outside: string;
  let stateDir: string;

  const newApp = (prefix: string) => {
    const app = uniqueName(prefix);
    apps.push(app);
    volumes.push(volumeName(app, "data"));
    return app;
  };
  const context = async (policy?: MountPolicy) => {
    const ctx = await makeContext(docker);
    contexts.push(ctx);
    if (policy) ctx.mountPolicy = policy;
    return ctx;
  };
  const runSpec = (command: string, volumesList: string[], extra: Partial<RunSpec> = {}): RunSpec => ({
    ports: [],
    env: {},
    secrets: [],
    restart: "unless-stopped",
    command: ["sh", "-c", command],
    volumes: volumesList,
    ...extra,
  });
  const deploy = async (app: string, release: string, run: RunSpec, policy?: MountPolicy) => {
    const ctx = await context(policy);
    const outcome = await executeJob(makeJob({ kind: "deploy", app, source: { type: "image", image: BASE_IMAGE }, release, run }), ctx);
    return { outcome, ctx };
  };
  /** a one-off run of the app's spec with another command: its log is what it printed */
  const runIn = async (app: string, command: string, volumesList: string[], policy?: MountPolicy) => {
    const ctx = await context(policy);
    const outcome = await executeJob(
      makeJob({ kind: "run", app, source: { type: "image", image: BASE_IMAGE }, run: { ...runSpec(command, volumesList), restart: "no" } }),
      ctx,
    );
    return { outcome, log: ctx.lines.filter((l) => l.stream === "stdout").map((l) => l.line) };
  };

  beforeAll(async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), "deploybot-volumes-"));
    dirs.push(base);
    root = path.join(base, "root");
    outside = path.join(base, "outside");
    stateDir = path.join(root, "agent-state");
    await mkdir(path.join(root, "uploads"), { recursive: true });
    await mkdir(path.join(root, "config"), { recursive: true });
    await mkdir(outside, { recursive: true });
    await mkdir(stateDir, { recursive: true });
    await writeFile(path.join(root, "config", "settings"), "from-the-host\n");
    await writeFile(path.join(outside, "secret"), "outside\n");
    await symlink(outside, path.join(root, "escape"));
    await symlink("/var/run/docker.sock", path.join(root, "engine"));
    await symlink("/etc", path.join(root, "etc-link"));
  });

  afterAll(async () => {
    for (const app of apps) await removeAppContainers(app);
    for (const v of volumes) await docker.getVolume(v).remove().catch(() => undefined);
    for (const ctx of contexts) await ctx.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("a named volume keeps its file across a redeploy, a rollback and a removed-and-recreated container; a run sees it", async () => {
    const app = newApp("vol");
    // each start appends its release to the volume; the first one also leaves a file there
    const serve = (release: string) => runSpec(`[ -f /data/first ] || echo "written by ${release}" > /data/first; echo ${release} >> /data/starts; trap 'exit 0' TERM; sleep 600 & wait`, ["data:/data"]);
    expect((await deploy(app, "r1", serve("r1"))).outcome).toMatchObject({ ok: true });
    const volume = await docker.getVolume(volumeName(app, "data")).inspect();
    expect(volume.Labels).toMatchObject({ "deploybot.managed": "true", "deploybot.app": app, "deploybot.volume": "data" });

    expect((await deploy(app, "r2", serve("r2"))).outcome).toMatchObject({ ok: true });
    expect((await runIn(app, "cat /data/first", ["data:/data"])).log).toEqual(["written by r1"]);

    // a rollback is a deploy of the earlier release with its own config
    expect((await deploy(app, "r1", serve("r1"))).outcome).toMatchObject({ ok: true });

    // the container is removed by hand; reconcile creates one from the desired state
    const [serving] = (await containersWithLabels([`deploybot.app=${app}`])).filter((c) => !c.Labels["deploybot.role"]);
    await docker.getContainer(serving!.Id).remove({ force: true });
    const entry: DesiredApp = { app, release: "r1", image: BASE_IMAGE, run: serve("r1"), replicas: 1, state: "running", route: null, jobId: null };
    const recreated = await createReplica(docker, entry);
    expect(recreated).not.toBe(serving!.Id);
    const ran = await runIn(app, "sleep 1; cat /data/first; cat /data/starts", ["data:/data"]);
    expect(ran.outcome).toMatchObject({ ok: true, result: { exitCode: 0 } });
    expect(ran.log).toEqual(["written by r1", "r1", "r2", "r1", "r1"]);

    const listed = (await measureVolumes(docker)).find((v) => v.app === app);
    expect(listed).toMatchObject({ name: volumeName(app, "data"), volume: "data", sizeBytes: expect.any(Number) });
    expect(listed!.sizeBytes).toBeGreaterThan(0);
  });

  it("remove keeps the volume; remove with purgeVolumes deletes it", async () => {
    const app = newApp("purge");
    expect((await deploy(app, "r1", runSpec("echo kept > /data/f; trap 'exit 0' TERM; sleep 600 & wait", ["data:/data"]))).outcome).toMatchObject({ ok: true });
    const remove = async (purgeVolumes?: boolean) => executeJob(makeJob({ kind: "remove", app, ...(purgeVolumes ? { purgeVolumes } : {}) }), await context());
    expect(await remove()).toMatchObject({ ok: true });
    expect(await volumeExists(volumeName(app, "data"))).toBe(true);
    expect((await runIn(app, "cat /data/f", ["data:/data"])).log).toEqual(["kept"]);
    expect(await remove(true)).toMatchObject({ ok: true, result: { purgedVolumes: [volumeName(app, "data")] } });
    expect(await volumeExists(volumeName(app, "data"))).toBe(false);
  });

  it("the README's backup and restore of a volume bring its files back, hidden ones too", async () => {
    const app = newApp("backup");
    const store = "mkdir -p /data/sub; echo precious > /data/f; echo dot > /data/.hidden; echo deep > /data/sub/g";
    expect((await deploy(app, "r1", runSpec(`${store}; trap 'exit 0' TERM; sleep 600 & wait`, ["data:/data"]))).outcome).toMatchObject({ ok: true });
    const remove = async () => executeJob(makeJob({ kind: "remove", app }), await context()); // the app stopped
    expect(await remove()).toMatchObject({ ok: true });

    // the commands the README gives, run in the test's busybox (Debian's build: no `find -delete`)
    const readme = await readFile(path.join(__dirname, "../../../README.md"), "utf8");
    const block = /\*\*Backing up a volume\.\*\*[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
    const backupCommand = /busybox \\\n\s*(tar czf [^\n]+)/.exec(block)?.[1];
    const restoreCommand = /busybox \\\n\s*sh -c '([^']+)'/.exec(block)?.[1];
    expect(backupCommand).toBeDefined();
    expect(restoreCommand).toBeDefined();
    // the README names the file by today's date when it writes it and by an example date when it reads it
    const oneFile = (command: string) => command.replace(/\/backup\/db-data-(?:\$\(date \+%F\)|[\d-]+)\.tgz/g, "/backup/data.tgz");
    const backups = await mkdtemp(path.join(os.tmpdir(), "deploybot-volume-backup-"));
    dirs.push(backups);
    const volume = volumeName(app, "data");
    const oneShot = async (command: string, readOnly: boolean) => {
      const c = await docker.createContainer({
        Image: BASE_IMAGE,
        Cmd: ["sh", "-c", command],
        Labels: { "deploybot.test": app },
        HostConfig: { Binds: [`${volume}:/data${readOnly ? ":ro" : ""}`, `${backups}:/backup`] },
      });
      try {
        await c.start();
        const { StatusCode } = (await c.wait()) as { StatusCode: number };
        const logs = (await c.logs({ stdout: true, stderr: true })).toString("utf8");
        return { code: StatusCode, logs };
      } finally {
        await c.remove({ force: true });
      }
    };
    expect(await oneShot(oneFile(backupCommand!), true)).toMatchObject({ code: 0 });

    // the data changes after the backup; the restore puts back what was backed up, nothing else
    expect((await runIn(app, "echo garbage > /data/f; rm /data/.hidden; echo new > /data/later", ["data:/data"])).outcome).toMatchObject({ ok: true });
    expect(await oneShot(oneFile(restoreCommand!), false)).toMatchObject({ code: 0, logs: "" });
    const after = await runIn(app, "cd /data && find . | sort && cat f .hidden sub/g", ["data:/data"]);
    expect(after.log).toEqual([".", "./.hidden", "./f", "./sub", "./sub/g", "precious", "dot", "deep"]);
  });

  it("a Docker volume of that name made by hand (not the app's) is refused, not adopted", async () => {
    const app = newApp("taken");
    await docker.createVolume({ Name: volumeName(app, "data") });
    const { outcome } = await deploy(app, "r1", runSpec("sleep 600", ["data:/data"]));
    expect(outcome).toMatchObject({ ok: false, error: expect.stringMatching(/volume deploybot\..*\.data exists but is not app .*'s volume 'data'/) });
  });

  describe("binds", () => {
    const policy = (): MountPolicy => ({ bindRoots: [root], protectedPaths: [stateDir] });

    it("a bind below an allowed root is mounted (resolved), read-only when asked", async () => {
      const app = newApp("bind");
      const ran = await runIn(app, "echo hi > /up/written; cat /cfg/settings; echo no > /cfg/x 2>/dev/null || echo read-only", [`${root}/uploads:/up`, `${root}/config:/cfg:ro`], policy());
      expect(ran.outcome).toMatchObject({ ok: true });
      expect(ran.log).toEqual(["from-the-host", "read-only"]);
      expect(await readFile(path.join(root, "uploads", "written"), "utf8")).toBe("hi\n");
    });

    it.each([
      ["no root is allowed (the default)", () => `${root}/uploads:/up`, { bindRoots: [], protectedPaths: [] }, /this host allows no bind mounts \(DEPLOYBOT_AGENT_BIND_ROOTS is empty/],
      ["a directory outside the roots", () => `${outside}:/x`, undefined, /is outside the directories this host allows \(DEPLOYBOT_AGENT_BIND_ROOTS=/],
      ["a symlink below the root that leads out of it", () => `${root}/escape:/x`, undefined, /escape \(it resolves to .*outside\) is outside the directories/],
      ["a symlink to /etc", () => `${root}/etc-link:/x`, undefined, /resolves to \/etc\) is outside/],
      ["a symlink to the Docker socket", () => `${root}/engine:/var/run/docker.sock`, undefined, /engine \(it resolves to .*docker\.sock\)/],
      ["the Docker socket itself", () => "/var/run/docker.sock:/var/run/docker.sock", undefined, /docker\.sock may not be mounted: it is a container engine's socket/],
      ["'..' out of the root", () => `${root}/../outside:/x`, undefined, /may not contain '\.' or '\.\.' segments/],
      ["the agent's own state directory", () => `${stateDir}:/x`, undefined, /may not be mounted: it is inside .*agent-state/],
      ["a path that does not exist", () => `${root}/nope:/x`, undefined, /does not exist on this host/],
    ])("refused before anything starts: %s", async (_what, bind, given, message) => {
      const app = newApp("refuse");
      const { outcome, ctx } = await deploy(app, "r1", runSpec("sleep 600", ["data:/data", bind()]), given ?? policy());
      expect(outcome).toMatchObject({ ok: false, error: expect.stringMatching(message) });
      if (!outcome.ok) expect(outcome.error).toMatch(/nothing was started/);
      expect(ctx.text()).not.toMatch(/pull|candidate|starting/i);
      expect(await containersWithLabels([`deploybot.app=${app}`])).toEqual([]);
      // the named volume of the same list was not created either
      expect(await volumeExists(volumeName(app, "data"))).toBe(false);
    });
  });

  it("stop_first: data that cannot be opened twice deploys only with it; its downtime is measured", async () => {
    const port = await freePort();
    const app = newApp("lock");
    // the app holds a lock directory in its volume while it runs: a second opener exits at once
    const locking = (stopFirst: boolean): RunSpec =>
      runSpec(
        "mkdir /data/lock || { echo 'the data is in use by another container' >&2; exit 1; }; mkdir -p /www && echo ok > /www/health; trap 'rmdir /data/lock; exit 0' TERM; busybox httpd -f -p 80 -h /www & wait",
        ["data:/data"],
        { ports: [`127.0.0.1:${port}:80`], healthcheck: { path: "/health", port: 80, timeout_seconds: 20, interval_seconds: 0.1 }, ...(stopFirst ? { stop_first: true } : {}) },
      );
    expect((await deploy(app, "r1", locking(true))).outcome).toMatchObject({ ok: true });

    // without stop_first the candidate starts next to the serving container and meets the lock
    const overlapping = await deploy(app, "r2", locking(false));
    expect(overlapping.outcome).toMatchObject({ ok: false, error: expect.stringMatching(/the data is in use by another container/) });
    expect((await httpGet(port, "/health"))?.status).toBe(200);

    // with it: stop, then start; requests fail in between
    const gaps: number[] = [];
    for (const release of ["r3", "r4"]) {
      let polling = true;
      let firstFail: number | null = null;
      let lastFail: number | null = null;
      const poller = (async () => {
        while (polling) {
          const answer = await httpGet(port, "/health");
          if (answer?.status !== 200) {
            firstFail ??= Date.now();
            lastFail = Date.now();
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const { outcome, ctx } = await deploy(app, release, locking(true));
      polling = false;
      await poller;
      expect(outcome).toMatchObject({ ok: true });
      expect(ctx.text()).toMatch(/stop_first/);
      expect(ctx.text()).not.toMatch(/candidate healthy/);
      gaps.push(firstFail !== null && lastFail !== null ? lastFail - firstFail : 0);
    }
    console.log(`stop_first downtime per deploy (ms, first to last failed request, 20 ms polling): ${gaps.join(", ")}`);
    expect((await httpGet(port, "/health"))?.status).toBe(200);
  });

  it("stop_first without published ports (the rolling path): the old container stops first; a failing release brings it back", async () => {
    const app = newApp("lockw");
    const worker = (stopFirst: boolean, extra = ""): RunSpec =>
      runSpec(`mkdir /data/lock || { echo 'the data is in use by another container' >&2; exit 1; }; trap 'rmdir /data/lock; exit 0' TERM; ${extra} sleep 600 & wait`, ["data:/data"], stopFirst ? { stop_first: true } : {});
    expect((await deploy(app, "r1", worker(true))).outcome).toMatchObject({ ok: true });
    expect((await deploy(app, "r2", worker(false))).outcome).toMatchObject({ ok: false, error: expect.stringMatching(/in use by another container/) });
    const second = await deploy(app, "r3", worker(true));
    expect(second.outcome).toMatchObject({ ok: true });
    expect(second.ctx.text()).toMatch(/stop_first: stopping/);
    // a release that dies at start: removed, and the stopped one serves again
    const broken = await deploy(app, "r4", worker(true, "rmdir /data/lock; exit 3;"));
    expect(broken.outcome).toMatchObject({ ok: false });
    const running = (await containersWithLabels([`deploybot.app=${app}`])).filter((c) => c.State === "running");
    expect(running.map((c) => c.Labels["deploybot.release"])).toEqual(["r3"]);
  });
});
