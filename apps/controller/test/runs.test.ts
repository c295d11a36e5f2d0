import { errorBody, RESULT_FILE_LIMIT, run as runSchema, runAnswer, runPage, scheduleAnswer, scheduleList } from "@deploybot/protocol";
import { describe, expect, test } from "vitest";
import { deployments } from "../src/db/schema";
import { ADMIN, JOIN, openTestDb } from "./fixture";
import { appsYaml, controller, deployed, schedule } from "./runsFixture";

async function setup() {
  const { db } = await openTestDb();
  const clock = { now: Date.parse("2026-11-22T12:05:00Z") };
  await deployed(db, clock.now);
  const ctl = await controller(db, appsYaml(schedule({ name: "report", cron: "*/10 * * * *", result_file: "/out/result.json" })), clock);
  const call = (method: string, path: string, opts: { token?: string; body?: unknown; headers?: Record<string, string>; raw?: Uint8Array } = {}) =>
    ctl.app.request(path, {
      method,
      headers: {
        ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...opts.headers,
      },
      body: opts.raw ? new Uint8Array(opts.raw) : opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  const token = async (scope: string) => {
    const res = await call("POST", "/v1/tokens", { token: ADMIN, body: { name: scope, scope } });
    return ((await res.json()) as { token: string }).token;
  };
  /** An agent on bot-1 takes the next job and starts it. */
  const agentTakes = async () => {
    const reg = await call("POST", "/v1/agents/register", { token: JOIN, body: { hostname: "bot-1", version: "test" } });
    const agent = (await reg.json()) as { agent: { id: string }; token: string };
    const claimed = (await ctl.services.leases.claimNextJob({ id: agent.agent.id, hostname: "bot-1", labels: [] }))!;
    await call("POST", `/v1/jobs/${claimed.id}/status`, { token: agent.token, body: { leaseId: claimed.leaseId, status: "running" } });
    return { agent, claimed };
  };
  return { db, clock, ctl, call, token, agentTakes };
}

describe("one-off runs: POST /v1/apps/{name}/runs", () => {
  test("queues a run of the current release on the app's first host; the agent's exit code, duration and result file come back", async () => {
    const h = await setup();
    const res = await h.call("POST", "/v1/apps/bot/runs", { token: ADMIN, body: { command: ["sh", "-c", "exit 3"], resultFile: "/tmp/r.txt" } });
    expect(res.status).toBe(201);
    const { run } = runAnswer.parse(await res.json());
    expect(run).toMatchObject({ app: "bot", schedule: null, trigger: "one-off", status: "queued", host: "bot-1", command: ["sh", "-c", "exit 3"], exitCode: null });

    const { agent, claimed } = await h.agentTakes();
    expect(claimed.spec.run).toMatchObject({ ports: [], command: ["sh", "-c", "exit 3"], result_file: "/tmp/r.txt", restart: "no" });
    const content = Buffer.from('{"ok":false}\n');
    const upload = await h.call("PUT", `/v1/jobs/${claimed.id}/result`, {
      token: agent.token,
      headers: { "x-deploybot-lease": claimed.leaseId, "x-deploybot-result-path": encodeURIComponent("/tmp/r.txt"), "x-deploybot-result-size": String(content.length) },
      raw: content,
    });
    expect(upload.status).toBe(200);
    h.clock.now += 1500;
    await h.call("POST", `/v1/jobs/${claimed.id}/status`, {
      token: agent.token,
      body: { leaseId: claimed.leaseId, status: "failed", error: "container exited with code 3", result: { exitCode: 3 } },
    });
    const done = runAnswer.parse(await (await h.call("GET", `/v1/runs/${run.id}`, { token: ADMIN })).json()).run;
    expect(done).toMatchObject({ status: "failed", exitCode: 3, durationMs: 1500, resultFile: { path: "/tmp/r.txt", size: 13, stored: 13, truncated: false } });
    // GET /v1/events carries the run as it moved: queued, running, ended
    await h.ctl.services.drainer.idle();
    const events = (await h.ctl.deps.outbox.after(0, 1000)).filter((e) => e.type === "run.changed" && e.subject === run.id);
    expect(events.map((e) => runSchema.parse(e.data).status)).toEqual(["queued", "running", "failed"]);
    expect(events.at(-1)).toMatchObject({ app: "bot", data: { exitCode: 3, resultFile: { size: 13 } } });
    const file = await h.call("GET", `/v1/runs/${run.id}/result`, { token: ADMIN });
    expect(file.status).toBe(200);
    expect(file.headers.get("content-disposition")).toBe('attachment; filename="r.txt"');
    expect(Buffer.from(await file.arrayBuffer()).toString()).toBe('{"ok":false}\n');
  });

  test("a result upload is fenced by the lease and capped; a stale lease changes nothing", async () => {
    const h = await setup();
    await h.call("POST", "/v1/apps/bot/runs", { token: ADMIN, body: { command: ["true"] } });
    const { agent, claimed } = await h.agentTakes();
    const put = (lease: string, raw: Uint8Array, size = raw.length) =>
      h.call("PUT", `/v1/jobs/${claimed.id}/result`, {
        token: agent.token,
        headers: { "x-deploybot-lease": lease, "x-deploybot-result-path": "%2Fr", "x-deploybot-result-size": String(size) },
        raw,
      });
    const stale = await put("lse_old", Buffer.from("x"));
    expect(stale.status).toBe(409);
    expect(errorBody.parse(await stale.json()).error.code).toBe("stale_lease");
    const tooBig = await put(claimed.leaseId, Buffer.alloc(RESULT_FILE_LIMIT + 1));
    expect(tooBig.status).toBe(413);
    expect((await put(claimed.leaseId, Buffer.alloc(RESULT_FILE_LIMIT, 1), 5 * RESULT_FILE_LIMIT)).status).toBe(200);
    const missing = await h.call("PUT", `/v1/jobs/${claimed.id}/result`, { token: agent.token, raw: Buffer.from("x") });
    expect(missing.status).toBe(400);
    const { runs } = runPage.parse(await (await h.call("GET", "/v1/runs?app=bot", { token: ADMIN })).json());
    expect(runs[0]!.resultFile).toEqual({ path: "/r", size: 5 * RESULT_FILE_LIMIT, stored: RESULT_FILE_LIMIT, truncated: true });
  });

  test("a result size header that is missing, empty, not a whole number or negative is a 400 naming it; nothing is stored", async () => {
    const h = await setup();
    const created = await h.call("POST", "/v1/apps/bot/runs", { token: ADMIN, body: { command: ["true"] } });
    const { run } = runAnswer.parse(await created.json());
    const { agent, claimed } = await h.agentTakes();
    const put = (size: string | undefined) =>
      h.call("PUT", `/v1/jobs/${claimed.id}/result`, {
        token: agent.token,
        headers: { "x-deploybot-lease": claimed.leaseId, "x-deploybot-result-path": "%2Fr", ...(size === undefined ? {} : { "x-deploybot-result-size": size }) },
        raw: Buffer.from("abc"),
      });
    for (const size of ["", "  ", undefined, "abc", "-1", "1.5", "0x10", "1e3", "12abc", "9".repeat(16)]) {
      const res = await put(size);
      expect(res.status, `size ${JSON.stringify(size)}`).toBe(400);
      const { error } = errorBody.parse(await res.json());
      expect(error.code).toBe("invalid_headers");
      expect(error.message).toMatch(/^x-deploybot-result-size: /);
      expect((await h.call("GET", `/v1/runs/${run.id}/result`, { token: ADMIN })).status).toBe(404);
    }
    // what the agent sends, String(bytes), is kept
    expect((await put("3")).status).toBe(200);
    const stored = runAnswer.parse(await (await h.call("GET", `/v1/runs/${run.id}`, { token: ADMIN })).json()).run;
    expect(stored.resultFile).toEqual({ path: "/r", size: 3, stored: 3, truncated: false });
  });

  test("errors: no release is 409, unknown app 404, an empty command 400, no token 401, a read token 403, a user token cannot upload", async () => {
    const h = await setup();
    const read = await h.token("read");
    expect((await h.call("POST", "/v1/apps/nope/runs", { token: ADMIN, body: { command: ["true"] } })).status).toBe(404);
    expect((await h.call("POST", "/v1/apps/bot/runs", { token: ADMIN, body: { command: [] } })).status).toBe(400);
    expect((await h.call("POST", "/v1/apps/bot/runs", { body: { command: ["true"] } })).status).toBe(401);
    expect((await h.call("POST", "/v1/apps/bot/runs", { token: read, body: { command: ["true"] } })).status).toBe(403);
    expect((await h.call("PUT", "/v1/jobs/job_x/result", { token: ADMIN, raw: Buffer.from("x") })).status).toBe(401);
    await h.db.delete(deployments);
    const none = await h.call("POST", "/v1/apps/bot/runs", { token: ADMIN, body: { command: ["true"] } });
    expect(none.status).toBe(409);
    expect(errorBody.parse(await none.json()).error).toMatchObject({ code: "no_release" });
    expect(runPage.parse(await (await h.call("GET", "/v1/runs", { token: read })).json()).runs).toEqual([]);
    expect((await h.call("GET", "/v1/runs/run_nope", { token: read })).status).toBe(404);
  });
});

describe("schedules: GET /v1/schedules, trigger, pause, resume", () => {
  test("lists schedules with their next run times; pause and resume; trigger queues a run now", async () => {
    const h = await setup();
    const read = await h.token("read");
    const list = scheduleList.parse(await (await h.call("GET", "/v1/schedules?app=bot", { token: read })).json());
    expect(list.schedules).toMatchObject([
      { app: "bot", name: "report", cron: "*/10 * * * *", timezone: "UTC", concurrency: "forbid", paused: false, resultFile: "/out/result.json", lastRun: null },
    ]);
    expect(list.schedules[0]!.nextRuns).toEqual(["2026-11-22T12:10:00.000Z", "2026-11-22T12:20:00.000Z", "2026-11-22T12:30:00.000Z"]);
    expect((await h.call("POST", "/v1/schedules/bot/report/pause", { token: read })).status).toBe(403);
    const paused = scheduleAnswer.parse(await (await h.call("POST", "/v1/schedules/bot/report/pause", { token: ADMIN })).json());
    expect(paused.schedule).toMatchObject({ paused: true, nextRuns: [] });
    const resumed = scheduleAnswer.parse(await (await h.call("POST", "/v1/schedules/bot/report/resume", { token: ADMIN })).json());
    expect(resumed.schedule.paused).toBe(false);
    const triggered = await h.call("POST", "/v1/schedules/bot/report/trigger", { token: ADMIN });
    expect(triggered.status).toBe(201);
    const { run } = runAnswer.parse(await triggered.json());
    expect(run).toMatchObject({ trigger: "manual", schedule: "report", status: "queued" });
    const again = scheduleAnswer.parse(await (await h.call("GET", "/v1/schedules/bot/report", { token: read })).json());
    expect(runSchema.parse(again.schedule.lastRun).id).toBe(run.id);
    const byName = runPage.parse(await (await h.call("GET", "/v1/runs?app=bot&schedule=report", { token: read })).json());
    expect(byName.runs.map((r) => r.id)).toEqual([run.id]);
    expect((await h.call("GET", "/v1/schedules/bot/nope", { token: read })).status).toBe(404);
    expect((await h.call("GET", "/v1/schedules")).status).toBe(401);
  });
});
