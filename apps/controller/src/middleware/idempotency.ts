import { createHash } from "node:crypto";
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { ApiError } from "../lib/errors";
import { type IdempotencyClaim, type IdempotencyHandle, type IdempotencyKeys, IdempotencyKeyTaken, KEEPALIVE_MS, type StoredAnswer } from "../services/idempotency";

export type { IdempotencyHandle };
import type { AppEnv } from "./auth";

/** An answer rebuilt from what a committed request made (`IdempotencyHandle.made`). */
export type Replay = (ref: never) => Promise<{ status: number; body: unknown }>;

const WAIT_MS = 10_000;
const POLL_MS = 20;
/**
 * How long a retry waits for the first request's own answer before it answers from what that
 * request made. The work and the key commit together and the answer is stored just after, so a
 * key still without an answer after this long belongs to a process that died in between (kill -9).
 */
const MADE_GRACE_MS = 1_000;
/** `answered()`: the key's request died before it made anything, and this retry freed the key to run it */
const TAKEN_OVER = Symbol("taken over");

/**
 * `Idempotency-Key` on a user POST: the first answer below 500 is stored and replayed for a
 * retry of the same request; the same key with a different request is refused (422).
 * `inTransaction`: the handler passes `c.get("idempotency")` to the service, which takes the key
 * in the transaction that creates the row — the work and the key commit together. Otherwise the
 * key is taken before the handler runs. Either way, of concurrent requests with one key one
 * runs and the others wait for its answer (409 if it takes longer than 10 s).
 * `inTransaction.replay`: rebuilds the answer from what the service recorded with `made`,
 * for a retry whose first request committed but died before its answer was stored.
 * `sealed`: the answer carries a credential (a new token), so it is stored encrypted.
 * `principal`: whose key it is, when not an API token's (default: the token id).
 */
export function idempotency(
  keys: IdempotencyKeys,
  opts: { inTransaction?: { replay: Replay }; sealed?: boolean; principal?: (c: Context<AppEnv>) => string } = {},
) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const key = c.req.header("idempotency-key");
    if (c.req.method !== "POST" || !key) return next();
    if (key.length > 200) throw new ApiError(400, "invalid_idempotency_key", "Idempotency-Key is longer than 200 characters");
    const route = `${c.req.method} ${c.req.path}`;
    const claim: IdempotencyClaim = {
      principal: opts.principal?.(c) ?? c.get("user")?.tokenId ?? "anonymous",
      key,
      route,
      requestHash: createHash("sha256").update(route).update("\0").update(await c.req.text()).digest("hex"),
    };
    const replay = (stored: StoredAnswer) => {
      if (stored.requestHash !== claim.requestHash) {
        throw new ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for a different request");
      }
      return c.body(opts.sealed && stored.body ? keys.open(claim, stored.body) : stored.body, stored.status as 200, { "content-type": "application/json", "idempotent-replayed": "true" });
    };
    const stillAnswering = () => new ApiError(409, "idempotency_key_in_use", "a request with this Idempotency-Key is still being answered; retry later");
    const answered = async (): Promise<Response | typeof TAKEN_OVER> => {
      for (const start = Date.now(); ; ) {
        const stored = await keys.lookup(claim);
        if (stored && stored.status > 0) return replay(stored);
        if (stored && stored.requestHash !== claim.requestHash) return replay(stored);
        if (stored && keys.abandoned(stored) && (await keys.takeOver(claim))) return TAKEN_OVER;
        if (stored?.body && opts.inTransaction && Date.now() - start >= MADE_GRACE_MS) {
          const { status, body } = await opts.inTransaction.replay(JSON.parse(stored.body) as never);
          const text = JSON.stringify(body);
          await keys.complete(claim, status, text);
          return c.body(text, status as 200, { "content-type": "application/json", "idempotent-replayed": "true" });
        }
        if (!stored || Date.now() - start > WAIT_MS) break;
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
      throw stillAnswering();
    };

    let taken = false;
    const handle: IdempotencyHandle = {
      take: async () => {
        await keys.take(claim);
        taken = true;
      },
      made: (ref) => keys.made(claim, JSON.stringify(ref)),
    };
    // Answered already, being answered (wait for it), or ours to run: taken here, or (inTransaction)
    // in the handler's transaction. A key freed from a dead request is taken again like a new one.
    for (let tries = 0; !taken; tries++) {
      if (tries === 3) throw stillAnswering();
      if (await keys.lookup(claim)) {
        const answer = await answered();
        if (answer !== TAKEN_OVER) return answer;
      }
      if (opts.inTransaction) break;
      try {
        await handle.take();
      } catch (err) {
        // taken by a request that looked it up at the same moment: wait for its answer
        if (!(err instanceof IdempotencyKeyTaken)) throw err;
      }
    }
    c.set("idempotency", handle);
    // a key taken before the handler is renewed while it runs, or a retry would take it over
    const renew = taken ? setInterval(() => void keys.keepAlive(claim).catch(() => undefined), KEEPALIVE_MS) : undefined;
    try {
      await next();
    } catch (err) {
      if (taken) await keys.release(claim);
      throw err;
    } finally {
      clearInterval(renew);
    }
    // A concurrent request took the key first: its transaction committed, ours rolled back.
    // (After next() the answer is replaced by assigning c.res: a returned one would be ignored.)
    if (c.error instanceof IdempotencyKeyTaken) {
      const answer = await answered();
      if (answer === TAKEN_OVER) throw stillAnswering();
      c.res = answer;
      return;
    }
    const status = c.res.status;
    const text = status < 500 ? await c.res.clone().text() : "";
    const body = opts.sealed && text ? keys.seal(claim, text) : text;
    if (taken && status < 500) await keys.complete(claim, status, body);
    else if (taken) await keys.release(claim);
    else if (status < 500 && !(await keys.record(claim, status, body))) {
      const answer = await answered();
      if (answer === TAKEN_OVER) throw stillAnswering();
      c.res = answer;
    }
  });
}

/**
 * The presented credential itself as the principal (a join token or an agent's token): for a
 * route whose key is looked up before its guard, so a retry of a registration whose single-use
 * join token is now spent still gets its answer, and only from the holder of that credential.
 */
export const credentialPrincipal = (c: Context<AppEnv>) =>
  `credential:${createHash("sha256").update(c.req.header("authorization") ?? "").digest("hex")}`;
