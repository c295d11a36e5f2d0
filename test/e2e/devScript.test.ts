import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, uniqueName } from "../support/docker";
import { agentSettingNames } from "../../apps/agent/src/config";
import { controllerSettingNames } from "../../apps/controller/src/config";
import { waitFor } from "../harness/processes";

const repoRoot = resolve(import.meta.dirname, "../..");
const started: ChildProcess[] = [];
const dirs: string[] = [];

interface Proc {
  pid: number;
  ppid: number;
  pgrp: number;
  state: string;
}

/** Every process on the machine, from /proc (state, parent, process group). */
function processes(): Proc[] {
  return readdirSync("/proc").flatMap((name) => {
    if (!/^\d+$/.test(name)) return [];
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return [{ pid: Number(name), ppid: Number(ppid), pgrp: Number(pgrp), state: state ?? "?" }];
    } catch {
      return []; // gone meanwhile
    }
  });
}

/** The process groups of everything dev.sh started (its descendants), other than the test's own. */
function groupsUnder(pid: number): Set<number> {
  const all = processes();
  const mine = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (mine.has(p.ppid) && !mine.has(p.pid)) {
        mine.add(p.pid);
        grew = true;
      }
    }
  }
  const own = all.find((p) => p.pid === process.pid)?.pgrp;
  return new Set(all.filter((p) => mine.has(p.pid) && p.pid !== pid && p.pgrp !== own).map((p) => p.pgrp));
}

const portOpen = (port: number) =>
  new Promise<boolean>((r) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      r(true);
    });
    s.once("error", () => r(false));
  });

function devScript(port: number) {
  const dir = mkdtempSync(join(tmpdir(), "deploybot-devsh-"));
  dirs.push(dir);
  let out = "";
  let err = "";
  const child = spawn("bash", ["scripts/dev.sh"], {
    cwd: repoRoot,
    // two of the controller's own settings (the README's TLS ones) ride along, as a user sets them
    env: { ...process.env, DEPLOYBOT_ACME_CA: "https://127.0.0.1:1/dir", DEPLOYBOT_ACME_EMAIL: "ops@dev.test", DEPLOYBOT_DEV_DIR: dir, DEPLOYBOT_PORT: String(port), DEPLOYBOT_HOSTNAME: uniqueName("dev"), DEPLOYBOT_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (c: Buffer) => (out += c));
  child.stderr?.on("data", (c: Buffer) => (err += c));
  started.push(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
  return { child, dir, out: () => out, err: () => err, exited };
}

afterAll(() => {
  // a failed stop leaves the group (controller, agent) behind its script: end the group too
  for (const c of started) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    for (const g of groupsUnder(c.pid!)) {
      try {
        process.kill(-g, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
    c.kill("SIGKILL");
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("scripts/dev.sh, the README's front door", () => {
  it("keeps every setting of the controller's that the agent does not read from the agent", () => {
    const script = readFileSync(join(repoRoot, "scripts/dev.sh"), "utf8");
    const unset = new Set((/^\s*unset (DEPLOYBOT_DEV_DIR(?:[^\n]*\\\n)*[^\n]*)/m.exec(script)?.[1] ?? "").split(/[\s\\]+/).filter(Boolean));
    const controllerOnly = controllerSettingNames.filter((n) => !agentSettingNames.includes(n) && !n.startsWith("DEPLOYBOT_TEST_"));
    expect(controllerOnly.filter((n) => !unset.has(n))).toEqual([]);
    expect([...unset].filter((n) => agentSettingNames.includes(n))).toEqual([]);
  });

  // `pgrep -f dev.sh` lists two processes: the script and its group's leader (a subshell); a
  // SIGTERM to either stops everything
  it.each(["the script", "its group's leader"])("SIGTERM to %s stops the controller and the agent: no process of its group is left and the port is closed", async (target) => {
    const port = await freePort();
    const dev = devScript(port);
    await waitFor("the start banner", async () => (dev.out().includes("deploybot controller:") ? true : undefined), 170_000, 500);
    expect(await portOpen(port)).toBe(true);
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(200);
    // the agent starts once the controller listens (a Docker engine answers in this suite)
    await waitFor("the agent's state dir lock", async () => (existsSync(join(dev.dir, "agent", "agent.lock")) ? true : undefined), 120_000, 250);
    const groups = groupsUnder(dev.child.pid!);
    const members = processes().filter((p) => groups.has(p.pgrp));
    // the group leader (a subshell), the controller and the agent
    expect(members.length).toBeGreaterThanOrEqual(3);

    const leader = members.find((p) => p.pid === p.pgrp);
    if (target === "the script") dev.child.kill("SIGTERM");
    else process.kill(leader!.pid, "SIGTERM");
    // the stop takes seconds (the agent drains, the controller closes); a hang fails here, not at the test's timeout
    const { code } = await Promise.race([dev.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`dev.sh still running 60 s after SIGTERM to ${target}`)), 60_000))]);
    expect(code).toBe(143);
    const left = processes().filter((p) => groups.has(p.pgrp) || members.some((m) => m.pid === p.pid));
    expect(left).toEqual([]);
    expect(await portOpen(port)).toBe(false);
    // the script's own settings (DEPLOYBOT_DEV_DIR) do not reach the agent as unknown ones
    // nor do the controller's (the agent would call each "misspelt?")
    for (const name of ["DEPLOYBOT_DEV_DIR", "DEPLOYBOT_ACME_CA", "DEPLOYBOT_ACME_EMAIL"]) expect(dev.out() + dev.err()).not.toContain(`"name":"${name}","msg":"unknown DEPLOYBOT_* setting`);
    const lock = join(dev.dir, "agent", "agent.lock");
    if (dev.err().includes("killing the rest")) {
      // On a starved machine a straggler can outlive dev.sh's 15 s grace and gets SIGKILL: its
      // lock stays behind, but names a process that is gone, which the next start takes over.
      if (existsSync(lock)) expect(processes().some((p) => p.pid === (JSON.parse(readFileSync(lock, "utf8")) as { pid: number }).pid)).toBe(false);
    } else {
      // a clean stop: the agent released its state dir
      expect(existsSync(lock)).toBe(false);
    }
  });

  it("a start on a taken port says so and exits 1, without the banner, though the port's server answers /healthz", async () => {
    const port = await freePort();
    const other = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}'));
    await new Promise<void>((r) => other.listen(port, "0.0.0.0", () => r()));
    try {
      const dev = devScript(port);
      const { code } = await dev.exited;
      expect(code).toBe(1);
      expect(dev.out()).not.toContain("deploybot controller:");
      expect(dev.err()).toContain(`port ${port} is already in use`);
      expect(groupsUnder(dev.child.pid!).size).toBe(0);
    } finally {
      await new Promise((r) => other.close(r));
    }
  });
});
