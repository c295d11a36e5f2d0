import type { EventData, EventType } from "@deploybot/protocol";
import { and, eq, gt, lt, lte, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/client";
import { LOCKS, OUTBOX_CHANNEL } from "../db/pg";
import { outbox, outboxCursors } from "../db/schema";

/** One committed change, as stored: `data` is the type's schema from packages/protocol (events.ts). */
export interface OutboxEvent<D = Record<string, unknown>> {
  id: number;
  type: string;
  app: string | null;
  subject: string | null;
  data: D;
  createdAt: number;
}

type RawEvent = { id: number; type: string; app: string | null; subject: string | null; data: string; created_at: number };

const toEvent = (r: RawEvent): OutboxEvent => ({
  id: r.id,
  type: r.type,
  app: r.app,
  subject: r.subject,
  data: JSON.parse(r.data) as Record<string, unknown>,
  createdAt: r.created_at,
});

type About = { app: string | null; subject: string | null };

/** `job.changed` events kept for readers at most (SqliteOutbox.fresh) */
const FRESH_MAX = 10_000;

/**
 * The outbox: every change appends one row in the transaction that makes the change, so a
 * change and its event commit together or not at all. Readers (the drainer, `GET /v1/events`)
 * follow it by id. Listeners hear of new rows after the appending transaction committed.
 * One interface for both engines (`openOutbox`); each engine has its own statements.
 */
export abstract class Outbox {
  private readonly listeners = new Set<() => void>();
  private scheduled = false;

  /** Appends a typed event; call it (awaited) inside the transaction that makes the change. */
  append<T extends EventType>(type: T, about: About, data: EventData<T>): Promise<number>;
  /** Appends an event of a type a feature registers itself (see README, "Adding an event type"). */
  append(type: string, about: About, data: Record<string, unknown>): Promise<number>;
  append(type: string, about: About, data: unknown): Promise<number> {
    return this.write(type, about, data);
  }

  /**
   * The synchronous append, for SQLite's own synchronous transactions (JobState, group commit):
   * the row is written before it returns. SQLite only.
   */
  appendNow(_type: string, _about: About, _data: unknown): number {
    throw new Error("a synchronous outbox append exists on SQLite only");
  }

  /**
   * How many rows this process has appended, where every append goes through this object
   * (SQLite, one controller); null where rows are also appended elsewhere (PostgreSQL: other
   * controllers, and PgJobState's own statements). A reader that saw it unchanged across a read
   * knows a second read now would find nothing new; the listeners still hear of later rows.
   */
  appendCount(): number | null {
    return null;
  }

  protected abstract write(type: string, about: About, data: unknown): Promise<number>;
  abstract after(id: number, limit: number): Promise<OutboxEvent[]>;
  abstract get(id: number): Promise<OutboxEvent | undefined>;
  abstract latestId(): Promise<number>;
  abstract oldestId(): Promise<number | null>;
  abstract cursor(name: string): Promise<number>;
  abstract setCursor(name: string, lastId: number): Promise<void>;
  /**
   * Deletes rows older than `retentionMs` that every reader has applied (ids up to `appliedUpTo`)
   * and that no pending retry needs. The newest row always stays, so ids never restart.
   */
  abstract prune(retentionMs: number, appliedUpTo: number): Promise<number>;

  /** Called after rows were appended (and committed); returns the unsubscribe. */
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Rows were appended elsewhere (another controller on the same database): tell the listeners as for our own. */
  appended(): void {
    this.schedule();
  }

  protected schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    // One wake-up per turn of the event loop however many rows were appended in it: under
    // load the drainer then applies many rows in one transaction.
    setImmediate(() => {
      this.scheduled = false;
      for (const l of this.listeners) l();
    });
  }
}

/** The outbox of the database `db` (either engine). */
export function openOutbox(db: Db, clock: () => number): Outbox {
  return db.engine === "sqlite" ? new SqliteOutbox(db, clock) : new PgOutbox(db, clock);
}

/**
 * SQLite: statements prepared once on the one connection. A transaction there ends within the
 * turn it began in, so listeners scheduled for the next turn run after its COMMIT.
 */
