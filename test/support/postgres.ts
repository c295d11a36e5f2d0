import { randomBytes } from "node:crypto";
import { describe, it } from "vitest";
import postgres from "postgres";

/** The admin URL of the test cluster (scripts/test-services.d/postgresql.sh writes it). */
export const testPostgresUrl = process.env.DEPLOYBOT_TEST_POSTGRES_URL ?? "";

/**
 * `describe` for suites that need the test PostgreSQL cluster. In CI (CI=true) a missing cluster
 * FAILS the suite; locally it skips, loudly.
 */
export function describePostgres(name: string, body: () => void): void {
  if (testPostgresUrl) {
    describe(name, body);
    return;
  }
  const message = "DEPLOYBOT_TEST_POSTGRES_URL is not set. Run: sudo bash scripts/test-services.sh";
  if (process.env.CI === "true") {
    describe(name, () => {
      it("has the PostgreSQL test cluster", () => {
        throw new Error(message);
      });
    });
    return;
  }
  console.warn(`\n!!! SKIPPING "${name}": ${message}\n`);
  describe.skip(name, body);
}

/** A new empty database in the test cluster, for one test file; `drop` removes it. */
export async function freshDatabase(prefix = "deploybot_test"): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const admin = postgres(testPostgresUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(testPostgresUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      const a = postgres(testPostgresUrl, { max: 1, onnotice: () => {} });
      await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
