import { isFinal, type JobStatus } from "@deploybot/protocol";
import type { Deps } from "./deps";
import type { StoredLogLine } from "./events";
import type { JobLogService } from "./jobLogs";

const PAGE = 1000;
// a subscriber further behind than this drops its live backlog and re-reads the database
const MAX_LIVE_BACKLOG = 5000;

/** Resolves when notified or after `ms`; a notification while nobody waits is kept. */
export class Wakeup {
  private pending = false;
  private wake?: () => void;
  notify = () => {
    this.pending = true;
    this.wake?.();
  };
  wait(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        this.pending = false;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.wake = done;
    });
  }
}

/** One job's log as one stream follows it: a database cursor plus the live batches not yet sent. */
export class JobTail {
  private live: StoredLogLine[][] = [];
  private liveLines = 0;
  private reread = true; // the history (or a dropped backlog) comes from the database
  private quietFrom = 0; // monotonic ms: when the job ended or its last late line arrived

  constructor(
    readonly jobId: string,
    public cursor: number,
    public status: string,
    private readonly graceMs: number,
    endedAgoMs: number,
    /** the agent's line count from its final report; once every line is sent, no grace is needed */
    private expected: number | null = null,
  ) {
    if (isFinal(status as JobStatus)) this.quietFrom = performance.now() - endedAgoMs;
  }

  get final() {
    return isFinal(this.status as JobStatus);
  }

  push(batch: StoredLogLine[]) {
    if (this.final) this.quietFrom = performance.now();
    if (this.reread) return; // the next database read will find these lines
    this.live.push(batch);
    this.liveLines += batch.length;
    if (this.liveLines > MAX_LIVE_BACKLOG) this.dropBacklog();
  }

  setStatus(status: string, expected: number | null = null) {
    if (!this.final && isFinal(status as JobStatus)) this.quietFrom = performance.now();
    this.status = status;
    this.expected = expected ?? this.expected;
  }

  /** ms until the stream may call this job done; Infinity while it runs. */
  graceLeft(): number {
    if (!this.final) return Number.POSITIVE_INFINITY;
    if (this.reread || this.live.length > 0) return 0;
    // Without the agent's count (a job the controller ended, or an older agent), late lines
    // are waited for until the log has been quiet for the grace period.
    if (this.expected !== null && this.cursor + 1 >= this.expected) return 0;
    return this.quietFrom + this.graceMs - performance.now();
  }

  get drained() {
    return !this.reread && this.live.length === 0;
  }

  private dropBacklog() {
    this.live = [];
    this.liveLines = 0;
    this.reread = true;
  }

  /**
   * Sends everything known past the cursor, in seq order: database pages first, then live
   * batches. `send(lines, whole)` gets `whole` when `lines` is a live batch object unchanged.
   */
  async drain(logs: JobLogService, send: (lines: StoredLogLine[], whole: boolean) => Promise<void>, stopped: () => boolean) {
    for (;;) {
      if (stopped()) return;
      if (this.reread) {
        this.reread = false;
        // batches that arrive while a page is written are kept; the cursor skips the overlap
        for (let page = (await logs.read(this.jobId, this.cursor, PAGE)).entries; page.length > 0; ) {
          await send(page, false);
          this.cursor = page[page.length - 1]!.seq;
          if (page.length < PAGE || stopped()) break;
          page = (await logs.read(this.jobId, this.cursor, PAGE)).entries;
        }
        continue;
      }
      const batch = this.live.shift();
      if (!batch) return;
      this.liveLines -= batch.length;
      const last = batch[batch.length - 1]!.seq;
      if (last <= this.cursor) continue;
      if (batch[0]!.seq > this.cursor + 1) {
        // a gap (should not happen: we subscribe before reading) is filled from the database
        this.live.unshift(batch);
        this.liveLines += batch.length;
        this.dropBacklog();
        continue;
      }
      const whole = batch[0]!.seq === this.cursor + 1;
      await send(whole ? batch : batch.filter((e) => e.seq > this.cursor), whole);
      this.cursor = last;
    }
  }
}

/** Routes appended log batches to the tails that follow each job: one JobEvents listener in all. */
export class LogFanout {
  private readonly byJob = new Map<string, Set<(batch: StoredLogLine[]) => void>>();
  private stop?: () => void;

  constructor(private readonly deps: Deps) {}

  get followers() {
    let n = 0;
    for (const set of this.byJob.values()) n += set.size;
    return n;
  }

  follow(jobId: string, listener: (batch: StoredLogLine[]) => void): () => void {
    this.stop ??= this.deps.events.onLogs((id, batch) => {
      const set = this.byJob.get(id);
      if (set) for (const fn of set) fn(batch);
    });
    const set = this.byJob.get(jobId) ?? new Set();
    this.byJob.set(jobId, set);
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.byJob.delete(jobId);
      if (this.byJob.size === 0) {
        this.stop?.();
        this.stop = undefined;
      }
    };
  }
}

