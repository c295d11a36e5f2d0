import { and, eq, lt, or } from "drizzle-orm";
import type { Db } from "../db/client";
import { idempotencyKeys } from "../db/schema";
import type { Sealer } from "./sealer";

/** A keyed request: who sent it, the key, and what it was (route + body hash). */
export interface IdempotencyClaim {
  principal: string;
  key: string;
  route: string;
  requestHash: string;
}

export interface StoredAnswer {
  requestHash: string;
  /** 0 while the first request is still being answered */
  status: number;
  /** the answer; while status is 0, what the request made (see `made`), or "" */
  body: string;
}

/** What a handler hands to the service whose transaction creates the request's rows. */
export interface IdempotencyHandle {
  /** call (and await) inside that transaction, before its writes */
  take(): Promise<void>;
  /** call (and await) in the same transaction, once it knows what it made: the route's `replay` answers from it */
  made(ref: unknown): Promise<void>;
}

/** Thrown by `take` inside a transaction when another request holds the key: the transaction rolls back. */
export class IdempotencyKeyTaken extends Error {
  constructor() {
    super("another request with this Idempotency-Key is being answered");
  }
}

/** Answers are replayed for a day; a request that never finished (the process died) frees its key after 10 minutes. */
export const KEEP_MS = 24 * 3600 * 1000;
export const ABANDONED_MS = 10 * 60 * 1000;

/**
 * `Idempotency-Key`s. The database decides who runs: `take` inserts the key (unique per
 * principal) inside the transaction that creates what the request creates, so of concurrent
 * requests with one key exactly one commits its work; the others wait for its answer.
 */
export class IdempotencyKeys {
  constructor(
    private readonly db: Db,
    private readonly clock: () => number,
    /** seals answers that carry a credential (a new API token, an agent's JWT) */
    private readonly sealer: Sealer,
  ) {}

  private where(c: IdempotencyClaim, pending = false) {
    return and(eq(idempotencyKeys.principal, c.principal), eq(idempotencyKeys.key, c.key), pending ? eq(idempotencyKeys.status, 0) : undefined);
  }

  /** Inserts the key unless it exists; true when this call inserted it. */
  private async insert(c: IdempotencyClaim, status: number, body: string): Promise<boolean> {
    const row = { key: c.key, principal: c.principal, route: c.route, requestHash: c.requestHash, status, body, createdAt: this.clock() };
    const inserted = await this.db.insert(idempotencyKeys).values(row).onConflictDoNothing().returning({ key: idempotencyKeys.key });
    return inserted.length > 0;
  }

  async lookup(c: IdempotencyClaim): Promise<StoredAnswer | undefined> {
    const [row] = await this.db
      .select({ requestHash: idempotencyKeys.requestHash, status: idempotencyKeys.status, body: idempotencyKeys.body })
      .from(idempotencyKeys)
      .where(this.where(c));
    return row;
  }

  /** Takes the key for this request; throws IdempotencyKeyTaken when another request has it. */
  async take(c: IdempotencyClaim): Promise<void> {
    if (!(await this.insert(c, 0, ""))) throw new IdempotencyKeyTaken();
  }

  /**
   * Inside the transaction that took the key: what the request made (JSON), so a retry can be
   * answered from it if the process dies between that commit and storing the answer.
   */
  async made(c: IdempotencyClaim, ref: string): Promise<void> {
    await this.db.update(idempotencyKeys).set({ body: ref }).where(this.where(c, true));
  }

  /** Stores the answer of the request that took the key. */
  async complete(c: IdempotencyClaim, status: number, body: string): Promise<void> {
    await this.db.update(idempotencyKeys).set({ status, body }).where(this.where(c, true));
  }

  /** Stores an answer for a key nobody took (a refusal that created nothing); false when the key is taken. */
  async record(c: IdempotencyClaim, status: number, body: string): Promise<boolean> {
    return this.insert(c, status, body);
  }

  /** Frees a key whose request failed without an answer worth replaying. */
  async release(c: IdempotencyClaim): Promise<void> {
    await this.db.delete(idempotencyKeys).where(this.where(c, true));
  }

  /** An answer that carries a credential is stored sealed, bound to its principal and key. */
  seal(c: IdempotencyClaim, body: string): string {
    return this.sealer.seal(body, `${c.principal}\0${c.key}`);
  }

  open(c: IdempotencyClaim, sealed: string): string {
    return this.sealer.open(sealed, `${c.principal}\0${c.key}`);
  }

  /** Periodic, not per request: answers older than a day, keys of requests that never finished. */
  async sweep(): Promise<number> {
    const now = this.clock();
    const gone = await this.db
      .delete(idempotencyKeys)
      .where(or(lt(idempotencyKeys.createdAt, now - KEEP_MS), and(eq(idempotencyKeys.status, 0), lt(idempotencyKeys.createdAt, now - ABANDONED_MS))))
      .returning({ key: idempotencyKeys.key });
    return gone.length;
  }
}
