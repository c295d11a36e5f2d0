import { activeStatuses } from "@deploybot/protocol";
import { and, desc, eq, inArray, or, type SQL } from "drizzle-orm";
import { agents, jobs } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import type { Deps } from "./deps";
import type { JobChange, StoredLogLine } from "./events";
import type { JobLogService } from "./jobLogs";
import { JobTail, LogFanout, Wakeup } from "./logTail";

export interface LogStreamOptions {
  /** a `: ping` comment after this long without a write, so proxies keep the connection */
  pingMs: number;
  /** after a job ends, how long its log must stay quiet before the stream says `end` */
  graceMs: number;
  /** a host+app stream replays this many most recent jobs (plus any still active) */
  historyJobs: number;
}

/** Where an SSE stream writes; hono's SSEStreamingApi is one. */
export interface SseSink {
  write(chunk: string | Uint8Array): Promise<unknown>;
  onAbort(listener: () => void): void;
  readonly aborted: boolean;
}

const MAX_CURSOR_PAIRS = 32;
const encoder = new TextEncoder();

const jobFrame = (e: StoredLogLine) =>
  `id: ${e.seq}\nevent: log\ndata: ${JSON.stringify({ seq: e.seq, ts: e.ts, stream: e.stream, line: e.line })}\n\n`;

// Every job stream following a job gets the same appended batch object: encode it once, not
// once per subscriber (200 subscribers of a 2,000-line job: see the route's comment).
const sharedBatchFrames = new WeakMap<StoredLogLine[], Uint8Array>();
function encodeBatch(batch: StoredLogLine[]): Uint8Array {
  let bytes = sharedBatchFrames.get(batch);
  if (!bytes) {
    bytes = encoder.encode(batch.map(jobFrame).join(""));
    sharedBatchFrames.set(batch, bytes);
  }
  return bytes;
}

/** A host+app stream's position: every job it has started and not finished, and the newest one. */
export type AppCursor = Map<string, number>;

/**
 * `jobA:12,jobB:-1`: the listed jobs resume after their seq; unlisted jobs older than the newest
 * listed one were sent completely; newer ones start from their first line.
 */
export function parseAppCursor(text: string): AppCursor {
  const pairs = text.split(",");
  if (pairs.length > MAX_CURSOR_PAIRS) throw new ApiError(400, "invalid_cursor", "the event id lists too many jobs");
  const cursor: AppCursor = new Map();
  for (const pair of pairs) {
    const m = /^([A-Za-z0-9_-]{1,64}):(-1|\d{1,9})$/.exec(pair.trim());
    if (!m) throw new ApiError(400, "invalid_cursor", `'${text.slice(0, 100)}' is not an event id of this stream`);
    cursor.set(m[1]!, Number(m[2]));
  }
  return cursor;
}

export function parseJobCursor(text: string): number {
  if (!/^(-1|\d{1,9})$/.test(text.trim())) throw new ApiError(400, "invalid_cursor", "the event id must be a log seq");
  return Number(text);
}

type JobState = { id: string; status: string; finishedAt: number | null; expectedLogLines: number | null };

export class LogStreams {
  readonly options: LogStreamOptions;
  private readonly fanout: LogFanout;
  private open = 0;

  constructor(
    private readonly deps: Deps,
    private readonly logs: JobLogService,
    options: Partial<LogStreamOptions> = {},
  ) {
    this.options = { pingMs: 15_000, graceMs: 2_000, historyJobs: 5, ...options };
    this.fanout = new LogFanout(deps);
  }

  /** Streams being served and log listeners held, for tests and metrics. */
  get stats() {
    return { streams: this.open, followers: this.fanout.followers };
  }

  private tailFor(job: JobState, after: number) {
    const endedAgo = job.finishedAt === null ? 0 : Math.max(0, this.deps.clock() - job.finishedAt);
    return new JobTail(job.id, after, job.status, this.options.graceMs, endedAgo, job.expectedLogLines);
  }

