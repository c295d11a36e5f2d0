import { expect, test } from "vitest";
import { loadConfig, testConfig } from "../../src/config";
import { startController } from "../../src/server";

test("DEPLOYBOT_DATABASE_URL takes a postgres:// or postgresql:// URL and refuses anything else", () => {
  expect(loadConfig({ DEPLOYBOT_DATABASE_URL: "postgres://u:p@127.0.0.1:5432/deploybot" }).databaseUrl).toBe("postgres://u:p@127.0.0.1:5432/deploybot");
  expect(loadConfig({ DEPLOYBOT_DATABASE_URL: "postgresql://db.internal/deploybot" }).databaseUrl).toBe("postgresql://db.internal/deploybot");
  expect(loadConfig({}).databaseUrl).toBeUndefined();
  expect(() => loadConfig({ DEPLOYBOT_DATABASE_URL: "mysql://127.0.0.1/deploybot" })).toThrow(/DEPLOYBOT_DATABASE_URL: must be a postgres/);
});

test("a controller pointed at PostgreSQL without DEPLOYBOT_SECRET_KEY is refused before it connects, with the reason", async () => {
  // port 1: a connection attempt would fail differently; the key is checked first
  await expect(startController(testConfig({ databaseUrl: "postgres://u:p@127.0.0.1:1/none", secretKey: undefined }))).rejects.toThrow(
    /DEPLOYBOT_SECRET_KEY is required with DEPLOYBOT_DATABASE_URL: every controller on the database must sign agent tokens/,
  );
});