export class SqliteOutbox extends Outbox {
  private appends = 0;
  /**
   * `job.changed` events this process appended, by id, until a cursor passes them: a reader of
   * committed rows takes their data from here instead of parsing it again. Only that type: its
   * data is jobEvent()'s, a new object of JSON values (strings, numbers, booleans, null, a string
   * array), equal to what parsing the stored text gives; nothing holds it after the append.
   * A rolled-back append leaves an entry whose id is either never committed (never read) or
   * drawn again by this process's next append, which replaces it; a row that does not match its
   * entry (type, app, subject, time) is read whole.
   */
  private readonly fresh = new Map<number, OutboxEvent>();
  private readonly insert;
  private readonly readAfter;
  private readonly readHeads;
  private readonly readOne;
  private readonly maxId;
  private readonly minId;
  private readonly cursorGet;
  private readonly cursorSet;
  private readonly pruneRows;

  constructor(
    db: Db,
    private readonly clock: () => number,
  ) {
    super();
    const sqlite = db.$client;
    this.insert = sqlite.prepare("INSERT INTO outbox (type, app, subject, data, created_at) VALUES (?, ?, ?, ?, ?)");
    this.readAfter = sqlite.prepare("SELECT * FROM outbox WHERE id > ? ORDER BY id LIMIT ?");
    this.readHeads = sqlite.prepare("SELECT id, type, app, subject, created_at FROM outbox WHERE id > ? ORDER BY id LIMIT ?").raw();
    this.readOne = sqlite.prepare("SELECT * FROM outbox WHERE id = ?");
    this.maxId = sqlite.prepare("SELECT coalesce(max(id), 0) FROM outbox").pluck();
    this.minId = sqlite.prepare("SELECT min(id) FROM outbox").pluck();
    this.cursorGet = sqlite.prepare("SELECT last_id FROM outbox_cursors WHERE name = ?").pluck();
    this.cursorSet = sqlite.prepare(
      "INSERT INTO outbox_cursors (name, last_id, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at",
    );
    this.pruneRows = sqlite.prepare(
      `DELETE FROM outbox WHERE id <= ? AND created_at < ? AND id < (SELECT max(id) FROM outbox)
         AND id < coalesce((SELECT min(event_id) FROM outbox_retries), 9007199254740991)`,
    );
  }

  override appendNow(type: string, about: About, data: unknown): number {
    const createdAt = this.clock();
    const id = Number(this.insert.run(type, about.app, about.subject, JSON.stringify(data), createdAt).lastInsertRowid);
    if (type === "job.changed") {
      // bounded when nothing reads (consequences paused): forgetting only costs a parse
      if (this.fresh.size >= FRESH_MAX) this.fresh.clear();
      this.fresh.set(id, { id, type, app: about.app, subject: about.subject, data: data as Record<string, unknown>, createdAt });
    }
    this.appends++;
    this.schedule();
    return id;
  }

  override appendCount(): number {
    return this.appends;
  }

  protected async write(type: string, about: About, data: unknown): Promise<number> {
    return this.appendNow(type, about, data);
  }

  async after(id: number, limit: number): Promise<OutboxEvent[]> {
    if (this.fresh.size > 0) {
      // Rows this process appended come back without their data text: copying it out and
      // parsing it cost 2.9-3.7 µs a row against 0.8-1.2 µs from here (200-row reads, CPU), two
      // rows per job; the drainer's outbox read fell from 6.0% to 2.9% of an in-process
      // claim+finish cycle's profile (pnpm bench:jobs:profile). pnpm bench:jobs against the code
      // before, 7 passes: 1.01x / 1.04x / 0.94x (heartbeat 1 agent / 64 agents / calls 1 caller),
      // within its ±15% per-pass spread.
      const heads = this.readHeads.all(id, limit) as Array<[number, string, string | null, string | null, number]>;
      const events: OutboxEvent[] = [];
      for (const [rowId, type, app, subject, createdAt] of heads) {
        const e = this.fresh.get(rowId);
        if (!e || e.type !== type || e.app !== app || e.subject !== subject || e.createdAt !== createdAt) break;
        events.push(e);
      }
      if (events.length === heads.length) return events;
    }
    return (this.readAfter.all(id, limit) as RawEvent[]).map(toEvent);
  }

  async get(id: number): Promise<OutboxEvent | undefined> {
    const row = this.readOne.get(id) as RawEvent | undefined;
    return row ? toEvent(row) : undefined;
  }

  async latestId(): Promise<number> {
    return this.maxId.get() as number;
  }

  async oldestId(): Promise<number | null> {
    return (this.minId.get() as number | null) ?? null;
  }

  async cursor(name: string): Promise<number> {
    return (this.cursorGet.get(name) as number | undefined) ?? 0;
  }

