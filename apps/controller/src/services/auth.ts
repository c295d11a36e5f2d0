import { createHash, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import type { TokenScope } from "@deploybot/protocol";
import { eq } from "drizzle-orm";
import { compactVerify, errors as joseErrors, jwtVerify, SignJWT } from "jose";
import type { Db } from "../db/client";
import { apiTokens } from "../db/schema";
import { type WatchedConnection, watchRows } from "../db/watch";
import { ApiError, notFound } from "../lib/errors";
import { newId } from "../lib/ids";

export type Principal =
  | { kind: "user"; tokenId: string; scope: TokenScope; apps: string[] | null }
  | { kind: "agent"; agentId: string; tokenVersion: number };

const sha256 = (value: string) => createHash("sha256").update(value).digest();
export const hashToken = (token: string) => sha256(token).toString("hex");

/** Constant-time comparison of two secrets of any length (compares their digests). */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** Derives independent keys for each use from the one configured secret. */
export function deriveKey(secret: string, purpose: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", secret, "deploybot", purpose, 32));
}

const scopeRank: Record<TokenScope, number> = { metrics: 0, read: 1, deploy: 2, admin: 3 };
export const scopeAllows = (have: TokenScope, need: TokenScope) => scopeRank[have] >= scopeRank[need];

// -------------------------------------------------------------------------------------------
// Agent JWTs
// -------------------------------------------------------------------------------------------

const ISSUER = "deploybot";
const AUDIENCE = "deploybot-agent";
const AGENT_TOKEN_TTL = "30d";

export type AgentTokenCheck = { ok: true; agentId: string; tokenVersion: number } | { ok: false; reason: string };

/** The identity columns of an agent's row that its token is checked against (AgentService.authenticate). */
export interface AgentIdentity {
  id: string;
  tokenVersion: number;
  revoked: boolean;
}

/** The statements that change an agent's identity columns, or the row itself, tell the cache (db/watch.ts). */
const IDENTITY_WATCH = { name: "agent_identity", table: "agents", key: "id", columns: ["id", "hostname", "labels", "version", "capabilities", "token_version", "revoked"] } as const;

export class AgentTokens {
  private readonly key: Uint8Array;
  /** verified tokens: HMAC verification is deterministic, so a token checked once need not be checked again before it expires */
  private readonly verified = new Map<string, { agentId: string; tokenVersion: number; exp: number }>();

  /**
   * The agent rows that current tokens were last checked against, by agent id (SQLite only, see
   * watchAgents). An entry is dropped by the statement that changes the row's identity columns
   * (registration and revocation bump token_version, removal deletes the row), inside that
   * statement, so the next request after a revoke or a rotation reads the live row and is refused.
   */
  private identities: Map<string, AgentIdentity> | null = null;
  /** bumped with every dropped entry: a row read while one changed is not kept */
  private identityEpoch = 0;
  private inTransaction: () => boolean = () => true;

  constructor(secretKey: string) {
    this.key = deriveKey(secretKey, "agent-jwt");
  }

  /**
   * Keeps the agent rows that tokens were checked against, so an agent's request does not read
   * its row again while the row's identity columns stay as they were. SQLite only: there every
   * write to the database goes through this process's one connection, whose temporary triggers
   * (not stored in the file, no migration) call back into this process in the writing statement
   * itself. With several controllers on one PostgreSQL database a revoke made on another
   * controller would never reach this one, so there every request reads the live row.
   *
   * What it saves: the row read was 6.6% of the controller's profile in one-request claim+finish
   * windows; in process it is 6-8 µs (a prepared point read and two JSON.parse, 100,000 reads of
   * 1,000 rows, with and without writes between them). pnpm bench against the code before it, same
   * run, 10 rounds, load 2.8-4.4: empty heartbeat 157 vs 166 CPU µs, one-request cycle 210 vs 210
   * (bench/results/2026-11-27-httpcut.md) — below the bench's ±16% spread between identical sides.
   */
  watchAgents(sqlite: WatchedConnection): void {
    const identities = new Map<string, AgentIdentity>();
    this.inTransaction = watchRows(sqlite, IDENTITY_WATCH, (id) => {
      this.identityEpoch++;
      if (typeof id === "string") identities.delete(id);
      else identities.clear();
    });
    this.identities = identities;
  }

  /**
   * The agent a verified token names, checked against its row: the row kept from an earlier
   * request of the same token version when no identity column changed since, else `read` (the
   * live row; it throws for a revoked agent or an older token version).
   */
  async identify<A extends AgentIdentity>(check: { agentId: string; tokenVersion: number }, read: () => Promise<A>): Promise<A> {
    const kept = this.identities?.get(check.agentId);
    if (kept && kept.tokenVersion === check.tokenVersion && !kept.revoked) return kept as A;
    // Kept only when read outside a transaction (a row written by one still open, which may yet
    // roll back, is never kept) and when no identity changed while it was read.
    const epoch = this.identityEpoch;
    const cacheable = this.identities !== null && !this.inTransaction();
    const row = await read();
    if (cacheable && epoch === this.identityEpoch && !this.inTransaction() && row.tokenVersion === check.tokenVersion && !row.revoked) {
      // Bounded like `verified`: one entry per live agent; a full map starts over rather than growing.
      if (this.identities!.size >= 50_000) this.identities!.clear();
      this.identities!.set(check.agentId, Object.freeze(row));
    }
    return row;
  }

  sign(agentId: string, tokenVersion: number): Promise<string> {
    return new SignJWT({ tv: tokenVersion })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(agentId)
      .setIssuedAt()
      .setExpirationTime(AGENT_TOKEN_TTL)
      .sign(this.key);
  }

  /**
   * `allowExpired`: registration only. An agent whose token expired may still prove it is the
   * agent of its host (the signature is ours and the token version is still the current one),
   * which the join token no longer can once the host exists.
   */
  async verify(token: string, opts: { allowExpired?: boolean } = {}): Promise<AgentTokenCheck> {
    const cached = this.verified.get(token);
    if (cached && cached.exp * 1000 > Date.now()) return { ok: true, agentId: cached.agentId, tokenVersion: cached.tokenVersion };
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: ["HS256"], issuer: ISSUER, audience: AUDIENCE });
      if (typeof payload.sub !== "string" || typeof payload.tv !== "number" || typeof payload.exp !== "number") {
        return { ok: false, reason: "malformed claims" };
      }
      // Bounded: one entry per live agent token; a full map starts over rather than growing.
      if (this.verified.size >= 50_000) this.verified.clear();
      this.verified.set(token, { agentId: payload.sub, tokenVersion: payload.tv, exp: payload.exp });
      return { ok: true, agentId: payload.sub, tokenVersion: payload.tv };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return opts.allowExpired ? this.verifyExpired(token) : { ok: false, reason: "token expired" };
      return { ok: false, reason: "invalid token" };
    }
  }

  private async verifyExpired(token: string): Promise<AgentTokenCheck> {
    try {
      const { payload, protectedHeader } = await compactVerify(token, this.key, { algorithms: ["HS256"] });
      const claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
      if (protectedHeader.alg !== "HS256" || claims.iss !== ISSUER || claims.aud !== AUDIENCE) return { ok: false, reason: "invalid token" };
      if (typeof claims.sub !== "string" || typeof claims.tv !== "number") return { ok: false, reason: "malformed claims" };
      return { ok: true, agentId: claims.sub, tokenVersion: claims.tv };
    } catch {
      return { ok: false, reason: "invalid token" };
    }
  }
}

