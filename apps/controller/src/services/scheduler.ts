import type { Run, Schedule } from "@deploybot/protocol";
import { eq } from "drizzle-orm";
import { schedules } from "../db/schema";
import { notFound } from "../lib/errors";
import type { AppDefinition, ScheduleDefinition } from "./appsConfig";
import { latestTickAtOrBefore, nextTicks, ticksBetween } from "./cron";
import { type Deps, iso } from "./deps";
import type { JobService } from "./jobs";
import type { RunRequest, RunService } from "./runs";

type StateRow = typeof schedules.$inferSelect;

/** Ticks looked at one by one after an outage; past this the newest is found directly. */
const MAX_ENUMERATED = 10_000;
/** Missed ticks recorded as rows per outage (the newest ones); the rest are counted in the log. */
const MAX_MISSED_RECORDED = 100;

export interface SchedulerHooks {
  /** Called inside a schedule's transaction just before it commits; tests throw here to stand for a crash. */
  beforeCommit?: (scheduleKey: string) => void;
}

/**
 * Turns apps.yaml `schedules:` into runs. Each schedule has a cursor in the database: the newest
 * decided tick (or the instant it was first seen or resumed); every tick at or before it is decided. A pass takes the ticks after the cursor up to now and, in ONE
 * synchronous transaction per schedule, records the older ones `missed`, decides the newest
 * (run, or `missed` past its starting deadline, or `skipped` under `forbid`), queues its job and
 * moves the cursor. The run row's unique (app, schedule, tick) key is taken in that same
 * transaction, so a tick runs once even when two controllers (or one before and after a crash)
 * decide it: the second insert finds the key taken and queues nothing.
 */
export class Scheduler {
  constructor(
    private readonly deps: Deps,
    private readonly runs: RunService,
    private readonly jobs: JobService,
    private readonly hooks: SchedulerHooks = {},
  ) {}

  /** Decides every due tick of every schedule. The server calls it every second; tests call it on a fake clock. */
  async tick(): Promise<void> {
    const now = this.deps.clock();
    for (const app of this.deps.apps().apps) {
      for (const s of app.schedules) {
        try {
          await this.tickSchedule(app, s, now);
        } catch (err) {
          this.deps.logger.error({ err: (err as Error).message, app: app.name, schedule: s.name }, "schedule tick failed");
        }
      }
    }
  }

  /** The next tick after a cursor, per schedule: a pass with nothing due opens no transaction and parses no cron. */
  private readonly nextDue = new Map<string, { from: string; at: number }>();

  private async tickSchedule(app: AppDefinition, s: ScheduleDefinition, now: number): Promise<void> {
    const key = `${app.name}/${s.name}`;
    const seen = (await this.deps.db.select().from(schedules).where(eq(schedules.key, key)))[0];
    if (seen?.paused) return;
    if (seen) {
      const from = `${seen.cursorAt}|${s.cron}|${s.timezone}`;
      let due = this.nextDue.get(key);
      if (due?.from !== from) {
        due = { from, at: nextTicks(s.cron, s.timezone, seen.cursorAt, 1)[0]! };
        this.nextDue.set(key, due);
      }
      if (now < due.at) return;
    }
    await this.deps.db.write(async () => {
      const state = await this.state(app.name, s.name, now);
      if (state.paused || state.cursorAt >= now) return;
      const due = ticksBetween(s.cron, s.timezone, state.cursorAt, now, MAX_ENUMERATED + 1);
      if (due.length > 0) {
        const overflow = due.length > MAX_ENUMERATED;
        const latest = overflow ? latestTickAtOrBefore(s.cron, s.timezone, now) : due[due.length - 1]!;
        const missed = overflow ? due : due.slice(0, -1);
        for (const tickAt of missed.slice(-MAX_MISSED_RECORDED)) {
          await this.runs.tryTakeTick(this.request(app, s, tickAt), "missed", `the controller was not running at this tick; only the newest tick (${iso(latest)}) ran`);
        }
        if (missed.length > 0) {
          this.deps.logger.warn({ app: app.name, schedule: s.name, missed: overflow ? `${MAX_ENUMERATED}+` : missed.length, ran: iso(latest) }, "ticks missed while the controller was away");
        }
        await this.decide(app, s, latest, now);
        // The cursor is the newest tick, never `now`: the next tick is computed from the previous
        // one, which is what keeps a tick in a skipped or repeated DST hour single (see cron.ts).
        await this.deps.db.update(schedules).set({ cursorAt: latest, updatedAt: now }).where(eq(schedules.key, key));
      }
      this.hooks.beforeCommit?.(key);
    });
  }

