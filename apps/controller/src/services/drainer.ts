import { and, eq, lte, sql } from "drizzle-orm";
import type { Logger } from "pino";
import { reusable } from "../db/reusable";
import { deployments, outboxRetries } from "../db/schema";
import type { Deps } from "./deps";
import type { OutboxEvent } from "./outbox";

/**
 * Something that must happen because a change committed. The drainer applies each outbox row's
 * consequences in id order, once the row committed:
 * - `db`: database writes (deployment status, fan-out, releases), awaited inside the drainer's
 *   transaction (database calls only, see `Db.write`). Each runs in a savepoint of it, which also moves the drainer's cursor: applied and
 *   recorded together, so a crash re-applies nothing twice and skips nothing. It may append
 *   events of its own (they are applied in a later batch).
 * - `external`: calls out of the process (GitHub commit statuses). Recorded as a task in the same
 *   transaction, sent after the commit, retried with backoff until it succeeds.
 * - `signal`: in-memory wake-ups (long-polls, log streams) after the commit. Not retried: whoever
 *   is woken reads the database, and after a restart there is nobody left to wake.
 * A consequence must be idempotent: a retry, or a restart between its effect and the record of
 * it (external ones), runs it again.
 */
export interface Consequence {
  /** stable: retries are stored under it */
  name: string;
  /** the event types it follows */
  types: readonly string[];
  kind: "db" | "external" | "signal";
  apply(event: OutboxEvent): void | Promise<void>;
}

export interface DrainerOptions {
  /** rows applied per transaction */
  batch: number;
  /** first retry after this long, doubling per attempt up to `maxBackoffMs` */
  backoffMs: number;
  maxBackoffMs: number;
  /** after this many failed attempts a consequence is given up (still visible in outbox_retries) */
  maxAttempts: number;
  /**
   * `inline`: the drainer runs the signal consequences after each batch (one controller).
   * `follower`: every controller's outbox follower calls `applySignals` for every row (several
   * controllers on PostgreSQL, where the drainer runs in one of them and the wake-ups are needed
   * in all), so the drainer skips them.
   */
  signals: "inline" | "follower";
}

type RetryRow = { eventId: number; consequence: string; attempts: number };

export const DRAINER = "consequences";

/** retry tasks started per query */
const DUE_TASKS_LIMIT = 200;

type Batch = { signals: Array<[Consequence, OutboxEvent]>; external: boolean };

/** Thrown out of a batch's transaction when a consequence failed: the batch runs again, carefully. */
class FirstFailure extends Error {
  constructor(
    readonly event: OutboxEvent,
    readonly consequence: Consequence,
    readonly error: unknown,
  ) {
    super("a consequence failed; applying the batch again with a savepoint each");
  }
}

export class Drainer {
  private readonly consequences: Consequence[] = [];
  private readonly byType = new Map<string, Consequence[]>();
  private readonly logger: Logger;
  private readonly options: DrainerOptions;
  /** asked after every drain: prepared once where the engine allows (db/reusable.ts) */
  private readonly dueTasks;
  private cursor: number | undefined;
  /** external tasks running now, by `eventId|consequence` */
  private readonly inFlight = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopListening: (() => void) | undefined;
  private paused = false;
  /** the drain running now; a kick meanwhile asks it for one more pass */
  private running: Promise<void> | undefined;
  private again = false;
  /**
   * Whether a retry task may have come due since `outbox_retries` was last asked: at first, on
   * the timer, and when this drainer recorded one. A drain kicked by new rows otherwise skips
   * that query (a task comes due only with time, and the timer asks every second).
   */
  private tasksMaybeDue = true;

  constructor(
    private readonly deps: Deps,
    options: Partial<DrainerOptions> = {},
  ) {
    this.logger = deps.logger.child({ component: "drainer" });
    this.options = { batch: 500, backoffMs: 1_000, maxBackoffMs: 10 * 60_000, maxAttempts: 30, signals: "inline", ...options };
    const { db } = deps;
    this.dueTasks = reusable(db, () =>
      db
        .select({ eventId: outboxRetries.eventId, consequence: outboxRetries.consequence, attempts: outboxRetries.attempts })
        .from(outboxRetries)
        .where(lte(outboxRetries.nextAttemptAt, sql.placeholder("now")))
        .orderBy(outboxRetries.eventId, outboxRetries.consequence)
        .limit(DUE_TASKS_LIMIT)
        .prepare(),
    );
  }

