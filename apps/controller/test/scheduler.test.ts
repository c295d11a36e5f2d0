import { describe, expect, test } from "vitest";
import type { Db } from "../src/db/client";
import { openTestDb } from "./fixture";
import { deployments, jobs, runs, schedules } from "../src/db/schema";
import type { SchedulerHooks } from "../src/services/scheduler";
import { appsYaml, controller, deployed, MIN, schedule } from "./runsFixture";

async function setup(schedulesYaml: string, start: string, hooks: SchedulerHooks = {}) {
  const { db } = await openTestDb();
  const clock = { now: Date.parse(start) };
  await deployed(db, clock.now);
  const yaml = appsYaml(schedulesYaml);
  const ctl = await controller(db, yaml, clock, hooks);
  return {
    db,
    clock,
    ctl,
    restart: (h: SchedulerHooks = {}) => controller(db, yaml, clock, h),
    /** tick every `stepMs` until `until` (inclusive of the last step) */
    async runUntil(until: string, stepMs = MIN, c = ctl) {
      const end = Date.parse(until);
      while (clock.now < end) {
        clock.now = Math.min(clock.now + stepMs, end);
        await c.services.scheduler.tick();
      }
    },
    rows: () => db.select().from(runs).orderBy(runs.tickAt),
    queuedTicks: async () =>
      (await db.select().from(runs).orderBy(runs.tickAt))
        .filter((r) => r.jobId !== null)
        .map((r) => new Date(r.tickAt!).toISOString()),
  };
}