  async setCursor(name: string, lastId: number): Promise<void> {
    this.cursorSet.run(name, lastId, this.clock());
    // ids come in increasing order: what the cursor passed is at the front
    for (const key of this.fresh.keys()) {
      if (key > lastId) break;
      this.fresh.delete(key);
    }
  }

  async prune(retentionMs: number, appliedUpTo: number): Promise<number> {
    return this.pruneRows.run(appliedUpTo, this.clock() - retentionMs).changes;
  }
}

/**
 * PostgreSQL: statements through `db`, which runs them on the open transaction's connection
 * inside a `write` body (pgFacade.ts).
 *
 * Every reader follows the outbox by id (the drainer, event streams, PgOutboxFollower), but
 * sequence ids do not commit in id order across transactions: the append first takes the
 * transaction-scoped outbox lock (held until COMMIT), so a row becomes visible only after every
 * row with a smaller id — the same lock PgJobState's transitions take (appendOutbox). The
 * NOTIFY in the same statement reaches every controller's listener at commit, and never for a
 * rolled-back change. Local listeners run once the transaction committed (`afterCommit`).
 * The lock serializes appending transactions from their first append to their commit: a
 * transaction should append late (row locks taken after it wait behind every other appender).
 */
export class PgOutbox extends Outbox {
  constructor(
    private readonly db: Db,
    private readonly clock: () => number,
  ) {
    super();
  }

  protected async write(type: string, about: About, data: unknown): Promise<number> {
    // a raw statement on the body's connection (drizzle's PostgreSQL `execute`, routed like the builders)
    const rows = (await (this.db as unknown as { execute(q: SQL): Promise<unknown> }).execute(sql`
      INSERT INTO outbox (type, app, subject, data, created_at)
      SELECT ${type}::text, ${about.app}::text, ${about.subject}::text, ${JSON.stringify(data)}::text, ${this.clock()}::bigint
      FROM (SELECT pg_advisory_xact_lock(${LOCKS.outbox}::bigint)) turn
      RETURNING id, pg_notify(${OUTBOX_CHANNEL}::text, id::text)`)) as unknown as Array<{ id: number }>;
    this.db.afterCommit(() => this.schedule());
    return Number(rows[0]!.id);
  }

  async after(id: number, limit: number): Promise<OutboxEvent[]> {
    const rows = await this.db.select().from(outbox).where(gt(outbox.id, id)).orderBy(outbox.id).limit(limit);
    return rows.map(fromRow);
  }

  async get(id: number): Promise<OutboxEvent | undefined> {
    const [row] = await this.db.select().from(outbox).where(eq(outbox.id, id));
    return row ? fromRow(row) : undefined;
  }

  async latestId(): Promise<number> {
    const [row] = await this.db.select({ id: sql<number>`coalesce(max(${outbox.id}), 0)`.mapWith(Number) }).from(outbox);
    return row?.id ?? 0;
  }

  async oldestId(): Promise<number | null> {
    const [row] = await this.db.select({ id: sql<number | null>`min(${outbox.id})` }).from(outbox);
    return row?.id == null ? null : Number(row.id);
  }

  async cursor(name: string): Promise<number> {
    const [row] = await this.db.select({ lastId: outboxCursors.lastId }).from(outboxCursors).where(eq(outboxCursors.name, name));
    return row?.lastId ?? 0;
  }

  async setCursor(name: string, lastId: number): Promise<void> {
    const now = this.clock();
    await this.db
      .insert(outboxCursors)
      .values({ name, lastId, updatedAt: now })
      .onConflictDoUpdate({ target: outboxCursors.name, set: { lastId, updatedAt: now } });
  }

  async prune(retentionMs: number, appliedUpTo: number): Promise<number> {
    const gone = await this.db
      .delete(outbox)
      .where(
        and(
          lte(outbox.id, appliedUpTo),
          lt(outbox.createdAt, this.clock() - retentionMs),
          sql`${outbox.id} < (SELECT max(id) FROM outbox)`,
          sql`${outbox.id} < coalesce((SELECT min(event_id) FROM outbox_retries), 9007199254740991)`,
        ),
      )
      .returning({ id: outbox.id });
    return gone.length;
  }
}

const fromRow = (r: typeof outbox.$inferSelect): OutboxEvent => ({
  id: Number(r.id),
  type: r.type,
  app: r.app,
  subject: r.subject,
  data: JSON.parse(r.data) as Record<string, unknown>,
  createdAt: r.createdAt,
});
