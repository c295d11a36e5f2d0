import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect } from "vitest";
import { parse } from "yaml";
import { ADMIN, JOIN, test } from "../fixture";

// Debian's cloud-init; scripts/test-services.d/cloud-init.sh installs it on a fresh CI machine.
const CLOUD_INIT = "/usr/bin/cloud-init";

const schemaCheck = (file: string) =>
  new Promise<{ code: number; out: string }>((done) =>
    execFile(CLOUD_INIT, ["schema", "--config-file", file], { timeout: 60_000 }, (err, stdout, stderr) =>
      done({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, out: `${stdout}${stderr}` }),
    ),
  );

describe("GET /v1/agents/cloud-init", () => {
  test("user-data that passes `cloud-init schema` and installs Docker, git, Node and the agent from this controller", async ({ h }) => {
    const res = await h.call("GET", "/v1/agents/cloud-init?url=https://deploy.example.com&labels=builder,region=eu&hostname=web-3", { token: ADMIN });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/cloud-config");
    const text = await res.text();
    expect(text.startsWith("#cloud-config\n")).toBe(true);

    const file = join(mkdtempSync(join(tmpdir(), "deploybot-cloud-init-")), "user-data.yaml");
    writeFileSync(file, text);
    const check = await schemaCheck(file);
    expect(check.out).toMatch(/Valid cloud-config/);
    expect(check.code).toBe(0);

    const doc = parse(text);
    expect(doc.packages).toEqual(expect.arrayContaining(["docker.io", "git", "curl", "haproxy"]));
    expect(doc.write_files).toEqual([{ path: "/etc/deploybot/join-token", permissions: "0600", owner: "root:root", content: `${JOIN}\n` }]);
    const steps = doc.runcmd.map((c: string[]) => c.join(" ")).join("\n");
    expect(steps).toContain("nodejs");
    expect(steps).toContain("'https://deploy.example.com/v1/agents/dist/install-agent.sh' | bash -s -- --url 'https://deploy.example.com' --labels 'builder,region=eu' --hostname 'web-3'");
    // the token is in the root-only file, never on a command line
    expect(steps).not.toContain(JOIN);
  }, 90_000);

  test("the schema check is not vacuous: a broken document fails it", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "deploybot-cloud-init-")), "bad.yaml");
    writeFileSync(file, "#cloud-config\npackages: nope\nruncmd: {a: 1}\n");
    const check = await schemaCheck(file);
    expect(check.code).not.toBe(0);
  }, 90_000);

  test("admin only; bad labels and host names are 400", async ({ h }) => {
    expect((await h.call("GET", "/v1/agents/cloud-init")).status).toBe(401);
    const read = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "r", scope: "read" } })).json()).token;
    expect((await h.call("GET", "/v1/agents/cloud-init", { token: read })).status).toBe(403);
    expect((await h.call("GET", "/v1/agents/cloud-init?labels=a;b", { token: ADMIN })).status).toBe(400);
    expect((await h.call("GET", "/v1/agents/cloud-init?hostname=-x", { token: ADMIN })).status).toBe(400);
  });
});
