import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Dockerode from "dockerode";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ADMIN, JOIN, startTestController } from "../../controller/test/server";
import { type AgentConfig, loadAgentConfig } from "../src/config";
import { AgentDaemon } from "../src/daemon";
import { AgentState } from "../src/state";

type Controller = Awaited<ReturnType<typeof startTestController>>;
let ctl: Controller;

// Registration needs no engine: capabilities are best effort.
const noEngine = new Dockerode({ socketPath: join(tmpdir(), "no-such-docker.sock") });
const config = (stateDir: string, joinToken: string): AgentConfig =>
  loadAgentConfig({ DEPLOYBOT_URL: ctl.url, DEPLOYBOT_JOIN_TOKEN: joinToken, DEPLOYBOT_HOSTNAME: "web-1", DEPLOYBOT_STATE_DIR: stateDir });
const daemon = (stateDir: string, joinToken: string) => new AgentDaemon(config(stateDir, joinToken), noEngine, pino({ level: "silent" }));

beforeAll(async () => {
  ctl = await startTestController();
});
afterAll(async () => {
  await ctl.stop();
});

describe("agent registration", () => {
  test("a restarted agent keeps its identity, even after the join token was rotated", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "deploybot-agent-state-"));
    await daemon(stateDir, JOIN).register();
    const first = new AgentState(stateDir).loadIdentity()!;
    expect(first.hostname).toBe("web-1");

    await daemon(stateDir, "rotated-join-token").register();
    const second = new AgentState(stateDir).loadIdentity()!;
    expect(second.agentId).toBe(first.agentId);
    expect(second.token).not.toBe(first.token);
    const hosts = (await ctl.call("GET", "/v1/hosts", ADMIN)).body.hosts;
    expect(hosts.map((h: { id: string }) => h.id)).toEqual([first.agentId]);
  });

  test("without an identity, a wrong join token is refused", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "deploybot-agent-state-"));
    await expect(daemon(stateDir, "wrong-join-token").register()).rejects.toThrow(/join token/);
    expect(new AgentState(stateDir).loadIdentity()).toBeNull();
  });
});
