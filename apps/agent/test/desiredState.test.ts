import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { DesiredStore } from "../src/reconcile/desiredStore";
import { exitReason, restartDelayMs, restartsAfter } from "../src/reconcile/policy";
import { AgentState } from "../src/state";

const stateDir = () => new AgentState(mkdtempSync(join(tmpdir(), "deploybot-desired-")));

describe("restart policy", () => {
  test("backoff: 10 s doubling to at most 5 min", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 12].map((n) => restartDelayMs(n) / 1000)).toEqual([10, 20, 40, 80, 160, 300, 300, 300]);
  });

  test("run.restart says which exits reconcile restarts", () => {
    expect(restartsAfter("no", 1)).toBe(false);
    expect(restartsAfter("on-failure", 0)).toBe(false);
    expect(restartsAfter("on-failure", 2)).toBe(true);
    expect(restartsAfter("unless-stopped", 0)).toBe(true);
    expect(restartsAfter(undefined, 137)).toBe(true);
  });

  test("exit reasons name kills and the OOM killer", () => {
    expect(exitReason({ ExitCode: 137 })).toMatch(/killed.*137/);
    expect(exitReason({ ExitCode: 137, OOMKilled: true })).toMatch(/OOM/);
    expect(exitReason({ ExitCode: 3 })).toBe("exited with code 3");
  });
});

describe("desired state cache", () => {
  const remote = (version: number, jobId: string, release: string) => ({
    version,
    apps: [{ app: "web", release, image: `img:${release}`, run: null, route: null, replicas: 1, state: "running" as const, jobId }],
  });

  test("survives a restart of the agent (read back from the state dir)", () => {
    const state = stateDir();
    const store = new DesiredStore(state);
    expect(store.known).toBe(false);
    store.applyRemote(remote(3, "job-1", "r1"));
    const again = new DesiredStore(state);
    expect(again.version).toBe(3);
    expect(again.get("web")).toMatchObject({ release: "r1", jobId: "job-1" });
    expect(again.known).toBe(true);
  });

  test("a job's own change wins over an older controller view until the controller names that job", () => {
    const store = new DesiredStore(stateDir());
    store.applyRemote(remote(3, "job-1", "r1"));
    store.setLocal("web", "job-2", { release: "r2", image: "img:r2" });
    // the controller's version moved for another reason; its entry for web is still job-1's
    store.applyRemote(remote(4, "job-1", "r1"));
    expect(store.get("web")).toMatchObject({ release: "r2", jobId: "job-2" });
    expect(store.version).toBe(4);
    store.applyRemote(remote(5, "job-2", "r2"));
    store.applyRemote(remote(6, "job-3", "r3"));
    expect(store.get("web")).toMatchObject({ release: "r3" });
  });
});
