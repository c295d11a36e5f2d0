import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Dockerode from "dockerode";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ADMIN, JOIN, startTestController } from "../../controller/test/server";
import { loadAgentConfig } from "../src/config";
import { AgentDaemon } from "../src/daemon";

type Controller = Awaited<ReturnType<typeof startTestController>>;
let ctl: Controller;
let proxy: Server;
let proxyUrl: string;

/** A controller one version ahead: every answer carries fields and values this agent has never seen. */
function addFutureFields(body: unknown): unknown {
  if (!body || typeof body !== "object" || Array.isArray(body)) return body;
  const out: Record<string, unknown> = { ...(body as Record<string, unknown>), futureField: { nested: [1, 2] }, protocolVersion: 2 };
  if (out.job && typeof out.job === "object") {
    const job = out.job as Record<string, unknown>;
    out.job = { ...job, priority: "high", spec: { ...(job.spec as object), futureSpecField: true } };
  }
  return out;
}

beforeAll(async () => {
  ctl = await startTestController();
  proxy = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const upstream = await fetch(ctl.url + req.url, {
      method: req.method,
      headers: { "content-type": "application/json", authorization: req.headers.authorization ?? "" },
      body: req.method === "GET" ? undefined : Buffer.concat(chunks),
    }).catch(() => null);
    if (!upstream) {
      res.writeHead(502).end();
      return;
    }
    const text = await upstream.text();
    res.writeHead(upstream.status, { "content-type": "application/json" });
    res.end(text ? JSON.stringify(addFutureFields(JSON.parse(text))) : "");
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const address = proxy.address();
  proxyUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
});
afterAll(async () => {
  proxy?.close();
  await ctl?.stop();
});

describe("this agent against a newer controller", () => {
  test("answers with extra fields are read and ignored: it registers, claims, runs and reports a job", async () => {
    const config = loadAgentConfig({
      DEPLOYBOT_URL: proxyUrl,
      DEPLOYBOT_JOIN_TOKEN: JOIN,
      DEPLOYBOT_HOSTNAME: "web-1",
      DEPLOYBOT_STATE_DIR: mkdtempSync(join(tmpdir(), "deploybot-agent-state-")),
      DEPLOYBOT_POLL_WAIT_SECONDS: "1",
    });
    // no engine: the stop job fails with the engine's error, which is still a reported outcome
    const noEngine = new Dockerode({ socketPath: join(tmpdir(), "no-such-docker.sock") });
    const daemon = new AgentDaemon(config, noEngine, pino({ level: "silent" }));
    const running = daemon.run();
    const submitted = await ctl.call("POST", "/v1/jobs", ADMIN, { spec: { kind: "stop", app: "web" }, target: { host: "web-1" } });
    expect(submitted.status).toBe(201);
    let job: { status: string; error: string | null } | undefined;
    for (let i = 0; i < 120 && !["succeeded", "failed"].includes(job?.status ?? ""); i++) {
      await new Promise((r) => setTimeout(r, 250));
      job = (await ctl.call("GET", `/v1/jobs/${submitted.body.job.id}`, ADMIN)).body.job;
    }
    await daemon.drain();
    await running;
    expect(job?.status).toMatch(/succeeded|failed/);
    expect(job?.error ?? "").not.toMatch(/agent error/);
  });
});

describe("agent configuration", () => {
  test("unknown DEPLOYBOT_* settings are named (warned about at start), known ones are not", () => {
    const config = loadAgentConfig({ DEPLOYBOT_URL: "http://c:8080", DEPLOYBOT_JOIN_TOKEN: "j", DEPLOYBOT_LOG_LEVL: "debug", DEPLOYBOT_LABELS: "a" });
    expect(config.unknownSettings).toEqual(["DEPLOYBOT_LOG_LEVL"]);
  });
});