  private async jobStates(where: SQL | undefined, limit?: number): Promise<JobState[]> {
    const q = this.deps.db
      .select({ id: jobs.id, status: jobs.status, finishedAt: jobs.finishedAt, expectedLogLines: jobs.expectedLogLines })
      .from(jobs)
      .where(where)
      .orderBy(desc(jobs.id));
    return limit === undefined ? await q : await q.limit(limit);
  }

  /** One job's log: history, then live, then `end`. Subscribes before reading; throws 404 first. */
  async openJob(jobId: string, after: number) {
    // Subscribed before the status read: what arrives while it is read is kept and applied to
    // the tail after it, so no change can fall in between; the history is read (later, by
    // drain) only once the tail already collects live lines.
    let tail: JobTail | undefined;
    const early: Array<(t: JobTail) => void> = [];
    const onTail = (apply: (t: JobTail) => void) => (tail ? apply(tail) : early.push(apply));
    const wakeup = new Wakeup();
    const stops = [
      this.fanout.follow(jobId, (batch) => {
        onTail((t) => t.push(batch));
        wakeup.notify();
      }),
      this.deps.events.onJob((change) => {
        if (change.id !== jobId) return;
        onTail((t) => t.setStatus(change.status, change.expectedLogLines));
        wakeup.notify();
      }),
    ];
    let job: JobState | undefined;
    try {
      [job] = await this.jobStates(eq(jobs.id, jobId));
      if (!job) throw notFound("job", jobId);
    } catch (err) {
      for (const stop of stops) stop();
      throw err;
    }
    tail = this.tailFor(job, after);
    for (const apply of early.splice(0)) apply(tail);
    const opened = tail;
    const frames = (lines: StoredLogLine[], whole: boolean) => (whole ? encodeBatch(lines) : lines.map(jobFrame).join(""));
    return this.serve(stops, wakeup, async (sink, stopped) => {
      await opened.drain(this.logs, async (lines, whole) => void (await sink.write(frames(lines, whole))), stopped);
      if (opened.graceLeft() > 0) return opened.graceLeft();
      await sink.write(`event: end\ndata: ${JSON.stringify({ jobId, status: opened.status })}\n\n`);
      return null;
    });
  }

