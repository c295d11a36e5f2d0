import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
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
    // it says it honours volumes, so the controller hands it jobs that have them
    expect(hosts[0].capabilities.volumes).toBe(true);
    expect(hosts[0].capabilities.appLogs).toBe(true);
  });

  test("an agent with app-log shipping turned off says so, and `logs APP` names its host and why", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "deploybot-agent-state-"));
    const quiet = { ...config(stateDir, JOIN), hostname: "api-1", shipAppLogs: false };
    await new AgentDaemon(quiet, noEngine, pino({ level: "silent" })).register();
    const host = (await ctl.call("GET", "/v1/hosts", ADMIN)).body.hosts.find((h: { hostname: string }) => h.hostname === "api-1");
    expect(host.capabilities).toMatchObject({ volumes: true, appLogs: false });
    const logs = (await ctl.call("GET", "/v1/apps/api/logs", ADMIN)).body;
    expect(logs).toEqual({
      lines: [],
      next: 0,
      silentHosts: [
        {
          host: "api-1",
          agentVersion: host.version,
          message:
            "the agent on host api-1 has app-log shipping turned off (DEPLOYBOT_SHIP_APP_LOGS=false): the output of api there never reaches the controller; set it to true and restart that agent",
        },
      ],
    });
  });

  test("an agent run from a checkout's sources never takes an update: it says so, and only a bundle may", async () => {
    const env = { DEPLOYBOT_URL: ctl.url, DEPLOYBOT_JOIN_TOKEN: JOIN, DEPLOYBOT_STATE_DIR: "/tmp/unused" };
    // these tests run the sources: whatever DEPLOYBOT_AUTO_UPDATE says, self-update is off
    expect(loadAgentConfig({ ...env, DEPLOYBOT_AUTO_UPDATE: "true" }).autoUpdate).toBe(false);
    expect(loadAgentConfig({ ...env, DEPLOYBOT_AUTO_UPDATE: "true" }, { bundled: true }).autoUpdate).toBe(true);
    expect(loadAgentConfig({ ...env, DEPLOYBOT_AUTO_UPDATE: "false" }, { bundled: true }).autoUpdate).toBe(false);
    // the controller reads the capability, and offers nothing to a host that has it off
    const stateDir = mkdtempSync(join(tmpdir(), "deploybot-agent-state-"));
    const fromCheckout = { ...loadAgentConfig({ ...env, DEPLOYBOT_STATE_DIR: stateDir }), hostname: "dev-1" };
    await new AgentDaemon(fromCheckout, noEngine, pino({ level: "silent" })).register();
    const host = (await ctl.call("GET", "/v1/hosts", ADMIN)).body.hosts.find((h: { hostname: string }) => h.hostname === "dev-1");
    expect(host.capabilities.autoUpdate).toBe(false);
  });

  test("without an identity, a wrong join token is refused", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "deploybot-agent-state-"));
    await expect(daemon(stateDir, "wrong-join-token").register()).rejects.toThrow(/join token/);
    expect(new AgentState(stateDir).loadIdentity()).toBeNull();
  });
});

describe("registration whose answer is lost", () => {
  test("the retry carries the same Idempotency-Key and gets the same identity with a single-use join token", async () => {
    const host = `web-lost-${randomUUID().slice(0, 8)}`;
    const created = (await ctl.call("POST", "/v1/agents/join-tokens", ADMIN, { host, singleUse: true })).body as { joinToken: { token: string } };
    const target = new URL(ctl.url);
    // A proxy between agent and controller: the first registration reaches the controller, which
    // answers; the proxy reads that whole answer and then cuts the agent's connection instead.
    const seen: Array<{ key: string | undefined; answer: { agent?: { id: string } } }> = [];
    const proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const upstream = request(
          { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host } },
          (up) => {
            const body: Buffer[] = [];
            up.on("data", (c: Buffer) => body.push(c));
            up.on("end", () => {
              const text = Buffer.concat(body).toString();
              if (req.url === "/v1/agents/register") {
                seen.push({ key: req.headers["idempotency-key"] as string | undefined, answer: JSON.parse(text) as { agent?: { id: string } } });
                if (seen.length === 1) {
                  req.socket.destroy();
                  return;
                }
              }
              res.writeHead(up.statusCode ?? 502, up.headers);
              res.end(text);
            });
          },
        );
        upstream.end(Buffer.concat(chunks));
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const port = (proxy.address() as AddressInfo).port;
    try {
      const stateDir = mkdtempSync(join(tmpdir(), "deploybot-agent-state-"));
      const cfg = loadAgentConfig({
        DEPLOYBOT_URL: `http://127.0.0.1:${port}`,
        DEPLOYBOT_JOIN_TOKEN: created.joinToken.token,
        DEPLOYBOT_HOSTNAME: host,
        DEPLOYBOT_STATE_DIR: stateDir,
      });
      await new AgentDaemon(cfg, noEngine, pino({ level: "silent" })).register();

      expect(seen).toHaveLength(2);
      expect(seen[0]!.key).toBeTruthy();
      expect(seen[1]!.key).toBe(seen[0]!.key);
      const lostId = seen[0]!.answer.agent!.id;
      expect(lostId).toMatch(/^agt_/);
      const identity = new AgentState(stateDir).loadIdentity()!;
      expect(identity.agentId).toBe(lostId);
      // the replayed token works
      const hosts = (await ctl.call("GET", "/v1/hosts", ADMIN)).body.hosts as Array<{ id: string; hostname: string }>;
      expect(hosts.filter((h) => h.hostname === host).map((h) => h.id)).toEqual([lostId]);
      const hb = await ctl.call("POST", `/v1/agents/${lostId}/heartbeat`, identity.token, { status: "idle", containers: [], heldJobIds: [] });
      expect(hb.status).toBe(200);

      // a separate registration is a new key, not a replay of the old answer
      const before = seen.length;
      await new AgentDaemon(cfg, noEngine, pino({ level: "silent" })).register();
      expect(seen[before]!.key).not.toBe(seen[0]!.key);
      expect(new AgentState(stateDir).loadIdentity()!.token).not.toBe(identity.token);
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });
});
