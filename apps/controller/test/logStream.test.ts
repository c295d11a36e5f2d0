import { serve } from "@hono/node-server";
import { Hono } from "hono";
import pino from "pino";
import { afterEach, describe, expect, test } from "vitest";
import { createApp } from "../src/app";
import { testConfig } from "../src/config";
import { logStreamRoutes } from "../src/routes/logStream";
import { parseAppsConfig } from "../src/services/appsConfig";
import { LogStreams } from "../src/services/logStream";
import { ADMIN, APPS_YAML, openTestDb } from "./fixture";
import { JOIN, startTestController } from "./server";
import { openStream, type SseEvent } from "./sse";

type Ctl = Awaited<ReturnType<typeof startTestController>>;

/** A fake agent driven over HTTP: registers, claims the seeds' job, posts logs and status. */
/** agent tokens by controller and host: a host that exists re-registers with its own token */
const agentTokens = new Map<string, string>();

async function claimJob(ctl: Ctl, host = "web-1") {
  const reg = await ctl.call("POST", "/v1/agents/register", agentTokens.get(`${ctl.url}|${host}`) ?? JOIN, { hostname: host });
  const agent = { id: reg.body.agent.id as string, token: reg.body.token as string };
  agentTokens.set(`${ctl.url}|${host}`, agent.token);
  const submitted = await ctl.call("POST", "/v1/jobs", ADMIN, { repo: "acme/web", ref: "main", host });
  expect(submitted.status).toBe(201);
  const beat = await ctl.call("POST", `/v1/agents/${agent.id}/heartbeat`, agent.token, {});
  const { id, leaseId } = beat.body.job as { id: string; leaseId: string };
  expect(id).toBe(submitted.body.job.id);
  await ctl.call("POST", `/v1/jobs/${id}/status`, agent.token, { leaseId, status: "running" });
  let offset = 0;
  return {
    id,
    agent,
    async log(...lines: string[]) {
      const entries = lines.map((line) => ({ ts: new Date().toISOString(), stream: "stdout", line }));
      const r = await ctl.call("POST", `/v1/jobs/${id}/logs`, agent.token, { leaseId, offset, entries });
      expect(r.status).toBe(200);
      offset += lines.length;
    },
    /** `lateLines`: lines the agent still has to upload after reporting the end (counted in logLines) */
    async finish(status = "succeeded", lateLines = 0) {
      const r = await ctl.call("POST", `/v1/jobs/${id}/status`, agent.token, { leaseId, status, logLines: offset + lateLines });
      expect(r.status).toBe(200);
    },
  };
}

const auth = { authorization: `Bearer ${ADMIN}` };
const lineOf = (e: SseEvent) => JSON.parse(e.data).line as string;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `line ${from + i}`);

let ctl: Ctl | undefined;
afterEach(async () => {
  await ctl?.stop();
  ctl = undefined;
});

