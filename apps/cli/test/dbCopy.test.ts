import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type ControllerProcess, controllerProcess, JOIN } from "../../../test/harness/processes";
import { describePostgres, freshDatabase } from "../../../test/support/postgres";
import { json, runCli } from "./runCli";

/**
 * `deploybot db copy`, the real binary: an installation made by a real controller process on its
 * SQLite file (a registered host, a job with log lines), stopped, then copied into an empty
 * PostgreSQL database of the test cluster by the controller's own copy.
 */
describePostgres("deploybot db copy", () => {
  let ctl: ControllerProcess;
  let target: { url: string; drop: () => Promise<void> };
  const home = mkdtempSync(join(tmpdir(), "deploybot-dbcopy-cli-"));
  const cli = (args: string[]) => runCli({ url: "http://127.0.0.1:9", home }, args, { env: { DEPLOYBOT_TOKEN: undefined }, timeoutMs: 120_000 });

  beforeAll(async () => {
    target = await freshDatabase("deploybot_cli_copy");
    ctl = await controllerProcess("apps:\n  - name: web\n    repo: acme/web\n    hosts: [web-1]\n");
    const reg = await fetch(`${ctl.url}/v1/agents/register`, {
      method: "POST",
      headers: { authorization: `Bearer ${JOIN}`, "content-type": "application/json" },
      body: JSON.stringify({ hostname: "web-1" }),
    });
    expect(reg.status).toBe(200);
    expect((await ctl.api("POST", "/v1/jobs", { repo: "acme/web", ref: "main", host: "web-1" })).status).toBe(201);
    await ctl.stop();
  }, 60_000);

  afterAll(async () => {
    await ctl?.stop();
    await target?.drop();
  });

  it("copies every table into an empty database, says so, and refuses a second copy into it", async () => {
    const from = `sqlite:${join(ctl.dir, "deploybot.db")}`;
    const copied = await cli(["db", "copy", "--from", from, "--to", target.url, "--json"]);
    expect(copied.code, copied.stderr).toBe(0);
    const { tables } = json(copied);
    expect(tables.agents).toBe(1);
    expect(tables.jobs).toBe(1);

    const sql = postgres(target.url, { max: 1, onnotice: () => {} });
    try {
      const [agent] = await sql`SELECT hostname FROM agents`;
      expect(agent?.hostname).toBe("web-1");
      const [job] = await sql`SELECT target_host, status FROM jobs`;
      expect(job).toMatchObject({ status: "pending" });
    } finally {
      await sql.end();
    }

    const again = await cli(["db", "copy", "--from", from, "--to", target.url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("already holds agents or jobs");
    expect(again.stderr).toContain("nothing was copied");
  });

  it("refuses a missing SQLite file, a --from without sqlite: and a --to that is not postgres://, before touching anything", async () => {
    const missing = await cli(["db", "copy", "--from", "sqlite:/nonexistent/deploybot.db", "--to", target.url]);
    expect([missing.code, missing.stderr]).toEqual([4, "deploybot db copy: no SQLite database at /nonexistent/deploybot.db\n"]);
    const noScheme = await cli(["db", "copy", "--from", join(ctl.dir, "deploybot.db"), "--to", target.url]);
    expect(noScheme.code).toBe(2);
    expect(noScheme.stderr).toContain("--from must be sqlite:PATH");
    const mysql = await cli(["db", "copy", "--from", `sqlite:${join(ctl.dir, "deploybot.db")}`, "--to", "mysql://root@db/x"]);
    expect(mysql.code).toBe(2);
    expect(mysql.stderr).toContain("--to must be a postgres://");
    const noDir = await runCli({ url: "http://127.0.0.1:9", home }, ["db", "copy", "--from", `sqlite:${join(ctl.dir, "deploybot.db")}`, "--to", target.url], {
      env: { DEPLOYBOT_CONTROLLER_DIR: home },
    });
    expect(noDir.code).toBe(1);
    expect(noDir.stderr).toContain(`no installed controller at ${home}`);
  });
});
