import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { lockStateDir, StateDirLocked } from "../src/stateLock";

const agentDir = resolve(import.meta.dirname, "..");
const stateDir = mkdtempSync(join(tmpdir(), "deploybot-lock-"));
const started: ChildProcess[] = [];

/** The real agent entry point; the controller URL answers nothing, so it keeps trying to register. */
function agent(): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  let out = "";
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: agentDir,
    env: {
      PATH: process.env.PATH ?? "",
      DEPLOYBOT_URL: "http://127.0.0.1:9",
      DEPLOYBOT_JOIN_TOKEN: "lock-test",
      DEPLOYBOT_HOSTNAME: "lock-test",
      DEPLOYBOT_STATE_DIR: stateDir,
      DEPLOYBOT_SHIP_APP_LOGS: "false",
      DEPLOYBOT_PROXY: "off",
      DOCKER_HOST: "unix:///nonexistent.sock",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (c: Buffer) => (out += c));
  child.stderr?.on("data", (c: Buffer) => (out += c));
  started.push(child);
  return { child, output: () => out, exited: new Promise((r) => child.once("exit", (code) => r(code))) };
}

const lockFile = join(stateDir, "agent.lock");
async function lockHeldBy(pid: number | undefined): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (existsSync(lockFile) && readFileSync(lockFile, "utf8").includes(`"pid":${pid},`)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the lock never named pid ${pid}`);
}

afterAll(() => {
  for (const c of started) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(stateDir, { recursive: true, force: true });
});

describe("one agent per state dir", () => {
  it("a second agent on the same state dir exits 1 naming the first; after kill -9 of the first, a new one takes over", { timeout: 120_000 }, async () => {
    const first = agent();
    await lockHeldBy(first.child.pid);
    const second = agent();
    expect(await second.exited).toBe(1);
    expect(second.output()).toContain(`another agent (pid ${first.child.pid}) is running on the state dir ${stateDir}`);

    first.child.kill("SIGKILL");
    await first.exited;
    const third = agent();
    await lockHeldBy(third.child.pid);
    // signal handlers are in place once it is trying to register
    for (let i = 0; i < 600 && !third.output().includes("retrying"); i++) await new Promise((r) => setTimeout(r, 100));
    third.child.kill("SIGTERM");
    await third.exited;
    expect(existsSync(lockFile)).toBe(false);
  });

  it("a lock naming a live pid that is not the holder any more (reused after a reboot) is taken over", () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-lock-"));
    try {
      // pid 1 is alive, but it did not start at this time
      writeFileSync(join(dir, "agent.lock"), JSON.stringify({ pid: 1, boot: "another-boot", started: "1" }));
      lockStateDir(dir);
      expect(JSON.parse(readFileSync(join(dir, "agent.lock"), "utf8")).pid).toBe(process.pid);
      expect(() => lockStateDir(dir)).not.toThrow(StateDirLocked);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