describe("GET /v1/logs/stream?job=", () => {
  test("history first, then live lines in order, then `end` with the final status after late lines", async () => {
    ctl = await startTestController();
    const job = await claimJob(ctl);
    await job.log(...range(0, 3));
    const s = await openStream(`${ctl.url}/v1/logs/stream?job=${job.id}`, auth);
    expect(s.res.status).toBe(200);
    expect(s.res.headers.get("content-type")).toContain("text/event-stream");
    const history = await s.logs(3);
    expect(history.map(lineOf)).toEqual(range(0, 3));
    expect(history.map((e) => e.id)).toEqual(["0", "1", "2"]);
    expect(JSON.parse(history[0]!.data)).toMatchObject({ seq: 0, stream: "stdout", line: "line 0" });

    await job.log(...range(3, 5)); // live, and not buffered: each batch arrives on its own
    expect((await s.logs(2)).map(lineOf)).toEqual(range(3, 5));
    await job.finish("failed", 1);
    await job.log("late line"); // an agent may flush its spool after reporting the end
    const [late] = await s.logs(1);
    expect(lineOf(late!)).toBe("late line");
    const end = await s.next((e) => e.event === "end");
    expect(JSON.parse(end.data)).toEqual({ jobId: job.id, status: "failed" });
    await s.done; // the server closes the stream after `end`
    expect(s.queue.filter((e) => e.event === "log")).toEqual([]);
  });

  test("a client that disconnects mid-job and resumes with Last-Event-ID gets exactly the job's log", async () => {
    ctl = await startTestController();
    const job = await claimJob(ctl);
    await job.log(...range(0, 4));
    const first = await openStream(`${ctl.url}/v1/logs/stream?job=${job.id}`, auth);
    const received = await first.logs(4);
    await job.log(...range(4, 7));
    await job.log(...range(7, 9));
    received.push(...(await first.logs(5)));
    await first.close();

    // away: two batches, one of them large enough to span history pages
    await job.log(...range(9, 12));
    await job.log(...range(12, 1500));
    const lastId = received.at(-1)!.id!;
    expect(lastId).toBe("8");
    const second = await openStream(`${ctl.url}/v1/logs/stream?job=${job.id}`, { ...auth, "last-event-id": lastId });
    received.push(...(await second.logs(1491)));
    await job.log(...range(1500, 1503));
    received.push(...(await second.logs(3)));
    await job.finish();
    await second.next((e) => e.event === "end");
    await second.done;
    expect(second.queue.filter((e) => e.event === "log")).toEqual([]);

    expect(received.map(lineOf)).toEqual(range(0, 1503));
    expect(received.map((e) => Number(e.id))).toEqual(range(0, 1503).map((_, i) => i));
    const stored = await ctl.call("GET", `/v1/jobs/${job.id}/logs?limit=10000`, ADMIN);
    expect(stored.body.entries.map((e: { line: string }) => e.line)).toEqual(received.map(lineOf));
  });

  test("?after=SEQ resumes too; a finished job's stream replays and ends", async () => {
    ctl = await startTestController();
    const job = await claimJob(ctl);
    await job.log(...range(0, 5));
    await job.finish();
    const s = await openStream(`${ctl.url}/v1/logs/stream?job=${job.id}&after=2`, auth);
    expect((await s.logs(2)).map(lineOf)).toEqual(range(3, 5));
    expect(JSON.parse((await s.next((e) => e.event === "end")).data).status).toBe("succeeded");
  });

  test("unknown job: 404 with the error envelope; bad queries and event ids: 400", async () => {
    ctl = await startTestController();
    const missing = await fetch(`${ctl.url}/v1/logs/stream?job=job_nope`, { headers: auth });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: { code: "not_found", message: "job 'job_nope' does not exist" } });
    for (const query of ["", "host=web-1", "job=x&app=web"]) {
      const res = await fetch(`${ctl.url}/v1/logs/stream?${query}`, { headers: auth });
      expect(res.status).toBe(400);
      expect((await res.json()).error.code).toBe("invalid_query");
    }
    const job = await claimJob(ctl);
    const bad = await fetch(`${ctl.url}/v1/logs/stream?job=${job.id}`, { headers: { ...auth, "last-event-id": "nope" } });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.code).toBe("invalid_cursor");
  });

  test("auth: no token and an agent token are 401, a read token streams", async () => {
    ctl = await startTestController();
    const job = await claimJob(ctl);
    const none = await fetch(`${ctl.url}/v1/logs/stream?job=${job.id}`);
    expect(none.status).toBe(401);
    expect((await none.json()).error.code).toBe("unauthorized");
    const asAgent = await fetch(`${ctl.url}/v1/logs/stream?job=${job.id}`, { headers: { authorization: `Bearer ${job.agent.token}` } });
    expect(asAgent.status).toBe(401);
    const created = await ctl.call("POST", "/v1/tokens", ADMIN, { name: "viewer", scope: "read" });
    const s = await openStream(`${ctl.url}/v1/logs/stream?job=${job.id}`, { authorization: `Bearer ${created.body.token}` });
    expect(s.res.status).toBe(200);
    await s.close();
  });
});

