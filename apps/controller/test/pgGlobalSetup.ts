/**
 * Global setup of the controller-pg project: names this run's databases (pgDatabases.ts) and
 * drops them all when the run ends.
 */
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { testPostgresUrl } from "../../../test/support/postgres";

export default function setup(project: TestProject) {
  if (!testPostgresUrl) throw new Error("the controller-pg project needs DEPLOYBOT_TEST_POSTGRES_URL. Run: sudo bash scripts/test-services.sh");
  const run = `deploybot_ctl_${randomBytes(4).toString("hex")}`;
  project.provide("controllerPgRun", run);
  return async () => {
    const admin = postgres(testPostgresUrl, { max: 1, onnotice: () => {} });
    try {
      const names = await admin<{ name: string }[]>`SELECT datname AS name FROM pg_database WHERE datname LIKE ${`${run}\\_%`}`;
      for (const { name } of names) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  };
}
