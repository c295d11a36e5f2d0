import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSpec } from "@deploybot/protocol";
import Dockerode from "dockerode";
import pino from "pino";
import { afterAll, afterEach, expect, it } from "vitest";
import { BASE_IMAGE, containersWithLabels, describeDocker, removeAppContainers, uniqueName } from "../../../test/support/docker";
import { managedLabels, scopeToHost } from "../src/docker/managedContainers";
import { AppEventQueue } from "../src/reconcile/appEvents";
import { DesiredStore } from "../src/reconcile/desiredStore";
import { Reconciler } from "../src/reconcile/reconciler";
import { AgentState } from "../src/state";

const docker = new Dockerode();
const logger = pino({ level: "silent" });
const run = runSpec.parse({ command: ["sleep", "3600"] });
// an agent of its own on the shared engine: reconcile sees (and may remove) only its containers
scopeToHost(uniqueName("race-host"));

/**
 * A reconcile pass and a job of the same app, interleaved on a real engine. The agent runs its
 * pass on a timer while jobs arrive in heartbeats, so a job can begin after a pass listed the
 * engine, or while the pass acts on the job's app.
 */
describeDocker("reconcile and a job of one app never act on it at once (real engine)", () => {
  const dirs: string[] = [];
  const apps: string[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await removeAppContainers(app);
  });
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const world = (engine: Dockerode) => {
    const app = uniqueName("race");
    apps.push(app);
    const dir = mkdtempSync(join(tmpdir(), "deploybot-race-"));
    dirs.push(dir);
    const state = new AgentState(dir);
    const store = new DesiredStore(state);
    const events = new AppEventQueue(state, logger);
    const busy = { app: null as string | null, jobId: null as string | null, started: 0 };
    const reconciler = new Reconciler({ docker: engine, store, events, state, logger, busy: () => ({ ...busy }), intervalMs: 60_000 });
    /** what a deploy job does: the new release's container in, the old one out, the desired state moved */
    const start = async (job: string, release: string) => {
      const c = await docker.createContainer({ Image: BASE_IMAGE, Cmd: run.command, Labels: managedLabels(app, job, release) });
      await c.start();
      return c.id;
    };
    const serving = async () =>
      (await containersWithLabels([`deploybot.app=${app}`])).map((c) => ({ job: c.Labels["deploybot.job"], release: c.Labels["deploybot.release"], state: c.State }));
    return { app, store, events, busy, reconciler, start, serving };
  };

  it("a deploy that begins and ends after a pass listed the engine: the pass re-lists, creates no second container and keeps the deploy's", async () => {
    let deployDuringPass: (() => Promise<void>) | null = null;
    // the engine as the pass sees it: the deploy runs right after the pass's first listing
    const engine = Object.create(docker) as Dockerode;
    engine.listContainers = (async (options: Dockerode.ContainerListOptions) => {
      const listed = await docker.listContainers(options);
      const deploy = deployDuringPass;
      deployDuringPass = null;
      await deploy?.();
      return listed;
    }) as Dockerode["listContainers"];
    const w = world(engine);
    const old = await w.start("job_1", "r1");
    w.store.setLocal(w.app, "job_1", { release: "r1", image: BASE_IMAGE, run });
    deployDuringPass = async () => {
      w.busy.started++;
      w.busy.app = w.app;
      w.busy.jobId = "job_2";
      await w.start("job_2", "r2");
      await docker.getContainer(old).remove({ force: true });
      w.store.setLocal(w.app, "job_2", { release: "r2", image: BASE_IMAGE, run });
      w.busy.app = null;
      w.busy.jobId = null;
    };

    await w.reconciler.pass();

    expect(deployDuringPass).toBeNull(); // the deploy did run inside the pass
    expect(await w.serving()).toEqual([{ job: "job_2", release: "r2", state: "running" }]);
    expect(w.events.unsent().map((e) => `${e.kind}: ${e.reason}`)).toEqual([]);
  });

  it("a job of the app waits while the pass acts on it, until it is cancelled; a job of another app does not", async () => {
    let entered!: () => void;
    const acting = new Promise<void>((resolve) => (entered = resolve));
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    // the pass stops the app's container (desired: stopped); that stop is held until we let go
    const engine = Object.create(docker) as Dockerode;
    engine.getContainer = ((id: string) => {
      const c = docker.getContainer(id);
      const stop = c.stop.bind(c);
      return Object.assign(Object.create(c), {
        stop: async (opts: { t: number }) => {
          entered();
          await held;
          return stop({ ...opts, t: 0 });
        },
      });
    }) as Dockerode["getContainer"];
    const w = world(engine);
    await w.start("job_1", "r1");
    w.store.setLocal(w.app, "job_1", { release: "r1", image: BASE_IMAGE, run, state: "stopped" });

    const pass = w.reconciler.pass();
    await acting;
    let sameApp = false;
    const waiting = w.reconciler.settled(w.app).then(() => (sameApp = true));
    await w.reconciler.settled("another-app");
    // a job cancelled while it waits stops waiting
    const cancel = new AbortController();
    const cancelled = w.reconciler.settled(w.app, cancel.signal);
    cancel.abort();
    await cancelled;
    await new Promise((r) => setTimeout(r, 100));
    expect(sameApp).toBe(false);
    letGo();
    await pass;
    await waiting;
    expect(sameApp).toBe(true);
    expect(await w.serving()).toEqual([{ job: "job_1", release: "r1", state: "exited" }]);
  });
});
