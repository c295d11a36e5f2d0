import { expect, test } from "vitest";
import { loadConfig, testConfig } from "../../src/config";
import { startController } from "../../src/server";

test("DEPLOYBOT_DATABASE_URL takes a postgres:// or postgresql:// URL and refuses anything else", () => {
  expect(loadConfig({ DEPLOYBOT_DATABASE_URL: "postgres://u:p@127.0.0.1:5432/deploybot" }).databaseUrl).toBe("postgres://u:p@127.0.0.1:5432/deploybot");
  expect(loadConfig({ DEPLOYBOT_DATABASE_URL: "postgresql://db.internal/deploybot" }).databaseUrl).toBe("postgresql://db.internal/deploybot");
  expect(loadConfig({}).databaseUrl).toBeUndefined();
  expect(() => loadConfig({ DEPLOYBOT_DATABASE_URL: "mysql://127.0.0.1/deploybot" })).toThrow(/DEPLOYBOT_DATABASE_URL: must be a postgres/);
});

test("a controller pointed at PostgreSQL says it cannot serve from it yet instead of using the SQLite file", async () => {
  await expect(startController(testConfig({ databaseUrl: "postgres://u:p@127.0.0.1:1/none" }))).rejects.toThrow(/DEPLOYBOT_DATABASE_URL selects PostgreSQL/);
});
