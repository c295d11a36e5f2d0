import { copyFileSync, existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pino from "pino";
import { describe, expect, test } from "vitest";
import { runCli } from "../../cli/test/runCli";
import { BackupError, DatabaseBackups, listBackups } from "../src/services/backups";
import { ADMIN, JOIN, startTestController } from "./server";

const tmp = (prefix: string) => mkdtempSync(join(tmpdir(), `deploybot-${prefix}-`));
const quiet = pino({ level: "silent" });

function readBackup(path: string) {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return {
      integrity: db.pragma("integrity_check", { simple: true }),
      tokens: (db.prepare("SELECT name FROM api_tokens ORDER BY name").all() as { name: string }[]).map((r) => r.name),
    };
  } finally {
    db.close();
  }
}

describe("database backups", () => {
  test("a backup taken while requests keep writing is consistent, checked, and holds what was written before it began", async () => {
    const ctl = await startTestController(tmp("bk"));
    try {
      for (let i = 0; i < 20; i++) expect((await ctl.call("POST", "/v1/tokens", ADMIN, { name: `before-${i}`, scope: "read" })).status).toBe(201);
      // writers keep going through the whole backup
      let writing = true;
      let written = 0;
      const writer = (async () => {
        while (writing) {
          const res = await ctl.call("POST", "/v1/tokens", ADMIN, { name: `during-${written}`, scope: "read" });
          expect(res.status).toBe(201);
          written++;
        }
      })();
      const dest = join(tmp("bk-out"), "copy.db");
      const file = await ctl.services.backups.backupTo(dest);
      writing = false;
      await writer;
      expect(file.bytes).toBeGreaterThan(0);
      const copy = readBackup(dest);
      expect(copy.integrity).toBe("ok");
      for (let i = 0; i < 20; i++) expect(copy.tokens).toContain(`before-${i}`);
      // nothing but the backup itself is left next to it (no temp, WAL or journal files)
      expect(readdirSync(join(dest, ".."))).toEqual(["copy.db"]);
    } finally {
      await ctl.stop();
    }
  });

  test("a failed backup leaves nothing behind: no file at the target, no temp file", async () => {
    const dir = tmp("bk-bad");
    const garbage = join(dir, "garbage.db");
    writeFileSync(garbage, Buffer.alloc(8192, 0x5a));
    const out = tmp("bk-bad-out");
    await expect(new DatabaseBackups(garbage, quiet).backupTo(join(out, "copy.db"))).rejects.toThrow(/not a database|check/);
    expect(readdirSync(out)).toEqual([]);
    await expect(new DatabaseBackups(":memory:", quiet).backupTo(join(out, "copy.db"))).rejects.toBeInstanceOf(BackupError);
  });

  test("rotation keeps the newest N backups and clears an interrupted backup's temp file", async () => {
    const ctl = await startTestController(tmp("bk-rot"));
    try {
      const out = tmp("bk-rot-out");
      writeFileSync(join(out, "backup-20200101T000000000Z.db.tmp-999999-abcd"), "half a file");
      writeFileSync(join(out, "notes.txt"), "not a backup");
      const made: string[] = [];
      for (let i = 0; i < 4; i++) made.push((await ctl.services.backups.rotate(out, 2, new Date(Date.UTC(2026, 0, 1, 0, i)))).path);
      expect(listBackups(out)).toEqual(made.slice(2).map((p) => p.slice(out.length + 1)));
      expect(readdirSync(out).sort()).toEqual([...listBackups(out), "notes.txt"].sort());
    } finally {
      await ctl.stop();
    }
  });

  test("DEPLOYBOT_BACKUP_DIR: the controller writes checked backups every interval and keeps the last DEPLOYBOT_BACKUP_KEEP", async () => {
    const out = tmp("bk-periodic");
    const ctl = await startTestController(tmp("bk-per"), { DEPLOYBOT_BACKUP_DIR: out, DEPLOYBOT_BACKUP_INTERVAL: "1s", DEPLOYBOT_BACKUP_KEEP: "2" });
    try {
      await ctl.call("POST", "/v1/tokens", ADMIN, { name: "kept", scope: "read" });
      const seen = new Set<string>();
      for (let i = 0; i < 600 && seen.size < 4; i++) {
        for (const n of listBackups(out)) seen.add(n);
        expect(listBackups(out).length).toBeLessThanOrEqual(2);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(seen.size).toBeGreaterThanOrEqual(4);
      const metrics = await (await fetch(`${ctl.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
      expect(Number(/^deploybot_backups_total\{result="ok"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(4);
      expect(metrics).toMatch(/^deploybot_backups_total\{result="failed"\} 0$/m);
      expect(Number(/^deploybot_backup_last_success_timestamp_seconds (\S+)$/m.exec(metrics)?.[1]) * 1000).toBeGreaterThan(Date.now() - 60_000);
    } finally {
      await ctl.stop();
    }
    const kept = listBackups(out);
    expect(kept.length).toBe(2);
    const copy = readBackup(join(out, kept.at(-1)!));
    expect(copy.integrity).toBe("ok");
    expect(copy.tokens).toContain("kept");
  });

  test("after a restart the last success is the newest periodic backup already there, not 0, until the next one is due", async () => {
    const out = tmp("bk-restart");
    const dir = tmp("bk-restart-ctl");
    const env = { DEPLOYBOT_BACKUP_DIR: out, DEPLOYBOT_BACKUP_INTERVAL: "1h" };
    const first = await startTestController(dir, env);
    try {
      // none there yet: the first one is taken a second after the start
      for (let i = 0; i < 600 && listBackups(out).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    } finally {
      await first.stop();
    }
    const [written] = listBackups(out);
    expect(written).toBeDefined();
    const writtenAt = statSync(join(out, written!)).mtimeMs;

    const second = await startTestController(dir, env);
    try {
      const metrics = await (await fetch(`${second.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
      // the next backup is an hour away: an alert on time() - this must not fire meanwhile
      expect(Number(/^deploybot_backup_last_success_timestamp_seconds (\S+)$/m.exec(metrics)?.[1])).toBeCloseTo(writtenAt / 1000, 2);
      expect(metrics).toMatch(/^deploybot_backups_total\{result="ok"\} 0$/m);
      expect(listBackups(out)).toEqual([written]);
    } finally {
      await second.stop();
    }
  });

  test("restored into a fresh data dir with the same secret key: tokens and secrets work; another key is refused at start", async () => {
    const dir = tmp("bk-src");
    const ctl = await startTestController(dir);
    const token = (await ctl.call("POST", "/v1/tokens", ADMIN, { name: "ci", scope: "read" })).body.token as string;
    expect((await ctl.call("PUT", "/v1/apps/api/secrets/DATABASE_URL", ADMIN, { value: "postgres://u:p@db/app" })).status).toBe(200);
    const dest = join(tmp("bk-copy"), "backup.db");
    await ctl.services.backups.backupTo(dest);
    await ctl.stop();

    const fresh = tmp("bk-restored");
    copyFileSync(dest, join(fresh, "deploybot.db"));
    copyFileSync(join(dir, "secret.key"), join(fresh, "secret.key"));
    const restored = await startTestController(fresh);
    try {
      expect((await restored.call("GET", "/v1/apps", token)).status).toBe(200);
      expect(await restored.services.secrets.valuesFor("api", ["DATABASE_URL"])).toEqual({ DATABASE_URL: "postgres://u:p@db/app" });
    } finally {
      await restored.stop();
    }

    const wrongKey = tmp("bk-wrong-key");
    copyFileSync(dest, join(wrongKey, "deploybot.db"));
    await expect(startTestController(wrongKey)).rejects.toThrow(/encrypted with another secret key/);
    expect(existsSync(join(wrongKey, "deploybot.db"))).toBe(true);
  });

  test("restored from a backup taken before its agent registered again (a restart, an update): the agent re-registers with its own token, keeps its id; older tokens stay dead", async () => {
    const dir = tmp("bk-agent-src");
    const ctl = await startTestController(dir);
    const hostname = `web-${Date.now()}`;
    const register = (c: { call: typeof ctl.call }, token: string) => c.call("POST", "/v1/agents/register", token, { hostname, version: "0.1.0" });
    const first = await register(ctl, JOIN);
    expect(first.status).toBe(200);
    const agentId = first.body.agent.id as string;
    const dest = join(tmp("bk-agent-copy"), "backup.db");
    await ctl.services.backups.backupTo(dest);
    // after the backup the agent restarts (or takes an update) and registers again: a newer token
    const second = await register(ctl, first.body.token);
    expect(second.status).toBe(200);
    await ctl.stop();

    const fresh = tmp("bk-agent-restored");
    copyFileSync(dest, join(fresh, "deploybot.db"));
    copyFileSync(join(dir, "secret.key"), join(fresh, "secret.key"));
    const restored = await startTestController(fresh);
    try {
      // its token is newer than the restored database knows: heartbeats are refused, so it registers
      expect((await restored.call("POST", `/v1/agents/${agentId}/heartbeat`, second.body.token, { status: "idle", containers: [] })).status).toBe(401);
      const again = await register(restored, second.body.token);
      expect(again.status).toBe(200);
      expect(again.body.agent.id).toBe(agentId);
      expect((await restored.call("POST", `/v1/agents/${agentId}/heartbeat`, again.body.token, { status: "idle", containers: [] })).status).toBe(200);
      // every token issued before this registration is dead, the newer one included
      for (const old of [first.body.token, second.body.token]) {
        expect((await restored.call("POST", `/v1/agents/${agentId}/heartbeat`, old, { status: "idle", containers: [] })).status).toBe(401);
        expect((await register(restored, old)).status).toBe(401);
      }
      // the shared join token still cannot take the host over
      expect((await register(restored, JOIN)).status).toBe(409);
    } finally {
      await restored.stop();
    }
  });

  test("GET /v1/db/backup: admin only; the checked copy as an SQLite file, nothing left in the data dir; deploybot db backup writes it whole", async () => {
    const dir = tmp("bk-http");
    const ctl = await startTestController(dir);
    try {
      const read = (await ctl.call("POST", "/v1/tokens", ADMIN, { name: "reader", scope: "read" })).body.token as string;
      expect((await fetch(`${ctl.url}/v1/db/backup`)).status).toBe(401);
      const refused = await fetch(`${ctl.url}/v1/db/backup`, { headers: { authorization: `Bearer ${read}` } });
      expect(refused.status).toBe(403);
      expect((await refused.json()).error.code).toBeDefined();
      const before = readdirSync(dir).sort();

      const res = await fetch(`${ctl.url}/v1/db/backup`, { headers: { authorization: `Bearer ${ADMIN}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/vnd.sqlite3");
      expect(res.headers.get("x-deploybot-integrity")).toBe("ok");
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(bytes.length).toBe(Number(res.headers.get("content-length")));
      expect(bytes.subarray(0, 16).toString("latin1")).toBe("SQLite format 3\0");
      expect(readdirSync(dir).sort()).toEqual(before);

      const home = tmp("bk-cli");
      const out = join(home, "nightly.db");
      const cli = await runCli({ url: ctl.url, home }, ["db", "backup", "--out", out]);
      expect(cli.code, cli.stderr).toBe(0);
      expect(cli.stdout).toContain(out);
      expect(cli.stdout).toMatch(/integrity_check:\s+ok/);
      expect(readBackup(out)).toMatchObject({ integrity: "ok", tokens: ["reader"] });
      expect(readdirSync(home).filter((f) => f.includes("nightly"))).toEqual(["nightly.db"]);
      const piped = await runCli({ url: ctl.url, home }, ["db", "backup", "--out", "-"]);
      expect(piped.code, piped.stderr).toBe(0);
      expect(piped.stdout.startsWith("SQLite format 3")).toBe(true);
      const denied = await runCli({ url: ctl.url, home }, ["db", "backup", "--out", join(home, "no.db")], { env: { DEPLOYBOT_TOKEN: read } });
      expect(denied.code).toBe(3);
      expect(readdirSync(home).filter((f) => f.startsWith("no.db"))).toEqual([]);
      // a path that cannot be written is said at once, before the controller takes a backup
      const taken = ctl.services.backups.stats.ok;
      const nowhere = await runCli({ url: ctl.url, home }, ["db", "backup", "--out", join(home, "missing", "x.db")]);
      expect(nowhere.code).toBe(2);
      expect(nowhere.stderr).toMatch(/cannot write the backup to .*missing\/x\.db: its directory does not exist/);
      const intoDir = await runCli({ url: ctl.url, home }, ["db", "backup", "--out", home]);
      expect(intoDir.code).toBe(2);
      expect(intoDir.stderr).toMatch(/is a directory/);
      expect(ctl.services.backups.stats.ok).toBe(taken);
    } finally {
      await ctl.stop();
    }
  });
});
