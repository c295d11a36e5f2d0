import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { describe, expect, test } from "vitest";
import { startTestController } from "../../controller/test/server";
import { ControllerClient } from "../src/controllerClient";
import { JobLogSpool } from "../src/logSpool";
import { Redactor } from "../src/redact";

const ADMIN = "admin-secret";
const JOIN = "join-secret";
const silent = pino({ level: "silent" });

async function claimedJob(ctl: Awaited<ReturnType<typeof startTestController>>) {
  const reg = await ctl.call("POST", "/v1/agents/register", JOIN, { hostname: "web-1" });
  await ctl.call("POST", "/v1/jobs", ADMIN, { repo: "acme/web", ref: "main", host: "web-1" });
  const beat = await ctl.call("POST", `/v1/agents/${reg.body.agent.id}/heartbeat`, reg.body.token, {});
  return { token: reg.body.token as string, jobId: beat.body.job.id as string, leaseId: beat.body.job.leaseId as string };
}

describe("JobLogSpool", () => {
  test("a controller outage and an agent restart lose no line and repeat none", async () => {
    const first = await startTestController();
    const port = first.port;
    const { token, jobId, leaseId } = await claimedJob(first);
    const spoolDir = mkdtempSync(join(tmpdir(), "deploybot-spool-"));
    const client = new ControllerClient(first.url);
    client.token = token;
    const spool = new JobLogSpool(spoolDir, jobId, leaseId, client, new Redactor(), silent);
    for (let i = 0; i < 500; i++) spool.append("stdout", `line ${i}`);
    await new Promise((r) => setTimeout(r, 600));
    await first.stop(); // the controller goes away mid-stream
    for (let i = 500; i < 1200; i++) spool.append(i % 2 ? "stderr" : "stdout", `line ${i}`);
    await new Promise((r) => setTimeout(r, 400));
    await spool.halt(); // the process dies; its spool stays on disk
    // the agent "restarts": a new spool object over the same directory picks up where it was
    const resumed = new JobLogSpool(spoolDir, jobId, leaseId, client, new Redactor(), silent);
    expect(resumed.lines).toBe(1200);
    const second = await startTestController(first.dir, { DEPLOYBOT_PORT: String(port) });
    try {
      expect(await resumed.close(30_000)).toBe(true);
      const logs = await second.call("GET", `/v1/jobs/${jobId}/logs?limit=5000`, ADMIN);
      expect(logs.body.entries.map((e: { line: string }) => e.line)).toEqual(Array.from({ length: 1200 }, (_, i) => `line ${i}`));
    } finally {
      await second.stop();
    }
  }, 60_000);

  test("redacts secrets before lines are written or sent", async () => {
    const ctl = await startTestController();
    try {
      const { token, jobId, leaseId } = await claimedJob(ctl);
      const client = new ControllerClient(ctl.url);
      client.token = token;
      const redactor = new Redactor();
      redactor.add("hunter2-registry-pw", "db", undefined);
      const spool = new JobLogSpool(mkdtempSync(join(tmpdir(), "deploybot-spool-")), jobId, leaseId, client, redactor, silent);
      spool.append("stdout", "login with hunter2-registry-pw to db\nsecond line");
      expect(await spool.close(10_000)).toBe(true);
      const logs = await ctl.call("GET", `/v1/jobs/${jobId}/logs`, ADMIN);
      expect(logs.body.entries.map((e: { line: string }) => e.line)).toEqual(["login with ******** to db", "second line"]);
    } finally {
      await ctl.stop();
    }
  });
});
