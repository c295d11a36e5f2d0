import { randomBytes } from "node:crypto";
import { and, desc, eq, isNull, or, sql } from "drizzle-orm";
import { joinTokens } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import { newId } from "../lib/ids";
import { hashToken } from "./auth";
import { type Deps, iso } from "./deps";

type Row = typeof joinTokens.$inferSelect;
const PREFIX = "djt_";

const toWire = (row: Row) => ({
  id: row.id,
  hostname: row.hostname,
  singleUse: row.singleUse,
  createdAt: iso(row.createdAt)!,
  expiresAt: iso(row.expiresAt)!,
  usedAt: iso(row.usedAt),
  usedBy: row.usedBy,
  revokedAt: iso(row.revokedAt),
});

/**
 * Join tokens an admin creates (`deploybot agents join-token`): for one host name or any new
 * one, single-use by default, expiring. Stored hashed; the token is shown once.
 */
export class JoinTokens {
  constructor(private readonly deps: Deps) {}

  async create(input: { hostname?: string; singleUse: boolean; ttlSeconds: number; createdBy: string }) {
    const token = `${PREFIX}${randomBytes(32).toString("base64url")}`;
    const now = this.deps.clock();
    const row = (await this.deps.db
      .insert(joinTokens)
      .values({
        id: newId("jtk"),
        hash: hashToken(token),
        hostname: input.hostname ?? null,
        singleUse: input.singleUse,
        createdBy: input.createdBy,
        createdAt: now,
        expiresAt: now + input.ttlSeconds * 1000,
      })
      .returning())[0]!;
    this.deps.logger.info({ joinTokenId: row.id, hostname: row.hostname, singleUse: row.singleUse }, "join token created");
    return { ...toWire(row), token };
  }

  async list() {
    return (await this.deps.db.select().from(joinTokens).orderBy(desc(joinTokens.id))).map(toWire);
  }

  async revoke(id: string) {
    const row = (await this.deps.db
      .update(joinTokens)
      .set({ revokedAt: sql`coalesce(${joinTokens.revokedAt}, ${this.deps.clock()})` })
      .where(eq(joinTokens.id, id))
      .returning())[0];
    if (!row) throw notFound("join token", id);
    return toWire(row);
  }

  /** Whether any usable join token exists (registration is open through them). */
  async any(): Promise<boolean> {
    return !!(await this.deps.db
      .select({ id: joinTokens.id })
      .from(joinTokens)
      .where(and(isNull(joinTokens.revokedAt), isNull(joinTokens.usedAt), sql`${joinTokens.expiresAt} > ${this.deps.clock()}`)))[0];
  }

  /** A usable token's grant, or null. Nothing is consumed here: `consume` does it with the registration. */
  async check(token: string): Promise<{ id: string; hostname: string | null } | null> {
    if (!token.startsWith(PREFIX)) return null;
    const row = (await this.deps.db.select().from(joinTokens).where(eq(joinTokens.hash, hashToken(token))))[0];
    if (!row || row.revokedAt || (row.singleUse && row.usedAt) || row.expiresAt <= this.deps.clock()) return null;
    return { id: row.id, hostname: row.hostname };
  }

  /** Marks a token used by `hostname`; a single-use token is taken by exactly one registration. */
  async consume(id: string, hostname: string): Promise<void> {
    const now = this.deps.clock();
    const done = await this.deps.db
      .update(joinTokens)
      .set({ usedAt: now, usedBy: hostname })
      .where(and(eq(joinTokens.id, id), or(eq(joinTokens.singleUse, false), isNull(joinTokens.usedAt))))
      .returning({ id: joinTokens.id });
    if (done.length === 0) throw new ApiError(401, "unauthorized", "this join token was already used");
  }
}
