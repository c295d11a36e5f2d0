import type { EventData, EventType } from "@deploybot/protocol";
import type { Db } from "../db/client";

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

/**
 * The outbox: every change appends one row in the transaction that makes the change, so a
 * change and its event commit together or not at all. Readers (the drainer, `GET /v1/events`)
 * follow it by id. Listeners hear of new rows on the next turn of the event loop — after the
 * appending transaction committed, since transactions here are synchronous.
 */
export class Outbox {
  private readonly insert;
  private readonly readAfter;
  private readonly readOne;
  private readonly maxId;
  private readonly minId;
  private readonly cursorGet;
  private readonly cursorSet;
  private readonly listeners = new Set<() => void>();
  private scheduled = false;

  constructor(
    private readonly db: Db,
    private readonly clock: () => number,
  ) {
    const sqlite = db.$client;
    this.insert = sqlite.prepare("INSERT INTO outbox (type, app, subject, data, created_at) VALUES (?, ?, ?, ?, ?)");
    this.readAfter = sqlite.prepare("SELECT * FROM outbox WHERE id > ? ORDER BY id LIMIT ?");
    this.readOne = sqlite.prepare("SELECT * FROM outbox WHERE id = ?");
    this.maxId = sqlite.prepare("SELECT coalesce(max(id), 0) FROM outbox").pluck();
    this.minId = sqlite.prepare("SELECT min(id) FROM outbox").pluck();
    this.cursorGet = sqlite.prepare("SELECT last_id FROM outbox_cursors WHERE name = ?").pluck();
    this.cursorSet = sqlite.prepare(
      "INSERT INTO outbox_cursors (name, last_id, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at",
    );
  }

  /** Appends a typed event; call it inside the transaction that makes the change. */
  append<T extends EventType>(type: T, about: { app: string | null; subject: string | null }, data: EventData<T>): number;
  /** Appends an event of a type a feature registers itself (see README, "Adding an event type"). */
  append(type: string, about: { app: string | null; subject: string | null }, data: Record<string, unknown>): number;
  append(type: string, about: { app: string | null; subject: string | null }, data: unknown): number {
    const id = Number(this.insert.run(type, about.app, about.subject, JSON.stringify(data), this.clock()).lastInsertRowid);
    this.schedule();
    return id;
  }

  after(id: number, limit: number): OutboxEvent[] {
    return (this.readAfter.all(id, limit) as RawEvent[]).map(toEvent);
  }

  get(id: number): OutboxEvent | undefined {
    const row = this.readOne.get(id) as RawEvent | undefined;
    return row ? toEvent(row) : undefined;
  }

  latestId(): number {
    return this.maxId.get() as number;
  }

  oldestId(): number | null {
    return (this.minId.get() as number | null) ?? null;
  }

  cursor(name: string): number {
    return (this.cursorGet.get(name) as number | undefined) ?? 0;
  }

  setCursor(name: string, lastId: number): void {
    this.cursorSet.run(name, lastId, this.clock());
  }

  /**
   * Deletes rows older than `retentionMs` that every reader has applied (ids up to `appliedUpTo`)
   * and that no pending retry needs. The newest row always stays, so ids never restart.
   */
  prune(retentionMs: number, appliedUpTo: number): number {
    const cutoff = this.clock() - retentionMs;
    return this.db.$client
      .prepare(
        `DELETE FROM outbox WHERE id <= ? AND created_at < ? AND id < (SELECT max(id) FROM outbox)
           AND id < coalesce((SELECT min(event_id) FROM outbox_retries), 9007199254740991)`,
      )
      .run(appliedUpTo, cutoff).changes;
  }

  /** Called after rows were appended (and committed); returns the unsubscribe. */
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Rows were appended elsewhere (another controller on the same database): tell the listeners as for our own. */
  appended(): void {
    this.schedule();
  }

  private schedule() {
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