// -------------------------------------------------------------------------------------------
// API tokens (users, CLI, CI)
// -------------------------------------------------------------------------------------------

const toWire = (row: typeof apiTokens.$inferSelect) => ({
  id: row.id,
  name: row.name,
  scope: row.scope as TokenScope,
  apps: row.apps ?? null,
  createdAt: new Date(row.createdAt).toISOString(),
  lastUsedAt: row.lastUsedAt ? new Date(row.lastUsedAt).toISOString() : null,
  revokedAt: row.revokedAt ? new Date(row.revokedAt).toISOString() : null,
});

export class ApiTokens {
  constructor(
    private readonly db: Db,
    private readonly adminToken: string | undefined,
    private readonly clock: () => number,
  ) {}

  /** Resolves a bearer token to a user principal, or null. The bootstrap admin token has id "bootstrap". */
  async authenticate(token: string): Promise<Principal | null> {
    if (this.adminToken && secretsEqual(token, this.adminToken)) return { kind: "user", tokenId: "bootstrap", scope: "admin", apps: null };
    if (!token.startsWith("dbt_")) return null;
    const row = (await this.db.select().from(apiTokens).where(eq(apiTokens.hash, hashToken(token))))[0];
    if (!row || row.revokedAt) return null;
    const now = this.clock();
    // Touch at most once a minute: a write per request would serialise every read on the WAL.
    if (!row.lastUsedAt || now - row.lastUsedAt > 60_000) {
      await this.db.update(apiTokens).set({ lastUsedAt: now }).where(eq(apiTokens.id, row.id));
    }
    return { kind: "user", tokenId: row.id, scope: row.scope as TokenScope, apps: row.apps ?? null };
  }

  /** `apps`: the token acts on and reads only these apps (an admin token is never limited). */
  async create(name: string, scope: TokenScope, apps?: string[]) {
    if (apps && scope === "admin") throw new ApiError(400, "invalid_body", "an admin token cannot be limited to apps; use the deploy or read scope");
    const token = `dbt_${randomBytes(32).toString("base64url")}`;
    const row = { id: newId("tok"), name, scope, hash: hashToken(token), apps: apps ? [...new Set(apps)].sort() : null, createdAt: this.clock() };
    await this.db.insert(apiTokens).values(row);
    return { ...toWire({ ...row, lastUsedAt: null, revokedAt: null }), token };
  }

  async list() {
    return (await this.db.select().from(apiTokens).orderBy(apiTokens.id)).map(toWire);
  }

  async revoke(id: string) {
    const row = (await this.db.select().from(apiTokens).where(eq(apiTokens.id, id)))[0];
    if (!row) throw notFound("token", id);
    if (!row.revokedAt) await this.db.update(apiTokens).set({ revokedAt: this.clock() }).where(eq(apiTokens.id, id));
    return toWire({ ...row, revokedAt: row.revokedAt ?? this.clock() });
  }
}

/** The one check of a per-app token: 403 naming the apps it may use. */
export function assertAppAllowed(user: { apps: string[] | null }, app: string): void {
  if (user.apps && !user.apps.includes(app)) {
    throw new ApiError(403, "forbidden", `this token is limited to app${user.apps.length === 1 ? "" : "s"} ${user.apps.join(", ")}; '${app}' is not one of them`);
  }
}

export function bearer(header: string | undefined): string {
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  if (!match) throw new ApiError(401, "unauthorized", "missing bearer token");
  return match[1]!;
}
