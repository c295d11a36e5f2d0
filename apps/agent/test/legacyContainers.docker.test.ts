import { afterAll, beforeAll, expect, it } from "vitest";
import Dockerode from "dockerode";
import { describeDocker, freePort, httpGet, removeAppContainers, testAppFiles, uniqueName } from "../../../test/support/docker";
import { LABELS, listAppContainers, listManagedContainers } from "../src/docker/managedContainers";
import { executeJob, scopeToHost } from "../src/executors";
import { makeContext, makeJob } from "./jobFixture";

const docker = new Dockerode();

/**
 * An agent upgraded in place from a version before the `deploybot.host` label: the containers
 * that version started carry every deploybot label but that one. Such a container is made here
 * the way the old agent made it (an unscoped deploy), then the upgraded, host-scoped agent must
 * see it and replace it on the same host port.
 */
describeDocker("containers started before the host label (upgrade in place)", () => {
  const app = uniqueName("legacy");
  const stranger = uniqueName("legacy-other");
  const host = uniqueName("host");
  let port: number;
  let otherPort: number;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    port = await freePort();
    otherPort = await freePort();
  });
  afterAll(async () => {
    scopeToHost(null);
    await removeAppContainers(app);
    await removeAppContainers(stranger);
    for (const c of cleanups) await c();
  });

  const deploy = async (appName: string, version: string, hostPort: number) => {
    const ctx = await makeContext(docker);
    cleanups.push(ctx.cleanup);
    const job = makeJob({
      kind: "deploy",
      app: appName,
      version,
      source: { type: "files", files: testAppFiles(version, { salt: appName }) },
      run: {
        ports: [`127.0.0.1:${hostPort}:80`],
        env: {},
        secrets: [],
        restart: "unless-stopped",
        healthcheck: { path: "/health", port: 80, timeout_seconds: 30, interval_seconds: 0.2 },
      },
    });
    return { outcome: await executeJob(job, ctx), ctx };
  };

  it("an upgraded agent sees the old containers of its apps and replaces them on the same port", async () => {
    // the previous version: no scope, so no host label
    scopeToHost(null);
    expect((await deploy(app, "v1", port)).outcome).toMatchObject({ ok: true });
    expect((await deploy(stranger, "v1", otherPort)).outcome).toMatchObject({ ok: true });
    const [old] = await listAppContainers(docker, app);
    expect(old).toBeDefined();
    expect((await docker.getContainer(old!.id).inspect()).Config.Labels[LABELS.host]).toBeUndefined();

    // What the agent did before this fix: scoped to its host name, the old container is invisible.
    scopeToHost(host);
    expect(await listAppContainers(docker, app)).toEqual([]);

    // The daemon's rule: unlabelled containers of this host's apps are its own; others' are not.
    scopeToHost(host, (labels) => labels[LABELS.app] === app);
    expect((await listAppContainers(docker, app)).map((c) => c.id)).toEqual([old!.id]);
    const seen = (await listManagedContainers(docker)).map((c) => c.app);
    expect(seen).toContain(app);
    expect(seen).not.toContain(stranger);

    const { outcome, ctx } = await deploy(app, "v2", port);
    expect(outcome, ctx.text()).toMatchObject({ ok: true });
    expect(await httpGet(port, "/")).toEqual({ status: 200, body: "v2\n" });
    const now = await listAppContainers(docker, app);
    expect(now).toHaveLength(1);
    expect(now[0]!.id).not.toBe(old!.id);
    expect((await docker.getContainer(now[0]!.id).inspect()).Config.Labels[LABELS.host]).toBe(host);
    // the other agent's unlabelled container was left alone
    expect(await httpGet(otherPort, "/")).toEqual({ status: 200, body: "v1\n" });
  });
});
