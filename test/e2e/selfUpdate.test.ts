import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ADMIN, JOIN, startTestController } from "../../apps/controller/test/server";
import { buildAgentDist } from "../../scripts/build-agent.mjs";
import { waitFor } from "../harness/processes";
import { describeDocker, uniqueName } from "../support/docker";

/**
 * Self-update end to end: bundled agents (as installed: releases/VERSION behind the `current`
 * link) under a supervisor that restarts them on exit like systemd's Restart=always, and a
 * controller whose agent distribution is newer. Jobs are `stop` jobs of an app with no
 * containers: real jobs through the real engine, done in a moment.
 */
describeDocker("agent self-update (bundled agents, real controller)", () => {
  const OLD = "0.0.1";
  let oldDist: string;
  let newDist: string;
  let newVersion: string;
  const stops: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    oldDist = mkdtempSync(join(tmpdir(), "deploybot-dist-old-"));
    newDist = mkdtempSync(join(tmpdir(), "deploybot-dist-new-"));
    await buildAgentDist({ outDir: oldDist, version: OLD });
    newVersion = (await buildAgentDist({ outDir: newDist })).version;
  }, 120_000);
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  /** The installed layout with the old agent, run under a restart-on-exit supervisor. */
  function supervisedAgent(url: string, hostname: string) {
    const state = mkdtempSync(join(tmpdir(), `deploybot-selfupdate-${hostname}-`));
    mkdirSync(join(state, "releases", OLD), { recursive: true });
    copyFileSync(join(oldDist, "deploybot-agent.mjs"), join(state, "releases", OLD, "deploybot-agent.mjs"));
    symlinkSync(join("releases", OLD), join(state, "current"));
    const exits: { code: number | null; at: number }[] = [];
    let child: ChildProcess | null = null;
    let stopped = false;
    const start = () => {
      child = spawn(process.execPath, [join(state, "current/deploybot-agent.mjs")], {
        cwd: state,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: state,
          DEPLOYBOT_URL: url,
          DEPLOYBOT_JOIN_TOKEN: JOIN,
          DEPLOYBOT_HOSTNAME: hostname,
          DEPLOYBOT_STATE_DIR: state,
          DEPLOYBOT_POLL_WAIT_SECONDS: "1",
          DEPLOYBOT_PROXY: "off",
          DEPLOYBOT_UPDATE_TRIAL_SECONDS: "30",
          ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}),
        },
        stdio: "ignore",
      });
      child.on("exit", (code) => {
        exits.push({ code, at: Date.now() });
        if (!stopped) setTimeout(start, 200); // Restart=always
      });
    };
    start();
    const stop = async () => {
      stopped = true;
      const c = child;
      if (c && c.exitCode === null) {
        const gone = new Promise((r) => c.once("exit", r));
        c.kill("SIGTERM");
        await gone;
      }
    };
    stops.push(stop);
    return { state, exits, stop };
  }

  const hostOf = async (ctl: Awaited<ReturnType<typeof startTestController>>, hostname: string) =>
    (await ctl.call("GET", "/v1/hosts", ADMIN)).body.hosts.find((h: { hostname: string }) => h.hostname === hostname);
  const queueStop = async (ctl: Awaited<ReturnType<typeof startTestController>>, host: string) => {
    const res = await ctl.call("POST", "/v1/jobs", ADMIN, { spec: { kind: "stop", app: uniqueName("nothing") }, target: { host } });
    expect(res.status).toBe(201);
    return res.body.job.id as string;
  };
  const jobDone = (ctl: Awaited<ReturnType<typeof startTestController>>, id: string) =>
    waitFor(`job ${id}`, async () => {
      const job = (await ctl.call("GET", `/v1/jobs/${id}`, ADMIN)).body.job;
      return ["succeeded", "failed", "cancelled", "lost", "timed_out"].includes(job.status) ? job : undefined;
    });

  it("an agent on an older version finishes its job, then updates itself, restarts on the new version and runs the next job", async () => {
    const ctl = await startTestController(undefined, { DEPLOYBOT_AGENT_DIST: newDist, DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "1" });
    stops.push(() => ctl.stop());
    const host = uniqueName("upd");
    const first = await queueStop(ctl, host); // waiting before the agent even starts: its first heartbeat takes it
    const agent = supervisedAgent(ctl.url, host);

    const job1 = await jobDone(ctl, first);
    expect(job1.status).toBe("succeeded");
    const updated = await waitFor("the agent to come back on the new version", async () => {
      // (the trial run registers with the new version too: wait for the restart as well)
      const h = await hostOf(ctl, host);
      return h?.version === newVersion && h.online && agent.exits.length > 0 ? h : undefined;
    });
    expect(updated.version).toBe(newVersion);
    // one exit, with the restart code, after the job had ended: never mid-job
    expect(agent.exits.map((e) => e.code)).toEqual([75]);
    expect(agent.exits[0]!.at).toBeGreaterThanOrEqual(Date.parse(job1.finishedAt));
    expect(readlinkSync(join(agent.state, "current"))).toBe(join("releases", newVersion));
    const bundle = readFileSync(join(agent.state, "releases", newVersion, "deploybot-agent.mjs"));
    expect(createHash("sha256").update(bundle).digest("hex")).toBe(JSON.parse(readFileSync(join(newDist, "manifest.json"), "utf8")).files["deploybot-agent.mjs"].sha256);

    const job2 = await jobDone(ctl, await queueStop(ctl, host));
    expect(job2.status).toBe("succeeded");
    expect(agent.exits).toHaveLength(1); // the new version is not offered itself again
  }, 240_000);

  it("an update whose new version cannot register is refused: the agent stays on its version and keeps working", async () => {
    // A distribution whose agent exits at once (its manifest sha256 is right: only the trial can tell)
    const broken = mkdtempSync(join(tmpdir(), "deploybot-dist-broken-"));
    const code = 'console.error("broken build"); process.exit(3);\n';
    writeFileSync(join(broken, "deploybot-agent.mjs"), code);
    const sha256 = createHash("sha256").update(code).digest("hex");
    writeFileSync(join(broken, "manifest.json"), JSON.stringify({ version: "9.9.9", node: ">=20.19", files: { "deploybot-agent.mjs": { sha256, size: code.length } } }));
    const ctl = await startTestController(undefined, { DEPLOYBOT_AGENT_DIST: broken, DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "1" });
    stops.push(() => ctl.stop());
    const host = uniqueName("nope");
    const agent = supervisedAgent(ctl.url, host);

    const failed = await waitFor("the update to be refused", async () => {
      const file = join(agent.state, "update-failed.json");
      return existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : undefined;
    });
    expect(failed).toMatchObject({ version: "9.9.9", reason: "trial run exited 3 before registering" });
    expect(readlinkSync(join(agent.state, "current"))).toBe(join("releases", OLD));
    expect(agent.exits).toEqual([]); // never restarted
    const job = await jobDone(ctl, await queueStop(ctl, host));
    expect(job.status).toBe("succeeded");
    expect((await hostOf(ctl, host)).version).toBe(OLD);
    expect(agent.exits).toEqual([]);
  }, 240_000);
});
