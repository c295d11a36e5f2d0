import type { Logger } from "pino";
import type { Leadership } from "./services/pgCluster";

export interface SingletonWork {
  /** stable, for logs */
  name: string;
  /** this process became the one doing the work (at start on SQLite; on taking the lock on PostgreSQL) */
  gain?(): void | Promise<void>;
  /** it stopped being the one (lock lost, or shutdown): stop whatever `gain` started */
  lose?(): void | Promise<void>;
  /** the periodic work, run only while this process leads */
  tick?(): void | Promise<void>;
  /** ms until the next pass (default 1 s). Each pass asks the leadership first, so this also bounds the handover. */
  nextPassIn?(): number;
  /** ticks at most this often (default: every pass) — housekeeping ticks every minute, checks every second */
  tickEveryMs?: number;
}

/**
 * Runs one singleton's work while `leadership` says this process holds it: on SQLite always, on
 * PostgreSQL while this controller holds its advisory lock. A pass asks first (one round trip on
 * PostgreSQL), so when the holder dies another controller takes over at its next pass (about a
 * second). A tick that throws is logged and the loop goes on.
 */
export class Singleton {
  private held = false;
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private stopped = false;
  /** a slow tick (housekeeping) first runs one period after start, as a plain interval would */
  private lastTick: number;

  constructor(
    private readonly work: SingletonWork,
    private readonly leadership: Leadership,
    private readonly logger: Logger,
  ) {
    this.lastTick = work.tickEveryMs ? performance.now() : Number.NEGATIVE_INFINITY;
  }

  start(): void {
    this.pass = this.runPass();
  }

  /** True while this process does the work. */
  get leading(): boolean {
    return this.held;
  }

  private async runPass(): Promise<void> {
    if (this.stopped) return;
    try {
      const holds = await this.leadership.holds();
      if (this.stopped) return;
      if (holds && !this.held) {
        this.held = true;
        await this.work.gain?.();
      } else if (!holds && this.held) {
        this.held = false;
        await this.work.lose?.();
      }
      const now = performance.now();
      if (holds && this.work.tick && now - this.lastTick >= (this.work.tickEveryMs ?? 0)) {
        this.lastTick = now;
        await this.work.tick();
      }
    } catch (err) {
      this.logger.error({ err, singleton: this.work.name }, "singleton work failed; trying again");
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.pass = this.runPass();
    }, this.work.nextPassIn?.() ?? 1_000);
  }

  /** Ends the loop, stops the work and gives the leadership up for another controller. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.pass;
    if (this.held) {
      this.held = false;
      await this.work.lose?.();
    }
    await this.leadership.release();
  }
}
