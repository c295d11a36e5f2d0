import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeDocker, uniqueName } from "../../../test/support/docker";
import { failures, startLoad } from "../../../test/support/load";
import { eventually, type ProxyWorld, proxyWorld, viaProxy } from "./proxyFixture";

const unitFile = path.resolve(import.meta.dirname, "../../../scripts/systemd/deploybot-proxy.service");
const pathUnitFile = path.resolve(import.meta.dirname, "../../../scripts/systemd/deploybot-proxy.path");

/** `Key=value` lines of a unit file (the last one wins, as systemd reads them). */
function unitSettings(file: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m?.[1] && m[2] !== undefined) settings.set(m[1], m[2]);
  }
  return settings;
}

/**
 * Stands in for systemd (there is none on CI machines): runs deploybot-proxy.service's own
 * command lines, with the state dir and runtime dir moved under the test's directories.
 * What is emulated: the .path unit's trigger (start once PathExists holds, and at "boot"),
 * ConditionPathExists, ExecStartPre, ExecStart in the foreground (-Ws without NOTIFY_SOCKET),
 * Restart=always after RestartSec, and the end of the cgroup (the whole process group goes) when
 * the main process ends. Not tested here: systemd itself, the capability, the user, the hardening.
 */
class ProxyUnitRunner {
  private child: ChildProcess | null = null;
  private stopped = false;
  private loop: Promise<void>;
  starts = 0;

  constructor(
    private readonly stateDir: string,
    private readonly runtimeDir: string,
  ) {
    this.loop = this.run();
  }

  private map(text: string): string {
    return text.replaceAll("/var/lib/deploybot-agent", this.stateDir).replaceAll("/run/deploybot-proxy", this.runtimeDir);
  }

  private async run(): Promise<void> {
    const unit = unitSettings(unitFile);
    const trigger = this.map(unitSettings(pathUnitFile).get("PathExists") ?? "");
    const condition = this.map(unit.get("ConditionPathExists") ?? "");
    const restartMs = Number(unit.get("RestartSec") ?? "0.1") * 1000;
    expect(unit.get("Restart")).toBe("always");
    const argv = (key: string) => this.map(unit.get(key) ?? "").split(" ");
    while (!this.stopped) {
      if (!existsSync(trigger) || !existsSync(condition)) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const [preBin = "", ...preArgs] = argv("ExecStartPre");
      const pre = await promisify(execFile)(preBin, preArgs).then(
        () => true,
        () => false,
      );
      if (pre && !this.stopped) {
        const [bin = "", ...args] = argv("ExecStart");
        this.starts++;
        const child: ChildProcess = spawn(bin, args, { stdio: "ignore", detached: true });
        this.child = child;
        await new Promise((resolve) => child.once("exit", resolve));
        this.child = null;
        // systemd ends whatever is left in the unit's cgroup (KillMode=mixed: SIGKILL after the main process)
        if (child.pid) {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch {}
        }
      }
      await new Promise((r) => setTimeout(r, restartMs));
    }
  }

  /** What `systemctl restart` or a crash does to the main process. */
  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  get running(): boolean {
    return this.child !== null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const child = this.child;
    if (child?.pid) {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r)).catch(() => undefined);
    }
    await this.loop;
  }
}

describeDocker("the host proxy under its own unit (DEPLOYBOT_PROXY=external, the unit's command lines)", () => {
  let world: ProxyWorld;
  let runtimeDir: string;
  let unit: ProxyUnitRunner;
  const app = uniqueName("unit");
  const domain = `${app}.deploybot.test`;

  beforeAll(async () => {
    world = await proxyWorld({ supervision: "external" });
    runtimeDir = mkdtempSync(path.join(os.tmpdir(), "deploybot-proxy-run-"));
    // enabled at install time, before the agent has written anything
    unit = new ProxyUnitRunner(world.stateDir, runtimeDir);
  });
  afterAll(async () => {
    await unit?.stop();
    await world?.cleanup();
    if (runtimeDir) rmSync(runtimeDir, { recursive: true, force: true });
  });

  it("starts once the agent writes its first config and serves the first deploy", async () => {
    expect(unit.running).toBe(false);
    expect(await world.deploy(app, "u1", { domains: [domain] })).toMatchObject({ ok: true });
    expect(unit.starts).toBe(1);
    expect(await viaProxy(world.httpPort, domain)).toEqual({ status: 200, body: "u1" });
  });

  it("a restart of the agent under load: the proxy keeps serving, the new agent converges and deploys", async () => {
    const load = startLoad({ port: world.httpPort, host: domain, ratePerSecond: 50 });
    await world.restartAgent().converge();
    expect(await world.deploy(app, "u2", { domains: [domain] })).toMatchObject({ ok: true });
    const samples = await load.stop();
    expect(failures(samples)).toEqual([]);
    expect(samples.some((s) => s.body === "u2")).toBe(true);
    expect(unit.starts).toBe(1); // the same HAProxy all along: reloads, never a restart
  });

  it("a restart and a crash of the proxy: back with every route, from the files alone", async () => {
    unit.signal("SIGTERM"); // systemctl restart deploybot-proxy
    await eventually("proxy back after a restart", async () => unit.starts === 2 && (await viaProxy(world.httpPort, domain))?.body === "u2");
    unit.signal("SIGKILL"); // a crash: Restart=always
    await eventually("proxy back after a crash", async () => unit.starts === 3 && (await viaProxy(world.httpPort, domain))?.body === "u2");
    // the agent still drives it (runtime API and master CLI on the same sockets)
    expect(await world.deploy(app, "u3", { domains: [domain] })).toMatchObject({ ok: true });
    expect(await viaProxy(world.httpPort, domain)).toEqual({ status: 200, body: "u3" });
  });

  it("a reboot: the path unit starts the proxy from the last config and the agent's start converges", async () => {
    await unit.stop();
    expect(await viaProxy(world.httpPort, domain)).toBeNull();
    unit = new ProxyUnitRunner(world.stateDir, runtimeDir);
    await world.restartAgent().converge();
    expect(await viaProxy(world.httpPort, domain)).toEqual({ status: 200, body: "u3" });
  });
});
