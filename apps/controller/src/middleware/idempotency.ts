import { createHash } from "node:crypto";
import { and, eq, lt } from "drizzle-orm";
import { createMiddleware } from "hono/factory";
import type { Db } from "../db/client";
import { idempotencyKeys } from "../db/schema";
import { ApiError } from "../lib/errors";
import type { AppEnv } from "./auth";

const KEEP_MS = 24 * 3600 * 1000;

/**
 * `Idempotency-Key` on any user POST: the first answer (below 500) is stored and replayed for a
 * retry of the same request; the same key with a different request is refused.
 */
export function idempotency(db: Db, clock: () => number) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const key = c.req.header("idempotency-key");
    if (c.req.method !== "POST" || !key) return next();
    if (key.length > 200) throw new ApiError(400, "invalid_idempotency_key", "Idempotency-Key is longer than 200 characters");
    const principal = c.get("user")?.tokenId ?? "anonymous";
    const route = `${c.req.method} ${c.req.path}`;
    const requestHash = createHash("sha256").update(route).update("\0").update(await c.req.text()).digest("hex");
    const where = and(eq(idempotencyKeys.principal, principal), eq(idempotencyKeys.key, key));
    const stored = db.select().from(idempotencyKeys).where(where).get();
    if (stored) {
      if (stored.requestHash !== requestHash) {
        throw new ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for a different request");
      }
      return c.body(stored.body, stored.status as 200, { "content-type": "application/json", "idempotent-replayed": "true" });
    }
    await next();
    if (c.res.status >= 500) return;
    const now = clock();
    db.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, now - KEEP_MS)).run();
    db.insert(idempotencyKeys)
      .values({ key, principal, route, requestHash, status: c.res.status, body: await c.res.clone().text(), createdAt: now })
      .onConflictDoNothing()
      .run();
  });
}
