import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test, vi } from "vitest";
import { JOIN, makeHarness } from "./fixture";

const SHA = "b".repeat(64);
const writeManifest = (dir: string, version: string) =>
  writeFileSync(join(dir, "manifest.json"), JSON.stringify({ version, node: ">=20.19", files: { "deploybot-agent.mjs": { sha256: SHA, size: 1 } } }));

describe("the agent distribution's manifest, as idle heartbeats read it", () => {
  test("is read once for the heartbeats of the next 2 s; a replaced distribution is offered after that", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-dist-"));
    writeManifest(dir, "0.2.0");
    const h = await makeHarness({ agentDist: dir, agentUpdateConcurrency: 5 });
    const res = await h.call("POST", "/v1/agents/register", { token: JOIN, body: { hostname: "m-1", version: "0.2.0", labels: [], capabilities: {} } });
    const body = await res.json();
    const agent = { id: body.agent.id as string, token: body.token as string };
    const reads = vi.spyOn(h.services.agentDist, "manifest");
    const beat = async () => (await h.heartbeat(agent, { status: "idle" })).json();

    // up to date: nothing offered, and the manifest is read by the first heartbeat only
    for (let i = 0; i < 3; i++) expect((await beat()).update).toBeUndefined();
    expect(reads).toHaveBeenCalledTimes(1);

    writeManifest(dir, "0.3.0");
    expect((await beat()).update).toBeUndefined(); // still within the 2 s
    h.clock.advance(2_000);
    expect((await beat()).update).toEqual({ version: "0.3.0", sha256: SHA, path: "/v1/agents/bundle" });
    expect(reads).toHaveBeenCalledTimes(2);
  });

  test("an unreadable manifest offers nothing and fails no heartbeat; it is not kept: the next heartbeat reads it again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-dist-"));
    const h = await makeHarness({ agentDist: dir, agentUpdateConcurrency: 5 });
    const res = await h.call("POST", "/v1/agents/register", { token: JOIN, body: { hostname: "m-2", version: "0.1.0", labels: [], capabilities: {} } });
    const body = await res.json();
    const agent = { id: body.agent.id as string, token: body.token as string };
    const first = await h.heartbeat(agent, { status: "idle" });
    expect(first.status).toBe(200);
    expect((await first.json()).update).toBeUndefined();
    expect(h.logLines.filter((l) => l.includes("the agent distribution cannot be read"))).toHaveLength(1);
    expect((await h.heartbeat(agent, { status: "idle" })).status).toBe(200); // again, logged once a minute only
    expect(h.logLines.filter((l) => l.includes("the agent distribution cannot be read"))).toHaveLength(1);
    writeManifest(dir, "0.2.0");
    expect((await (await h.heartbeat(agent, { status: "idle" })).json()).update).toMatchObject({ version: "0.2.0" });
  });
});
