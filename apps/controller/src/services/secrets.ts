import { and, asc, eq, inArray } from "drizzle-orm";
import { secrets } from "../db/schema";
import { ApiError, notFound } from "../lib/errors";
import { type Deps, iso } from "./deps";
import { Sealer } from "./sealer";

/**
 * App secrets, encrypted at rest with AES-256-GCM under a key derived from DEPLOYBOT_SECRET_KEY.
 * Values are read back only to go into the job copy handed to the claiming agent.
 */
export class SecretStore {
  private readonly box: Sealer;

  constructor(
    private readonly deps: Deps,
    secretKey: string,
  ) {
    this.box = new Sealer(secretKey, "app-secrets");
  }

  private seal(plain: string, aad: string): string {
    return this.box.seal(plain, aad);
  }

  private open(sealed: string, aad: string): string {
    return this.box.open(sealed, aad);
  }

  private requireApp(app: string) {
    if (!this.deps.apps().byName(app)) throw notFound("app", app);
  }

  async put(app: string, key: string, value: string) {
    this.requireApp(app);
    // the app and key are bound into the ciphertext: a value copied to another row will not open
    const row = { app, key, value: this.seal(value, `${app}/${key}`), updatedAt: this.deps.clock() };
    await this.deps.db
      .insert(secrets)
      .values(row)
      .onConflictDoUpdate({ target: [secrets.app, secrets.key], set: { value: row.value, updatedAt: row.updatedAt } });
    this.deps.logger.info({ app, key }, "secret set");
    return { key, updatedAt: iso(row.updatedAt)! };
  }

  async list(app: string) {
    this.requireApp(app);
    return (await this.deps.db
      .select({ key: secrets.key, updatedAt: secrets.updatedAt })
      .from(secrets)
      .where(eq(secrets.app, app))
      .orderBy(asc(secrets.key)))
      .map((r) => ({ key: r.key, updatedAt: iso(r.updatedAt)! }));
  }

  async remove(app: string, key: string): Promise<void> {
    this.requireApp(app);
    const done = await this.deps.db.delete(secrets).where(and(eq(secrets.app, app), eq(secrets.key, key))).returning({ key: secrets.key });
    if (done.length === 0) throw notFound("secret", `${app}/${key}`);
    this.deps.logger.info({ app, key }, "secret removed");
  }

  /**
   * A deploy of an app that declares a secret nobody set would run without it: refused before
   * anything is queued, naming the key and how to set it.
   */
  async requireSet(app: string, names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    const set = new Set(
      (await this.deps.db
        .select({ key: secrets.key })
        .from(secrets)
        .where(and(eq(secrets.app, app), inArray(secrets.key, [...names]))))
        .map((r) => r.key),
    );
    const missing = names.filter((n) => !set.has(n));
    if (missing.length === 0) return;
    const list = missing.map((n) => `'${n}'`).join(", ");
    throw new ApiError(422, "secret_not_set", `app '${app}' declares secret ${list} but no value is set; set it with: deploybot secrets set ${app} ${missing[0]}`, { missing });
  }

  /**
   * Whether this controller's key opens the stored secrets (one is tried). A database restored
   * next to another DEPLOYBOT_SECRET_KEY or secret.key would otherwise start and fail every
   * deploy that needs a secret, and every agent token it signed would be refused.
   */
  async keyOpensSecrets(): Promise<boolean> {
    const row = (await this.deps.db.select().from(secrets).limit(1))[0];
    if (!row) return true;
    try {
      this.open(row.value, `${row.app}/${row.key}`);
      return true;
    } catch {
      return false;
    }
  }

  /** Every decrypted value of an app's secrets, for redaction of what its jobs send back. */
  async allValues(app: string): Promise<Record<string, string>> {
    const rows = await this.deps.db.select().from(secrets).where(eq(secrets.app, app));
    return Object.fromEntries(rows.map((r) => [r.key, this.open(r.value, `${app}/${r.key}`)]));
  }

  /** Decrypted values of `names` for `app` (those that are set). */
  async valuesFor(app: string, names: readonly string[]): Promise<Record<string, string>> {
    if (names.length === 0) return {};
    const rows = await this.deps.db
      .select()
      .from(secrets)
      .where(and(eq(secrets.app, app), inArray(secrets.key, [...names])));
    return Object.fromEntries(rows.map((r) => [r.key, this.open(r.value, `${app}/${r.key}`)]));
  }
}
