import type { Db } from "../db/client";
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
  body: string;
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
  private readonly insertPending;
  private readonly insertAnswer;
  private readonly select;
  private readonly finish;
  private readonly remove;

  constructor(
    private readonly db: Db,
    private readonly clock: () => number,
    /** seals answers that carry a credential (a new API token, an agent's JWT) */
    private readonly sealer: Sealer,
  ) {
    const sqlite = db.$client;
    this.insertPending = sqlite.prepare(
      "INSERT INTO idempotency_keys (key, principal, route, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, 0, '', ?) ON CONFLICT DO NOTHING",
    );
    this.insertAnswer = sqlite.prepare(
      "INSERT INTO idempotency_keys (key, principal, route, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    this.select = sqlite.prepare(
      "SELECT request_hash AS requestHash, status, body FROM idempotency_keys WHERE principal = ? AND key = ?",
    );
    this.finish = sqlite.prepare("UPDATE idempotency_keys SET status = ?, body = ? WHERE principal = ? AND key = ? AND status = 0");
    this.remove = sqlite.prepare("DELETE FROM idempotency_keys WHERE principal = ? AND key = ? AND status = 0");
  }

  async lookup(c: IdempotencyClaim): Promise<StoredAnswer | undefined> {
    return this.select.get(c.principal, c.key) as StoredAnswer | undefined;
  }

  /** Takes the key for this request; throws IdempotencyKeyTaken when another request has it. */
  async take(c: IdempotencyClaim): Promise<void> {
    if (this.insertPending.run(c.key, c.principal, c.route, c.requestHash, this.clock()).changes === 0) throw new IdempotencyKeyTaken();
  }

  /** Stores the answer of the request that took the key. */
  async complete(c: IdempotencyClaim, status: number, body: string): Promise<void> {
    this.finish.run(status, body, c.principal, c.key);
  }

  /** Stores an answer for a key nobody took (a refusal that created nothing); false when the key is taken. */
  async record(c: IdempotencyClaim, status: number, body: string): Promise<boolean> {
    return this.insertAnswer.run(c.key, c.principal, c.route, c.requestHash, status, body, this.clock()).changes > 0;
  }

  /** Frees a key whose request failed without an answer worth replaying. */
  async release(c: IdempotencyClaim): Promise<void> {
    this.remove.run(c.principal, c.key);
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
    return this.db.$client
      .prepare("DELETE FROM idempotency_keys WHERE created_at < ? OR (status = 0 AND created_at < ?)")
      .run(now - KEEP_MS, now - ABANDONED_MS).changes;
  }
}