  /** One tick: run it, or record why not. */
  private async decide(app: AppDefinition, s: ScheduleDefinition, tickAt: number, now: number): Promise<void> {
    const lateSeconds = (now - tickAt) / 1000;
    const deadline = s.starting_deadline_seconds;
    const req = this.request(app, s, tickAt, deadline === undefined ? undefined : Math.max(1, Math.ceil(deadline - lateSeconds)));
    if (deadline !== undefined && lateSeconds > deadline) {
      await this.runs.tryTakeTick(req, "missed", `decided ${lateSeconds.toFixed(1)} s after its tick, past its starting deadline of ${deadline} s`);
      return;
    }
    const active = await this.runs.activeRuns(app.name, s.name);
    if (active.length > 0 && s.concurrency === "forbid") {
      await this.runs.tryTakeTick(req, "skipped", `run ${active[0]!.runId} was still active (concurrency: forbid)`);
      return;
    }
    const row = await this.runs.tryTakeTick(req);
    if (!row) return; // decided already, elsewhere or before a restart
    if (s.concurrency === "replace") {
      for (const a of active) await this.jobs.cancel(a.jobId); // the normal cancel path: pending ends now, running is stopped by its agent
    }
    const queued = await this.runs.attachJob(row, req);
    const tick = { app: app.name, schedule: s.name, tick: iso(tickAt), runId: row.id, jobId: queued.jobId, state: queued.state };
    // a tick that queued nothing says why (no deployed release, no such host), as `deploybot runs` does
    if (queued.jobId === null) this.deps.logger.warn({ ...tick, reason: queued.reason }, "schedule tick queued no run");
    else this.deps.logger.info(tick, "schedule tick");
  }

  private request(app: AppDefinition, s: ScheduleDefinition, tickAt: number | undefined, queueTimeoutSeconds?: number): RunRequest {
    return {
      app,
      command: s.command,
      trigger: tickAt === undefined ? "manual" : "schedule",
      schedule: s.name,
      tickAt,
      host: s.host,
      labels: s.labels,
      env: s.env,
      timeoutSeconds: s.timeout_seconds,
      resultFile: s.result_file,
      queueTimeoutSeconds,
    };
  }

  /** The schedule's row; a schedule seen for the first time starts at now (no backfill). */
  private async state(app: string, name: string, now: number): Promise<StateRow> {
    const key = `${app}/${name}`;
    await this.deps.db.insert(schedules).values({ key, app, name, cursorAt: now, updatedAt: now }).onConflictDoNothing();
    return (await this.deps.db.select().from(schedules).where(eq(schedules.key, key)))[0]!;
  }

  private definition(appName: string, name: string): { app: AppDefinition; s: ScheduleDefinition } {
    const app = this.runs.appOf(appName);
    const s = app.schedules.find((x) => x.name === name);
    if (!s) throw notFound("schedule", `${appName}/${name}`);
    return { app, s };
  }

  /** Runs the schedule's command now, whatever its concurrency policy (like `kubectl create job --from`). */
  async trigger(appName: string, name: string): Promise<Run> {
    const { app, s } = this.definition(appName, name);
    const id = await this.deps.db.write(async () => (await this.runs.queue(this.request(app, s, undefined))).id);
    return await this.runs.get(id);
  }

  /** Paused: ticks are not decided. Resumed: from now on; the ticks of the pause are not made up. */
  async setPaused(appName: string, name: string, paused: boolean): Promise<Schedule> {
    const { app, s } = this.definition(appName, name);
    const now = this.deps.clock();
    await this.deps.db.write(async () => {
      const state = await this.state(app.name, s.name, now);
      if (state.paused === paused) return;
      await this.deps.db
        .update(schedules)
        .set({ paused, updatedAt: now, ...(paused ? {} : { cursorAt: now }) })
        .where(eq(schedules.key, state.key));
    });
    this.deps.logger.info({ app: app.name, schedule: s.name, paused }, paused ? "schedule paused" : "schedule resumed");
    return this.toWire(app, s);
  }

  async get(appName: string, name: string): Promise<Schedule> {
    const { app, s } = this.definition(appName, name);
    return await this.toWire(app, s);
  }

  async list(appName?: string): Promise<Schedule[]> {
    const apps = appName ? [this.runs.appOf(appName)] : this.deps.apps().apps;
    return await Promise.all(apps.flatMap((app) => app.schedules.map((s) => this.toWire(app, s))));
  }

  private async toWire(app: AppDefinition, s: ScheduleDefinition): Promise<Schedule> {
    const now = this.deps.clock();
    const state = (await this.deps.db.select().from(schedules).where(eq(schedules.key, `${app.name}/${s.name}`)))[0];
    const paused = state?.paused ?? false;
    return {
      app: app.name,
      name: s.name,
      cron: s.cron,
      timezone: s.timezone,
      command: s.command,
      concurrency: s.concurrency,
      startingDeadlineSeconds: s.starting_deadline_seconds ?? null,
      timeoutSeconds: s.timeout_seconds ?? null,
      resultFile: s.result_file ?? null,
      target: s.host ? { host: s.host } : s.labels ? { labels: s.labels } : null,
      paused,
      nextRuns: paused ? [] : nextTicks(s.cron, s.timezone, Math.max(now, state?.cursorAt ?? now), 3).map((t) => iso(t)!),
      lastRun: await this.runs.lastRun(app.name, s.name),
    };
  }
}
