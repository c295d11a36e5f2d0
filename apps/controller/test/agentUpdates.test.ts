import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { olderVersion } from "../src/services/agentUpdates";
import { ADMIN, type Harness, JOIN, makeHarness } from "./fixture";

const SHA = "a".repeat(64);
function distWith(version: string) {
  const dir = mkdtempSync(join(tmpdir(), "deploybot-dist-"));
  writeFileSync(join(dir, "manifest.json"), JSON.stringify({ version, node: ">=20.19", files: { "deploybot-agent.mjs": { sha256: SHA, size: 1 } } }));
  return dir;
}

async function agent(h: Harness, hostname: string, version: string, autoUpdate = true, token = JOIN) {
  const res = await h.call("POST", "/v1/agents/register", { token, body: { hostname, version, labels: [], capabilities: { autoUpdate } } });
  const body = await res.json();
  return { id: body.agent.id as string, token: body.token as string };
}
const beat = async (h: Harness, a: { id: string; token: string }, status = "idle") => (await h.heartbeat(a, { status })).json();

describe("agent updates offered in heartbeat answers", () => {
  test("an agent that opted out is never offered an update, even with free slots", async () => {
    const h = await makeHarness({ agentDist: distWith("0.2.0"), agentUpdateConcurrency: 5 });
    const out = await agent(h, "c-1", "0.1.0", false);
    expect((await beat(h, out)).update).toBeUndefined();
    const hosts = (await (await h.call("GET", "/v1/hosts", { token: ADMIN })).json()).hosts as Array<{ capabilities: Record<string, unknown> }>;
    expect(hosts[0]?.capabilities.autoUpdate).toBe(false);
  });

  test("an idle older agent is offered the distribution's version; at most K at once; opted-out, busy and current agents are not", async () => {
    const h = await makeHarness({ agentDist: distWith("0.2.0"), agentUpdateConcurrency: 1 });
    const a = await agent(h, "a-1", "0.1.0");
    const b = await agent(h, "b-1", "0.1.0");
    const out = await agent(h, "c-1", "0.1.0", false);
    const current = await agent(h, "d-1", "0.2.0");

    expect((await beat(h, a, "busy")).update).toBeUndefined();
    expect((await beat(h, a)).update).toEqual({ version: "0.2.0", sha256: SHA, path: "/v1/agents/bundle" });
    expect((await beat(h, a)).update).toMatchObject({ version: "0.2.0" }); // still its slot
    expect((await beat(h, b)).update).toBeUndefined(); // K = 1: a holds the only slot
    expect((await beat(h, out)).update).toBeUndefined();
    expect((await beat(h, current)).update).toBeUndefined();

    // a comes back on 0.2.0: its slot frees, b is next
    const a2 = await agent(h, "a-1", "0.2.0", true, a.token);
    expect((await beat(h, a2)).update).toBeUndefined();
    expect((await beat(h, b)).update).toMatchObject({ version: "0.2.0" });
  });

  test("a slot held by an agent that never came back frees after the update window", async () => {
    const h = await makeHarness({ agentDist: distWith("0.2.0"), agentUpdateConcurrency: 1 });
    const a = await agent(h, "a-1", "0.1.0");
    const b = await agent(h, "b-1", "0.1.0");
    expect((await beat(h, a)).update).toBeDefined();
    expect((await beat(h, b)).update).toBeUndefined();
    h.clock.advance(6 * 60_000);
    expect((await beat(h, b)).update).toBeDefined();
  });

  test("concurrency 0 turns updates off", async () => {
    const h = await makeHarness({ agentDist: distWith("0.2.0"), agentUpdateConcurrency: 0 });
    expect((await beat(h, await agent(h, "a-1", "0.1.0"))).update).toBeUndefined();
  });

  test("olderVersion compares by semver precedence and declines what is not semver", () => {
    expect(olderVersion("0.1.0", "0.2.0")).toBe(true);
    expect(olderVersion("0.10.0", "0.9.0")).toBe(false);
    expect(olderVersion("1.0.0-rc.1", "1.0.0")).toBe(true);
    expect(olderVersion("1.0.0", "1.0.0")).toBe(false);
    expect(olderVersion("test", "1.0.0")).toBeNull();
  });
});