describe("GET /v1/logs/stream?host=&app=", () => {
  test("every job of the app on the host: history then live, ids `<jobId>:<seq>` that resume", async () => {
    ctl = await startTestController();
    const one = await claimJob(ctl);
    await one.log("one 0", "one 1");
    await one.finish();
    const two = await claimJob(ctl);
    await two.log("two 0");

    const s = await openStream(`${ctl.url}/v1/logs/stream?host=web-1&app=web`, auth);
    const history = await s.logs(3);
    expect(history.map(lineOf)).toEqual(["one 0", "one 1", "two 0"]);
    expect(history.map((e) => JSON.parse(e.data).jobId)).toEqual([one.id, one.id, two.id]);
    expect(history[0]!.id!.split(",")[0]).toBe(`${one.id}:0`);
    expect(history[2]!.id!.split(",")[0]).toBe(`${two.id}:0`);
    await two.log("two 1");
    const [live] = await s.logs(1);
    expect(lineOf(live!)).toBe("two 1");
    await s.close();

    await two.log("two 2");
    await two.finish();
    const three = await claimJob(ctl);
    await three.log("three 0");
    const resumed = await openStream(`${ctl.url}/v1/logs/stream?host=web-1&app=web`, { ...auth, "last-event-id": live!.id! });
    expect((await resumed.logs(1)).map(lineOf)).toEqual(["two 2"]);
    // a job's `job` event comes as soon as its log is complete: the agent reported 3 lines
    const ended = await resumed.next((e) => e.event === "job" && JSON.parse(e.data).jobId === two.id);
    expect(JSON.parse(ended.data)).toEqual({ jobId: two.id, status: "succeeded" });
    expect((await resumed.logs(1)).map(lineOf)).toEqual(["three 0"]);
    expect(resumed.queue.filter((e) => e.event === "log")).toEqual([]);
    await resumed.close();

    const other = await openStream(`${ctl.url}/v1/logs/stream?host=web-2&app=web`, auth);
    // nothing for another host (and no 404: it is a filter)
    await expect(other.next((e) => e.event === "log", 300)).rejects.toThrow();
    await other.close();
  }, 20_000);
});

describe("stream lifecycle", () => {
  test("keep-alive pings fill silences, and a disconnect releases every listener", async () => {
    const config = testConfig({ joinToken: JOIN, adminToken: ADMIN });
    const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
    const { app, services, deps } = await createApp({
      db: (await openTestDb()).db,
      config,
      logger: pino({ level: "silent" }),
      apps: () => apps,
      secretKey: config.secretKey!,
    });
    const streams = new LogStreams(deps, services.jobLogs, { pingMs: 50 });
    const outer = new Hono().route("/probe", logStreamRoutes(services, deps, streams)).route("/", app);
    const server = serve({ fetch: outer.fetch, port: 0, hostname: "127.0.0.1" });
    await new Promise((r) => server.once("listening", r));
    const address = server.address();
    const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    try {
      const { job } = (await (
        await outer.request("/v1/jobs", {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ repo: "acme/web", ref: "main", host: "web-1" }),
        })
      ).json()) as { job: { id: string } };
      const s = await openStream(`${url}/probe?job=${job.id}`, auth);
      const ping = await s.next((e) => e.comment === "ping", 2000);
      expect(ping.comment).toBe("ping");
      expect(streams.stats).toEqual({ streams: 1, followers: 1 });
      await s.close();
      for (let i = 0; i < 100 && streams.stats.streams > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(streams.stats).toEqual({ streams: 0, followers: 0 });
    } finally {
      await new Promise((r) => {
        server.close(r);
        (server as unknown as { closeAllConnections(): void }).closeAllConnections();
      });
    }
  });
});
