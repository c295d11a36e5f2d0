import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
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

  test("a corrupt database is reported as corrupt at start", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-ctl-"));
    writeFileSync(join(dir, "deploybot.db"), Buffer.alloc(8192, 0x5a));
    await expect(startTestController(dir)).rejects.toThrow(/is corrupt/);
  });
});
