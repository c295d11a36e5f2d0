import { and, eq, isNull, lt, or } from "drizzle-orm";
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
  /** when the request that holds the key last said it still runs (ms) */
  aliveAt: number;
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
 * A key taken before its handler ran (status 0, nothing made) is renewed every KEEPALIVE_MS while
 * the request runs; one not renewed for IN_FLIGHT_LEASE_MS is abandoned (its process died: kill
 * -9, a crash, the machine) and the next retry takes it over and runs the request. Before, such a
 * key answered every retry with 409 until the 10-minute sweep: an agent whose registration was
 * in flight when its controller died could not join again for 10 minutes, nor could a CLI
 * call retried on another controller run.
 */
export const IN_FLIGHT_LEASE_MS = 30_000;
export const KEEPALIVE_MS = 10_000;

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
    const now = this.clock();
    const row = { key: c.key, principal: c.principal, route: c.route, requestHash: c.requestHash, status, body, createdAt: now, aliveAt: now };
    const inserted = await this.db.insert(idempotencyKeys).values(row).onConflictDoNothing().returning({ key: idempotencyKeys.key });
    return inserted.length > 0;
  }

  async lookup(c: IdempotencyClaim): Promise<StoredAnswer | undefined> {
    const [row] = await this.db
      .select({ requestHash: idempotencyKeys.requestHash, status: idempotencyKeys.status, body: idempotencyKeys.body, createdAt: idempotencyKeys.createdAt, aliveAt: idempotencyKeys.aliveAt })
      .from(idempotencyKeys)
      .where(this.where(c));
    return row && { requestHash: row.requestHash, status: row.status, body: row.body, aliveAt: row.aliveAt ?? row.createdAt };
  }

  /** A key taken before its handler ran whose request stopped renewing it: its process is gone. */
  abandoned(stored: StoredAnswer): boolean {
    return stored.status === 0 && stored.body === "" && stored.aliveAt < this.clock() - IN_FLIGHT_LEASE_MS;
  }

  /** The request holding the key still runs (called every KEEPALIVE_MS while it does). */
  async keepAlive(c: IdempotencyClaim): Promise<void> {
    await this.db.update(idempotencyKeys).set({ aliveAt: this.clock() }).where(and(this.where(c, true), eq(idempotencyKeys.body, "")));
  }

  /**
   * Frees an abandoned key (see `abandoned`) so the caller can take it; false when it is not
   * abandoned any more (renewed, answered, or freed and taken by another retry meanwhile).
   */
  async takeOver(c: IdempotencyClaim): Promise<boolean> {
    const gone = await this.db
      .delete(idempotencyKeys)
      .where(and(this.where(c, true), eq(idempotencyKeys.body, ""), this.notRenewedSince(this.clock() - IN_FLIGHT_LEASE_MS)))
      .returning({ key: idempotencyKeys.key });
    return gone.length > 0;
  }

  private notRenewedSince(when: number) {
    return or(lt(idempotencyKeys.aliveAt, when), and(isNull(idempotencyKeys.aliveAt), lt(idempotencyKeys.createdAt, when)));
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
      .where(
        or(
          lt(idempotencyKeys.createdAt, now - KEEP_MS),
          // made something (its work committed): kept for the retry that replays it, as long as before
          and(eq(idempotencyKeys.status, 0), lt(idempotencyKeys.createdAt, now - ABANDONED_MS)),
          and(eq(idempotencyKeys.status, 0), eq(idempotencyKeys.body, ""), this.notRenewedSince(now - IN_FLIGHT_LEASE_MS)),
        ),
      )
      .returning({ key: idempotencyKeys.key });
    return gone.length;
  }
}