  /** Every job of `app` aimed at (or run by) `host`: the recent ones' history, then live. Never ends. */
  async openHostApp(host: string, app: string, resume: AppCursor | undefined) {
    const stops: Array<() => void> = [];
    const wakeup = new Wakeup();
    const tails = new Map<string, JobTail>();
    let newest: { jobId: string; seq: number } | undefined;
    let agentId = await this.agentIdOf(host);
    const onHost = (change: JobChange) => change.host === host || (change.agentId !== null && change.agentId === agentId);

    const track = (job: JobState, after: number) => {
      const tail = this.tailFor(job, after);
      tails.set(job.id, tail);
      stops.push(
        this.fanout.follow(job.id, (batch) => {
          tail.push(batch);
          wakeup.notify();
        }),
      );
    };
    const consider = (change: JobChange) => {
      const tail = tails.get(change.id);
      if (tail) tail.setStatus(change.status, change.expectedLogLines);
      else if (onHost(change) && (!newest || change.id > newest.jobId)) {
        track({ id: change.id, status: change.status, finishedAt: null, expectedLogLines: change.expectedLogLines }, -1);
      } else return;
      wakeup.notify();
    };
    stops.push(
      this.deps.events.onJob((change) => {
        if (change.app !== app) return;
        // a host whose agent registered after the stream opened: its id is looked up first
        if (agentId || tails.has(change.id) || change.host === host || change.agentId === null) return consider(change);
        void this.agentIdOf(host).then((id) => {
          agentId ??= id;
          consider(change);
        });
      }),
    );

    const scope = and(eq(jobs.app, app), agentId ? or(eq(jobs.targetHost, host), eq(jobs.agentId, agentId)) : eq(jobs.targetHost, host));
    const candidates = new Map<string, JobState>();
    for (const job of await this.jobStates(scope, this.options.historyJobs)) candidates.set(job.id, job);
    for (const job of await this.jobStates(and(scope, inArray(jobs.status, [...activeStatuses])), 50)) candidates.set(job.id, job);
    if (resume) {
      for (const job of await this.jobStates(and(scope, inArray(jobs.id, [...resume.keys()])))) candidates.set(job.id, job);
      const watermark = [...resume.keys()].sort().at(-1)!;
      newest = { jobId: watermark, seq: resume.get(watermark)! };
    }
    for (const job of [...candidates.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      if (tails.has(job.id)) continue;
      const listed = resume?.get(job.id);
      if (listed !== undefined) track(job, listed);
      else if (!newest || job.id > newest.jobId) track(job, -1);
    }

    /** The event id of a line: this job's seq and every started, unfinished job up to the newest. */
    const eventId = (jobId: string, seq: number) => {
      if (!newest || jobId >= newest.jobId) newest = { jobId, seq };
      const parts = [`${jobId}:${seq}`];
      for (const tail of tails.values()) {
        if (tail.jobId !== jobId && tail.jobId <= newest.jobId) parts.push(`${tail.jobId}:${tail.cursor}`);
      }
      if (newest.jobId !== jobId && !tails.has(newest.jobId)) parts.push(`${newest.jobId}:${newest.seq}`);
      return parts.join(",");
    };
    const frame = (jobId: string, e: StoredLogLine) =>
      `id: ${eventId(jobId, e.seq)}\nevent: log\ndata: ${JSON.stringify({ jobId, seq: e.seq, ts: e.ts, stream: e.stream, line: e.line })}\n\n`;

    return this.serve(stops, wakeup, async (sink, stopped) => {
      let wait = Number.POSITIVE_INFINITY;
      for (const tail of [...tails.values()].sort((a, b) => (a.jobId < b.jobId ? -1 : 1))) {
        await tail.drain(
          this.logs,
          async (lines) => {
            let text = "";
            for (const e of lines) {
              tail.cursor = e.seq; // the event id lists this job at the line it carries
              text += frame(tail.jobId, e);
            }
            await sink.write(text);
          },
          stopped,
        );
        const left = tail.graceLeft();
        if (left > 0) {
          wait = Math.min(wait, left);
          continue;
        }
        tails.delete(tail.jobId);
        if (!newest || tail.jobId >= newest.jobId) newest = { jobId: tail.jobId, seq: tail.cursor };
        await sink.write(`event: job\ndata: ${JSON.stringify({ jobId: tail.jobId, status: tail.status })}\n\n`);
      }
      return wait;
    });
  }

  private async agentIdOf(hostname: string): Promise<string | undefined> {
    return (await this.deps.db.select({ id: agents.id }).from(agents).where(eq(agents.hostname, hostname)))[0]?.id;
  }

  /**
   * The loop every stream runs: `step` sends what is due and answers how long until it must run
   * again (null: the stream is over). Pings fill silences; listeners go when the client does.
   */
  private serve(stops: Array<() => void>, wakeup: Wakeup, step: (sink: SseSink, stopped: () => boolean) => Promise<number | null>) {
    return async (sink: SseSink) => {
      this.open++;
      let lastWrite = performance.now();
      const tracked: SseSink = {
        write: (chunk) => {
          lastWrite = performance.now();
          return sink.write(chunk);
        },
        onAbort: (fn) => sink.onAbort(fn),
        get aborted() {
          return sink.aborted;
        },
      };
      sink.onAbort(wakeup.notify);
      const stopped = () => sink.aborted;
      try {
        await sink.write(`retry: 2000\n\n`);
        for (;;) {
          if (stopped()) return;
          const due = await step(tracked, stopped);
          if (due === null || stopped()) return;
          const sincePing = performance.now() - lastWrite;
          if (sincePing >= this.options.pingMs) {
            await tracked.write(": ping\n\n");
            continue;
          }
          await wakeup.wait(Math.min(due, this.options.pingMs - sincePing));
        }
      } finally {
        this.open--;
        for (const stop of stops) stop();
      }
    };
  }
}
