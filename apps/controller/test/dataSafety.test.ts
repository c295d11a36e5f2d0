import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { describe, expect, test } from "vitest";
import { type Migrated, openDb } from "../src/db/client";
import { ADMIN, startTestController } from "./server";

describe("the database cannot vanish silently", () => {
  test("deleted under a running controller: /healthz stays alive, /readyz says so; a restart refuses until --init", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-ctl-"));
    const ctl = await startTestController(dir);
    expect((await fetch(`${ctl.url}/readyz`)).status).toBe(200);
    const token = (await ctl.call("POST", "/v1/tokens", ADMIN, { name: "ci", scope: "read" })).body.token;
    for (const f of ["deploybot.db", "deploybot.db-wal", "deploybot.db-shm"]) rmSync(join(dir, f), { force: true });
    expect((await fetch(`${ctl.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${ctl.url}/readyz`);
    expect(ready.status).toBe(503);
    expect((await ready.json()).error).toMatchObject({ code: "database_replaced" });
    await ctl.stop();
    expect(token).toMatch(/^dbt_/);

    await expect(startTestController(dir)).rejects.toThrow(/missing, but .* holds an existing installation .*--init/);
    const fresh = await startTestController(dir, {}, { init: true });
    expect((await fetch(`${fresh.url}/readyz`)).status).toBe(200);
    await fresh.stop();
  });

  test("an older database is migrated once at start and says what it applied; its rows stay", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-ctl-"));
    const file = join(dir, "deploybot.db");
    // the previous version's database: the checked-in migrations but the newest
    const previous = join(dir, "previous-migrations");
    cpSync(join(import.meta.dirname, "../drizzle"), previous, { recursive: true });
    const journalFile = join(previous, "meta/_journal.json");
    const journal = JSON.parse(readFileSync(journalFile, "utf8")) as { entries: { tag: string }[] };
    const newest = journal.entries.pop()!.tag;
    writeFileSync(journalFile, JSON.stringify(journal));
    const sqlite = new Database(file);
    migrate(drizzle(sqlite), { migrationsFolder: previous });
    sqlite.prepare("INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES ('tok_old', 'old', 'read', 'hash-old', 1)").run();
    sqlite.close();

    const upgraded: Migrated[] = [];
    const db = openDb(file, { onMigrated: (m) => upgraded.push(m) });
    const all = journal.entries.length + 1;
    expect(upgraded).toEqual([{ from: all - 1, to: all, applied: [newest] }]);
    expect(db.$client.prepare("SELECT name FROM api_tokens").pluck().all()).toEqual(["old"]);
    db.$client.close();
    const again: Migrated[] = [];
    openDb(file, { onMigrated: (m) => again.push(m) }).$client.close();
    expect(again).toEqual([]);
  });

  test("a database a newer controller migrated is refused at start, untouched, with what to do", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-ctl-"));
    const ctl = await startTestController(dir);
    expect((await ctl.call("POST", "/v1/tokens", ADMIN, { name: "ci", scope: "read" })).status).toBe(201);
    await ctl.stop();
    // what the next version's migration leaves: a row this version's journal does not hold
    const file = join(dir, "deploybot.db");
    const sqlite = new Database(file);
    const known = sqlite.prepare("SELECT count(*) AS n, max(created_at) AS at FROM __drizzle_migrations").get() as { n: number; at: number };
    sqlite.prepare("INSERT INTO __drizzle_migrations (hash, created_at) VALUES ('next', ?)").run(known.at + 60_000);
    sqlite.exec("CREATE TABLE next_version_rows (id text PRIMARY KEY)");
    sqlite.close();

    await expect(startTestController(dir)).rejects.toThrow(
      new RegExp(`database .*deploybot\\.db was migrated by a newer deploybot controller: ${known.n + 1} migrations, this version knows ${known.n}`),
    );
    const after = new Database(file, { readonly: true });
    try {
      expect((after.prepare("SELECT count(*) AS n FROM __drizzle_migrations").get() as { n: number }).n).toBe(known.n + 1);
      expect((after.prepare("SELECT name FROM api_tokens").all() as { name: string }[]).map((r) => r.name)).toEqual(["ci"]);
    } finally {
      after.close();
    }
  });

  test("a corrupt database is reported as corrupt at start", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-ctl-"));
    writeFileSync(join(dir, "deploybot.db"), Buffer.alloc(8192, 0x5a));
    await expect(startTestController(dir)).rejects.toThrow(/is corrupt/);
  });
});