  /** Records a task (or its next attempt) for `consequence` of `eventId`. */
  private async putTask(t: { eventId: number; consequence: string; attempts: number; nextAt: number | null; error: string | null; now: number }) {
    this.tasksMaybeDue = true;
    await this.deps.db
      .insert(outboxRetries)
      .values({ eventId: t.eventId, consequence: t.consequence, attempts: t.attempts, nextAttemptAt: t.nextAt, lastError: t.error, createdAt: t.now })
      .onConflictDoUpdate({
        target: [outboxRetries.eventId, outboxRetries.consequence],
        set: { attempts: t.attempts, nextAttemptAt: t.nextAt, lastError: t.error },
      });
  }

  /** Whether the task is still stored as `task` read it (same attempt) and due. */
  private async stillDue(task: RetryRow): Promise<boolean> {
    const [row] = await this.deps.db
      .select({ attempts: outboxRetries.attempts, nextAt: outboxRetries.nextAttemptAt })
      .from(outboxRetries)
      .where(and(eq(outboxRetries.eventId, task.eventId), eq(outboxRetries.consequence, task.consequence)));
    return row !== undefined && row.attempts === task.attempts && row.nextAt !== null && row.nextAt <= this.deps.clock();
  }

  private async dropTask(eventId: number, consequence: string) {
    await this.deps.db.delete(outboxRetries).where(and(eq(outboxRetries.eventId, eventId), eq(outboxRetries.consequence, consequence)));
  }

  register(consequence: Consequence): void {
    if (this.consequences.some((c) => c.name === consequence.name)) throw new Error(`consequence '${consequence.name}' is registered twice`);
    this.consequences.push(consequence);
    for (const type of consequence.types) this.byType.set(type, [...(this.byType.get(type) ?? []), consequence]);
  }

  /** Applies new rows as they are appended (the app factory calls this; no timer). */
  follow(): void {
    this.paused = this.deps.config.pauseConsequences;
    if (this.paused) return;
    this.stopListening ??= this.deps.outbox.onAppend(() => this.kick());
  }

  /**
   * At start: applies what was left from before (a crash between a change and its
   * consequences), then retries due tasks every second. DEPLOYBOT_TEST_PAUSE_CONSEQUENCES keeps
   * the drainer from applying anything — only for tests that need the crash window.
   */
  start(retryEveryMs = 1_000): void {
    this.follow();
    if (this.paused) {
      this.logger.warn("consequences are paused (DEPLOYBOT_TEST_PAUSE_CONSEQUENCES): changes are recorded but not applied");
      return;
    }
    void this.announceLeft();
    this.timer = setInterval(() => {
      this.tasksMaybeDue = true;
      void this.kick();
    }, retryEveryMs);
    this.timer.unref();
    void this.kick();
  }

  private async announceLeft(): Promise<void> {
    try {
      const left = (await this.deps.outbox.latestId()) - (await this.position());
      if (left > 0) this.logger.info({ events: left }, "applying consequences left from before the start");
    } catch (err) {
      this.logger.warn({ err }, "reading the outbox failed");
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.stopListening?.();
    this.stopListening = undefined;
    this.paused = true;
  }

  /**
   * Applies every committed row, then starts the tasks that are due. The outbox calls it once
   * per turn of the event loop in which rows were appended, the timer every second (for retries
   * whose backoff ran out). One drain at a time: a kick while one runs makes it pass again. On
   * SQLite a drain awaits only the database and so ends within the turn that kicked it.
   * External tasks run on; `idle()` waits for them.
   */
  kick(): Promise<void> {
    if (this.paused) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = (async () => {
      try {
        do {
          this.again = false;
          await this.drain();
          await this.startDueTasks();
        } while (this.again && !this.paused);
      } catch (err) {
        this.logger.error({ err }, "draining the outbox failed; trying again");
      } finally {
        this.running = undefined;
      }
    })();
    this.running = run;
    return run;
  }

  /** Resolves once every committed row is applied and no task that is due is running (tests, shutdown). */
  async idle(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      this.tasksMaybeDue = true;
      await this.kick();
      if (this.inFlight.size === 0 && (this.paused || (await this.deps.outbox.latestId()) <= (await this.position()))) return;
      await Promise.all(this.inFlight.values());
    }
  }