describe("scheduling across daylight-saving changes (one run per wall-clock time)", () => {
  test.each([
    // zone, change day, expression, the UTC instants it runs at over three days around the change
    ["Europe/London", "spring", "2026-03-28T00:00:00Z", "30 1 * * *", ["2026-03-28T01:30:00.000Z", "2026-03-29T01:30:00.000Z", "2026-03-30T00:30:00.000Z"]],
    ["Europe/London", "autumn", "2026-10-24T00:00:00Z", "30 1 * * *", ["2026-10-24T00:30:00.000Z", "2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]],
    ["America/New_York", "spring", "2026-03-07T12:00:00Z", "30 2 * * *", ["2026-03-08T07:30:00.000Z", "2026-03-09T06:30:00.000Z", "2026-03-10T06:30:00.000Z"]],
    ["America/New_York", "autumn", "2026-10-31T12:00:00Z", "30 1 * * *", ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z", "2026-11-03T06:30:00.000Z"]],
  ])("%s %s: a daily job in the skipped or repeated hour runs once a day", async (timezone, _season, start, cron, expected) => {
    const s = await setup(schedule({ name: "daily", cron, timezone, concurrency: "allow" }), start);
    await s.ctl.services.scheduler.tick();
    await s.runUntil(new Date(Date.parse(start) + 3 * 24 * 60 * MIN).toISOString(), 13 * MIN);
    expect((await s.queuedTicks())).toEqual(expected);
    // nothing was missed or skipped either
    expect((await s.rows()).every((r) => r.state === "queued")).toBe(true);
  });

  test.each([
    ["Europe/London", "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z", 23],
    ["Europe/London", "2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z", 25],
    ["America/New_York", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", 23],
    ["America/New_York", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", 25],
  ])("%s, the local day from %s to %s: an hourly job follows elapsed time, %i runs an hour apart", async (timezone, from, to, count) => {
    const s = await setup(schedule({ name: "hourly", cron: "0 * * * *", timezone, concurrency: "allow" }), new Date(Date.parse(from) - MIN).toISOString());
    await s.ctl.services.scheduler.tick();
    // ticks every 7 minutes: the scheduler's answer must not depend on how often it looks
    await s.runUntil(new Date(Date.parse(to) - MIN).toISOString(), 7 * MIN);
    const ticks = (await s.queuedTicks()).map(Date.parse);
    expect(ticks).toHaveLength(count);
    expect(ticks.slice(1).every((t, i) => t - ticks[i]! === 60 * MIN)).toBe(true);
  });

  test("two fixed minutes in the changing hour (15,45 1 * * *) each run once on both change days in London", async () => {
    const s = await setup(schedule({ name: "twice", cron: "15,45 1 * * *", timezone: "Europe/London", concurrency: "allow" }), "2026-03-28T12:00:00Z");
    await s.ctl.services.scheduler.tick();
    await s.runUntil("2026-03-29T12:00:00Z", 5 * MIN);
    expect((await s.queuedTicks())).toEqual(["2026-03-29T01:15:00.000Z", "2026-03-29T01:45:00.000Z"]);
    const autumn = await setup(schedule({ name: "twice", cron: "15,45 1 * * *", timezone: "Europe/London", concurrency: "allow" }), "2026-10-24T12:00:00Z");
    await autumn.ctl.services.scheduler.tick();
    await autumn.runUntil("2026-10-25T12:00:00Z", 5 * MIN);
    expect((await autumn.queuedTicks())).toEqual(["2026-10-25T00:15:00.000Z", "2026-10-25T00:45:00.000Z"]);
  });
});

describe("ticks missed while the controller was away", () => {
  test("the newest tick runs if within its starting deadline; the others are recorded missed, never a burst", async () => {
    const s = await setup(schedule({ name: "ten", cron: "*/10 * * * *", starting_deadline_seconds: 300, concurrency: "allow" }), "2026-11-22T12:00:30Z");
    await s.ctl.services.scheduler.tick();
    s.clock.now = Date.parse("2026-11-22T13:02:30Z"); // an hour away
    const after = await s.restart();
    await after.services.scheduler.tick();
    const rows = (await s.rows());
    expect(rows.map((r) => [new Date(r.tickAt!).toISOString().slice(11, 16), r.state])).toEqual([
      ["12:10", "missed"],
      ["12:20", "missed"],
      ["12:30", "missed"],
      ["12:40", "missed"],
      ["12:50", "missed"],
      ["13:00", "queued"],
    ]);
    expect((await s.db.select().from(jobs))).toHaveLength(1);
    expect(rows[0]!.reason).toMatch(/only the newest tick \(2026-11-22T13:00:00.000Z\) ran/);
    const events = (await after.deps.outbox.after(0, 1000)).filter((e) => e.type === "run.changed");
    expect(events.map((e) => (e.data as { status: string }).status)).toEqual(["missed", "missed", "missed", "missed", "missed", "queued"]);
  });

  test("a newest tick past its deadline is recorded missed and runs nothing", async () => {
    const s = await setup(schedule({ name: "ten", cron: "*/10 * * * *", starting_deadline_seconds: 300, concurrency: "allow" }), "2026-11-22T12:00:30Z");
    await s.ctl.services.scheduler.tick();
    s.clock.now = Date.parse("2026-11-22T12:16:00Z");
    await s.ctl.services.scheduler.tick();
    expect((await s.rows()).map((r) => r.state)).toEqual(["missed"]);
    expect((await s.rows())[0]!.reason).toMatch(/360\.0 s after its tick, past its starting deadline of 300 s/);
    expect((await s.db.select().from(jobs))).toHaveLength(0);
  });

  test("a week away from a per-second schedule: one run, at most 100 missed rows", async () => {
    const s = await setup(schedule({ name: "fast", cron: "* * * * * *", concurrency: "allow" }), "2026-11-22T12:00:00.500Z");
    await s.ctl.services.scheduler.tick();
    s.clock.now += 7 * 24 * 60 * MIN;
    await s.ctl.services.scheduler.tick();
    const rows = (await s.rows());
    expect(rows.filter((r) => r.state === "queued")).toHaveLength(1);
    expect(rows.filter((r) => r.state === "missed")).toHaveLength(100);
    expect(rows.at(-1)).toMatchObject({ state: "queued", tickAt: Date.parse("2026-11-29T12:00:00Z") });
  });
});

describe("concurrency policies", () => {
  const every10 = (concurrency: string) => schedule({ name: "job", cron: "*/10 * * * *", concurrency });
  const jobRows = (db: Db) => db.select().from(jobs).orderBy(jobs.id);

  test("forbid: a tick while a run is active is skipped and recorded; after it ends, the next tick runs", async () => {
    const s = await setup(every10("forbid"), "2026-11-22T12:05:00Z");
    await s.ctl.services.scheduler.tick();
    await s.runUntil("2026-11-22T12:20:00Z");
    expect((await s.rows()).map((r) => r.state)).toEqual(["queued", "skipped"]);
    expect((await s.rows())[1]!.reason).toMatch(/still active \(concurrency: forbid\)/);
    await s.ctl.services.jobs.cancel((await jobRows(s.db))[0]!.id);
    await s.runUntil("2026-11-22T12:30:00Z");
    expect((await s.rows()).map((r) => r.state)).toEqual(["queued", "skipped", "queued"]);
    expect((await jobRows(s.db))).toHaveLength(2);
  });

  test("allow: overlapping runs are queued side by side", async () => {
    const s = await setup(every10("allow"), "2026-11-22T12:05:00Z");
    await s.ctl.services.scheduler.tick();
    await s.runUntil("2026-11-22T12:30:00Z");
    expect((await jobRows(s.db)).map((j) => j.status)).toEqual(["pending", "pending", "pending"]);
  });

  test("replace: the active run is cancelled through the normal cancel path and the new tick runs", async () => {
    const s = await setup(every10("replace"), "2026-11-22T12:05:00Z");
    await s.ctl.services.scheduler.tick();
    await s.runUntil("2026-11-22T12:10:00Z");
    // an agent takes the first run and starts it
    const reg = await s.ctl.app.request("/v1/agents/register", {
      method: "POST",
      headers: { authorization: "Bearer join-secret", "content-type": "application/json" },
      body: JSON.stringify({ hostname: "bot-1", version: "test" }),
    });
    expect(reg.status).toBe(200);
    const agent = (await reg.json()) as { agent: { id: string }; token: string };
    const claimed = (await s.ctl.services.leases.claimNextJob({ id: agent.agent.id, hostname: "bot-1", labels: [] }))!;
    await s.ctl.services.leases.reportStatus(agent.agent.id, claimed.id, { leaseId: claimed.leaseId, status: "running" });
    await s.runUntil("2026-11-22T12:20:00Z");
    const [first, second] = (await jobRows(s.db));
    expect(first).toMatchObject({ id: claimed.id, status: "running", cancelRequested: true });
    expect(second).toMatchObject({ status: "pending", cancelRequested: false });
    // the agent hears of the cancel in its next heartbeat
    const beat = await s.ctl.services.leases.reconcile(agent.agent.id, [claimed.id]);
    expect(beat).toEqual([claimed.id]);
    // a pending run being replaced ends at once
    await s.runUntil("2026-11-22T12:30:00Z");
    expect((await jobRows(s.db)).map((j) => j.status)).toEqual(["running", "cancelled", "pending"]);
  });
});

describe("a controller restart in the middle of a tick", () => {
  const every10 = schedule({ name: "job", cron: "*/10 * * * *", concurrency: "allow" });

  test("a crash before the tick's transaction commits leaves nothing behind; the restarted controller runs the tick once", async () => {
    let crash = true;
    const s = await setup(every10, "2026-11-22T12:05:00Z", {
      beforeCommit: () => {
        if (crash) throw new Error("process killed");
      },
    });
    await s.ctl.services.scheduler.tick(); // first sight: the schedule's cursor starts at 12:05
    s.clock.now = Date.parse("2026-11-22T12:10:00.200Z");
    await s.ctl.services.scheduler.tick(); // decides 12:10, then dies before the commit
    expect((await s.rows())).toHaveLength(0);
    expect((await s.db.select().from(jobs))).toHaveLength(0);
    crash = false;
    const restarted = await s.restart();
    await restarted.services.scheduler.tick();
    await restarted.services.scheduler.tick();
    await s.runUntil("2026-11-22T12:20:00Z", MIN, restarted);
    expect((await s.queuedTicks())).toEqual(["2026-11-22T12:10:00.000Z", "2026-11-22T12:20:00.000Z"]);
    expect((await s.db.select().from(jobs))).toHaveLength(2);
  });

  test("a crash after the commit, with the cursor written before the tick (or a second controller): the tick's key is taken, no duplicate", async () => {
    const s = await setup(every10, "2026-11-22T12:05:00Z");
    await s.ctl.services.scheduler.tick();
    s.clock.now = Date.parse("2026-11-22T12:10:00.200Z");
    await s.ctl.services.scheduler.tick();
    expect((await s.queuedTicks())).toEqual(["2026-11-22T12:10:00.000Z"]);
    // the restarted (or other) controller believes the tick is still undecided
    await s.db.update(schedules).set({ cursorAt: Date.parse("2026-11-22T12:05:00Z") });
    const other = await s.restart();
    await other.services.scheduler.tick();
    await s.ctl.services.scheduler.tick();
    expect((await s.queuedTicks())).toEqual(["2026-11-22T12:10:00.000Z"]);
    expect((await s.db.select().from(jobs))).toHaveLength(1);
  });
});

describe("what a run is", () => {
  test("the current release's image and config, today's command and env overrides, no ports, secrets by name", async () => {
    const s = await setup(schedule({ name: "job", cron: "*/10 * * * *", result_file: "/tmp/result.json", timeout_seconds: 60, "env": "{ LEVEL: debug }" }), "2026-11-22T12:05:00Z");
    await s.ctl.services.scheduler.tick();
    await s.runUntil("2026-11-22T12:10:00Z");
    const [job] = await s.db.select().from(jobs);
    expect(job).toMatchObject({ kind: "run", targetHost: "bot-1", timeoutSeconds: 60 });
    expect(job!.spec).toEqual({
      kind: "run",
      app: "bot",
      source: { type: "image", image: "127.0.0.1:5000/bot@sha256:feed" },
      release: "rel_1",
      version: "abc123",
      run: {
        ports: [],
        env: { MODE: "prod", LEVEL: "debug" },
        secrets: ["API_KEY"],
        command: ["sh", "-c", "echo hi"],
        restart: "no",
        result_file: "/tmp/result.json",
      },
    });
  });

  test("an app with no deployed release: the tick is recorded failed with the reason", async () => {
    const s = await setup(schedule({ name: "job", cron: "*/10 * * * *" }), "2026-11-22T12:05:00Z");
    await s.db.delete(deployments);
    await s.ctl.services.scheduler.tick();
    await s.runUntil("2026-11-22T12:10:00Z");
    expect((await s.rows())).toMatchObject([{ state: "failed", reason: "app 'bot' has no deployed release to run", jobId: null }]);
  });

  test("pause stops ticks; resume starts from now without making up the paused ticks; trigger runs at once", async () => {
    const s = await setup(schedule({ name: "job", cron: "*/10 * * * *" }), "2026-11-22T12:05:00Z");
    const sched = s.ctl.services.scheduler;
    expect((await sched.get("bot", "job")).nextRuns).toEqual(["2026-11-22T12:10:00.000Z", "2026-11-22T12:20:00.000Z", "2026-11-22T12:30:00.000Z"]);
    await sched.tick();
    expect(await sched.setPaused("bot", "job", true)).toMatchObject({ paused: true, nextRuns: [] });
    await s.runUntil("2026-11-22T12:45:00Z");
    expect((await s.rows())).toHaveLength(0);
    await sched.setPaused("bot", "job", false);
    await s.runUntil("2026-11-22T12:50:00Z");
    expect((await s.queuedTicks())).toEqual(["2026-11-22T12:50:00.000Z"]);
    const run = await sched.trigger("bot", "job");
    expect(run).toMatchObject({ trigger: "manual", schedule: "job", tickAt: null, status: "queued" });
    expect((await sched.list("bot"))[0]!.lastRun?.id).toBe(run.id);
  });
});
