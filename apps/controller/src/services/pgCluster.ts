import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { connectPg, type PgSql } from "../db/pg";
import type { JobEvents, StoredLogLine } from "./events";
import type { OutboxEvent } from "./outbox";
import { OUTBOX_CHANNEL } from "./pgJobState";

/** Whether this process is the one that does a singleton's work now. */
export interface Leadership {
  /** True while this process holds it; tries to take it when not. */
  holds(): Promise<boolean>;
  /** Gives it up, so another process takes it at once instead of at its next try. */
  release(): Promise<void>;
}

/** The embedded engine: one controller, so it always leads. */
export const soleLeadership: Leadership = { holds: async () => true, release: async () => {} };

/**
 * One controller at a time does a singleton's work (drainer, reaper, scheduler, housekeeping):
 * the one holding the session-level advisory lock `key`, on a connection kept for locks alone.
 * When that controller dies, even by kill -9, its connection closes, PostgreSQL ends the session
 * and frees the lock, and the next `holds()` of another controller takes it (each calls it every
 * tick, about once a second). A connection that dropped and came back is a new session without
 * the lock: the backend pid tells. That pass steps down without asking for the lock again, and
 * the next one asks: the controllers whose sessions held on get the lock first. Asking at once
 * let the one whose session had just failed win it back before any of them, when its reconnect
 * came first (a CI run of pg/singletons.test.ts saw it), and it kept the work without ever
 * hearing that it had lost it.
 * Several leaders may share one connection (`sql`); given a URL, the leader opens its own.
 */
export class PgLeader implements Leadership {
  private readonly sql: PgSql;
  private readonly ownsConnection: boolean;
  private pid: number | null = null;

  constructor(
    connection: string | PgSql,
    private readonly key: number,
    private readonly name: string,
    private readonly logger?: Logger,
  ) {
    this.ownsConnection = typeof connection === "string";
    this.sql = typeof connection === "string" ? connectPg(connection, { max: 1, name: `deploybot ${name}` }) : connection;
  }

  /** True while this process holds the lock; tries to take it when not. One round trip. */
  async holds(): Promise<boolean> {
    try {
      // held: still the session that took the lock; a new session of a holder: steps down first
      const [row] = await this.sql<{ pid: number; held: boolean }[]>`
        SELECT pg_backend_pid() AS pid,
          CASE WHEN pg_backend_pid() = ${this.pid ?? -1} THEN true WHEN ${this.pid !== null} THEN false ELSE pg_try_advisory_lock(${this.key}) END AS held`;
      const was = this.pid !== null;
      this.pid = row!.held ? row!.pid : null;
      if (this.pid !== null && !was) this.logger?.info({ singleton: this.name }, "took over singleton work");
      if (this.pid === null && was) this.logger?.warn({ singleton: this.name }, "lost singleton work (connection reset)");
      return this.pid !== null;
    } catch (err) {
      if (this.pid !== null) this.logger?.warn({ err, singleton: this.name }, "lost singleton work (database unreachable)");
      this.pid = null;
      return false;
    }
  }

  async release(): Promise<void> {
    if (this.pid === null) return;
    this.pid = null;
    await this.sql`SELECT pg_advisory_unlock(${this.key})`.catch(() => {});
  }

  /** Gives the work up; a leader with its own connection closes it (ending the session frees the lock). */
  async stop(): Promise<void> {
    if (!this.ownsConnection) return this.release();
    this.pid = null;
    await this.sql.end({ timeout: 5 });
  }
}

/**
 * Hears every controller's outbox appends: PostgreSQL delivers the NOTIFY of an append at its
 * commit to every listening session. A notification can be missed while the listening
 * connection reconnects, so listeners also run on a slow timer; what they do (read the outbox
 * after their cursor) is the same either way.
 */