  /** The last outbox id whose consequences were applied (or recorded as tasks). */
  appliedUpTo(): Promise<number> {
    return this.position();
  }

  private async position(): Promise<number> {
    this.cursor ??= await this.deps.outbox.cursor(DRAINER);
    return this.cursor;
  }

  /** Applies every committed row past the cursor, a batch per transaction. */
  async drain(): Promise<number> {
    let applied = 0;
    const { outbox } = this.deps;
    for (;;) {
      const seen = outbox.appendCount();
      const rows = await outbox.after(await this.position(), this.options.batch);
      if (rows.length === 0) return applied;
      const last = rows[rows.length - 1]!.id;
      // A batch first runs its db consequences without a savepoint each: SAVEPOINT + RELEASE
      // around every consequence of every row was a quarter of the drainer's time (~10 µs of an
      // in-process claim+finish cycle, measured). When one throws, the batch rolls back whole and
      // runs again with a savepoint per consequence, which keeps the others' writes and records
      // the failure. Consequences are idempotent and derive from the database, so the second run
      // does what the first would have.
      let batch: Batch;
      try {
        batch = await this.applyBatch(rows, last, null);
      } catch (err) {
        if (!(err instanceof FirstFailure)) throw err;
        batch = await this.applyBatch(rows, last, err);
      }
      this.cursor = last;
      applied += rows.length;
      // after the commit: whoever is woken reads what it committed
      if (batch.signals.length > 0) this.signal(batch.signals);
      if (batch.external) await this.startDueTasks();
      // A batch that was not full, with nothing appended since its read (the SQLite outbox counts
      // every append): a second read would come back empty, and a row appended later kicks the
      // drainer anyway. Each drain ended with that empty read (a read transaction of its own).
      // With the due-task query below skipped too, a drain is one read and one write transaction
      // instead of three reads and one: 64 agents 1.02x, one caller 0.99x by CPU (pnpm
      // bench:jobs, same run; the one-caller loop drains every 100 cycles). Over HTTP (pnpm
      // bench, drains per turn) all of this change's cuts gave 230 vs 280 CPU µs per one-request
      // cycle against the code before.
      if (rows.length < this.options.batch && seen !== null && outbox.appendCount() === seen) return applied;
    }
  }

  /** The signal consequences of one committed row (the outbox follower of a controller on PostgreSQL). */
  applySignals(event: OutboxEvent): void {
    this.signal((this.byType.get(event.type) ?? []).filter((c) => c.kind === "signal").map((c) => [c, event]));
  }

  private signal(signals: Batch["signals"]): void {
    for (const [c, event] of signals) {
      try {
        c.apply(event);
      } catch (err) {
        this.logger.warn({ err, consequence: c.name, eventId: event.id }, "a wake-up failed");
      }
    }
  }

  /** `careful`: the failure that rolled back the first run; it is recorded, not run again. */
  private async applyBatch(rows: OutboxEvent[], last: number, careful: FirstFailure | null): Promise<Batch> {
    const batch: Batch = { signals: [], external: false };
    const { db } = this.deps;
    await db.write(async () => {
      // from scratch: a body may run again (PostgreSQL retries one a deadlock rolled back)
      batch.signals = [];
      batch.external = false;
      const now = this.deps.clock();
      for (const event of rows) {
        for (const c of this.byType.get(event.type) ?? []) {
          if (c.kind === "signal") {
            if (this.options.signals === "inline") batch.signals.push([c, event]);
          }
          else if (c.kind === "external") {
            await this.putTask({ eventId: event.id, consequence: c.name, attempts: 0, nextAt: now, error: null, now });
            batch.external = true;
          } else if (!careful) {
            try {
              await c.apply(event);
            } catch (err) {
              throw new FirstFailure(event, c, err); // rolls the whole batch back; it runs again with savepoints
            }
          } else if (careful.event === event && careful.consequence === c) {
            await this.failed(event, c, careful.error, 0);
          } else {
            try {
              await db.savepoint(async () => c.apply(event));
            } catch (err) {
              await this.failed(event, c, err, 0);
            }
          }
        }
      }
      await this.deps.outbox.setCursor(DRAINER, last);
    });
    return batch;
  }

  /** Starts the external tasks and retries whose time has come; resolves when those have ended. */
  async runDueTasks(): Promise<void> {
    this.tasksMaybeDue = true;
    await Promise.all(await this.startDueTasks());
  }

