import { createHash, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import type { TokenScope } from "@deploybot/protocol";
import { eq } from "drizzle-orm";
import { compactVerify, errors as joseErrors, jwtVerify, SignJWT } from "jose";
import type { Db } from "../db/client";
import { apiTokens } from "../db/schema";
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

export class AgentTokens {
  private readonly key: Uint8Array;
  /** verified tokens: HMAC verification is deterministic, so a token checked once need not be checked again before it expires */
  private readonly verified = new Map<string, { agentId: string; tokenVersion: number; exp: number }>();

  constructor(secretKey: string) {
    this.key = deriveKey(secretKey, "agent-jwt");
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