export class PgOutboxListener {
  private readonly listeners = new Set<(id: number) => void>();
  private sql: PgSql | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    private readonly pollMs = 5_000,
  ) {}

  async start(): Promise<void> {
    this.sql = connectPg(this.url, { max: 1, name: "deploybot outbox listener" });
    await this.sql.listen(
      OUTBOX_CHANNEL,
      (payload) => this.fire(Number(payload)),
      () => this.fire(0), // (re)subscribed: something may have been missed meanwhile
    );
    this.timer = setInterval(() => this.fire(0), this.pollMs);
    this.timer.unref();
  }

  /** `listener(id)`: a row with this id committed (0: look anyway). Returns the unsubscribe. */
  onAppend(listener: (id: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private fire(id: number) {
    for (const l of this.listeners) l(id);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sql?.end({ timeout: 5 });
  }
}

/**
 * Follows the outbox from its newest row at start, for what every controller does with every
 * change (wake its own long-polls and log streams, drop a cached row): database consequences
 * are the drainer's, in one controller. Following by id is safe because appends become visible
 * in id order (appendOutbox).
 */
export class PgOutboxFollower {
  private cursor = 0;
  private running = false;
  private again = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly sql: PgSql,
    private readonly listener: PgOutboxListener,
    private readonly apply: (event: OutboxEvent) => void,
    private readonly logger?: Logger,
  ) {}

  async start(): Promise<void> {
    const [row] = await this.sql<{ id: number }[]>`SELECT coalesce(max(id), 0) AS id FROM outbox`;
    this.cursor = row!.id;
    this.unsubscribe = this.listener.onAppend((id) => {
      if (id === 0 || id > this.cursor) void this.pull();
    });
  }

  stop(): void {
    this.unsubscribe?.();
  }

  private async pull(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        for (;;) {
          const rows = await this.sql<RawEvent[]>`SELECT * FROM outbox WHERE id > ${this.cursor} ORDER BY id LIMIT 500`;
          for (const r of rows) {
            this.cursor = r.id;
            try {
              this.apply({ id: r.id, type: r.type, app: r.app, subject: r.subject, data: JSON.parse(r.data), createdAt: r.created_at });
            } catch (err) {
              this.logger?.error({ err, eventId: r.id }, "outbox signal failed");
            }
          }
          if (rows.length < 500) break;
        }
      } while (this.again);
    } catch (err) {
      this.logger?.warn({ err }, "reading the outbox failed; the next notification or poll tries again");
    } finally {
      this.running = false;
    }
  }
}

type RawEvent = { id: number; type: string; app: string | null; subject: string | null; data: string; created_at: number };

/** The channel on which controllers tell each other of appended log lines. */
export const LOGS_CHANNEL = "deploybot_logs";
/** PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more; longer batches send their seq range only. */
const MAX_PAYLOAD_BYTES = 7_900;

type LogNotice = { from: string; jobId: string; entries?: StoredLogLine[]; first?: number; last?: number };

/**
 * Live log streams across controllers: an agent uploads a job's lines to one controller, a viewer
 * may follow them on another. Lines a controller stored are announced with NOTIFY after their
 * commit (the lines themselves when they fit, else their seq range, which the others read from
 * job_logs), and every other controller hands them to its own streams as if appended there.
 * A missed notice costs latency, not lines: a stream reads what it lacks from the database.
 */
export class PgLogRelay {
  /** tells this process's own notices apart */
  private readonly self = randomUUID();
  private relaying = false;
  private stopLocal: (() => void) | undefined;
  private subscription: { unlisten(): Promise<void> } | undefined;

  constructor(
    private readonly sql: PgSql,
    private readonly events: JobEvents,
    private readonly logger?: Logger,
  ) {}

  async start(): Promise<void> {
    this.stopLocal = this.events.onLogs((jobId, entries) => {
      if (!this.relaying) void this.announce(jobId, entries);
    });
    this.subscription = await this.sql.listen(LOGS_CHANNEL, (payload) => void this.receive(payload));
  }

  async stop(): Promise<void> {
    this.stopLocal?.();
    await this.subscription?.unlisten().catch(() => {});
  }

  private async announce(jobId: string, entries: StoredLogLine[]): Promise<void> {
    let payload = JSON.stringify({ from: this.self, jobId, entries } satisfies LogNotice);
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      payload = JSON.stringify({ from: this.self, jobId, first: entries[0]!.seq, last: entries[entries.length - 1]!.seq } satisfies LogNotice);
    }
    try {
      await this.sql`SELECT pg_notify(${LOGS_CHANNEL}, ${payload})`;
    } catch (err) {
      this.logger?.warn({ err, jobId }, "announcing log lines to the other controllers failed");
    }
  }

  private async receive(payload: string): Promise<void> {
    try {
      const notice = JSON.parse(payload) as LogNotice;
      if (notice.from === this.self) return;
      const entries =
        notice.entries ??
        (await this.sql<StoredLogLine[]>`
          SELECT seq, ts, stream, line FROM job_logs WHERE job_id = ${notice.jobId} AND seq BETWEEN ${notice.first ?? 0} AND ${notice.last ?? -1} ORDER BY seq`);
      this.relaying = true;
      try {
        this.events.logsAppended(notice.jobId, [...entries]);
      } finally {
        this.relaying = false;
      }
    } catch (err) {
      this.logger?.warn({ err }, "relaying log lines from another controller failed");
    }
  }
}