  private async startDueTasks(): Promise<Promise<void>[]> {
    // Asked after every drain before: a query of its own per kick, mostly answering nothing.
    if (!this.tasksMaybeDue) return [];
    this.tasksMaybeDue = false;
    const due: RetryRow[] = await this.dueTasks().execute({ now: this.deps.clock() });
    if (due.length === DUE_TASKS_LIMIT) this.tasksMaybeDue = true; // more may wait behind these
    const runs: Promise<void>[] = [];
    for (const task of due) {
      const key = `${task.eventId}|${task.consequence}`;
      if (this.inFlight.has(key)) continue;
      const run = this.runTask(task).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, run);
      runs.push(run);
    }
    return runs;
  }

  private async runTask(task: RetryRow): Promise<void> {
    // The due-task query may have read this task before an earlier run of it ended (that run
    // left `inFlight` after its result committed, and the answer arrived after): that run's
    // outcome stands, and running the old attempt again would record a failure twice.
    if (!(await this.stillDue(task))) return;
    const c = this.consequences.find((x) => x.name === task.consequence);
    const event = await this.deps.outbox.get(task.eventId);
    if (!c || !event) {
      // a consequence no longer registered (or a row already gone) cannot be applied: drop it, loudly
      this.logger.warn({ consequence: task.consequence, eventId: task.eventId }, "dropping a task nothing can apply");
      await this.dropTask(task.eventId, task.consequence);
      return;
    }
    const { db } = this.deps;
    try {
      if (c.kind === "db") {
        await db.write(async () => {
          await c.apply(event);
          await this.succeeded(event, c);
        });
      } else {
        await c.apply(event);
        await db.write(async () => this.succeeded(event, c));
      }
    } catch (err) {
      await db.write(async () => this.failed(event, c, err, task.attempts));
    }
  }

  private async succeeded(event: OutboxEvent, c: Consequence) {
    await this.dropTask(event.id, c.name);
    const deploymentId = deploymentOf(event);
    if (deploymentId) {
      await this.deps.db
        .update(deployments)
        .set({ consequenceError: null })
        .where(and(eq(deployments.id, deploymentId), sql`${deployments.consequenceError} LIKE ${`${c.name}:%`}`));
    }
  }

  /** Records a failed attempt: backoff, the error on the task and on the deployment, and an event. */
  private async failed(event: OutboxEvent, c: Consequence, err: unknown, attemptsBefore: number) {
    const attempts = attemptsBefore + 1;
    const message = errorMessage(err);
    const giveUp = attempts >= this.options.maxAttempts;
    const delay = Math.min(this.options.backoffMs * 2 ** (attempts - 1), this.options.maxBackoffMs);
    const now = this.deps.clock();
    // jitter: retries of many rows that failed together do not arrive together
    const nextAt = giveUp ? null : now + Math.round(delay * (0.8 + Math.random() * 0.4));
    await this.putTask({ eventId: event.id, consequence: c.name, attempts, nextAt, error: message, now });
    const summary = `${c.name}: ${message} (attempt ${attempts}${giveUp ? ", gave up" : `, retrying in ${Math.round(delay / 1000)} s`})`;
    const deploymentId = deploymentOf(event);
    if (deploymentId) {
      await this.deps.db.update(deployments).set({ consequenceError: summary }).where(eq(deployments.id, deploymentId));
    }
    await this.deps.outbox.append(
      "consequence.failed",
      { app: event.app, subject: deploymentId ?? event.subject },
      { eventId: event.id, eventType: event.type, consequence: c.name, error: message, attempts, deploymentId, retrying: !giveUp },
    );
    const log = { consequence: c.name, eventId: event.id, eventType: event.type, deploymentId, attempts, error: message };
    if (giveUp) this.logger.error(log, "a consequence failed for the last time; giving up");
    else this.logger.warn(log, "a consequence failed; retrying with backoff");
  }
}

function deploymentOf(event: OutboxEvent): string | null {
  if (event.type === "deployment.changed") return event.subject;
  const id = event.data.deploymentId;
  return typeof id === "string" ? id : null;
}

function errorMessage(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === "string" ? e.message : String(err);
  return (typeof e?.code === "string" ? `${e.code}: ${message}` : message).slice(0, 500);
}
