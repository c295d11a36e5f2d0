import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { ADMIN, startTestController } from "../../controller/test/server";
import { fakeAgent } from "./fakeAgent";
import { BIN, json, runCli } from "./runCli";

// The real binary against a real controller: `deploybot logs APP` on an app one of whose hosts
// runs an agent from before app-log shipping.
vi.setConfig({ testTimeout: 60_000 });

const APPS = `
apps:
  - name: shop
    repo: acme/shop
    url: https://git.example.test/acme/shop.git
    hosts: [shop-1, shop-2]
    image: 127.0.0.1:5000/acme/shop
`;
const OLD =
  "host shop-2 runs agent 0.1.0, which predates app-log shipping: the output of shop there never reaches the controller; upgrade the agent on shop-2";

let ctl: Awaited<ReturnType<typeof startTestController>>;
let home: string;
const cli = (args: string[]) => runCli({ url: ctl.url, home }, args);

beforeAll(async () => {
  ctl = await startTestController(undefined, {}, { appsYaml: APPS });
  home = mkdtempSync(join(tmpdir(), "deploybot-cli-home-"));
  const current = await fakeAgent(ctl, "shop-1");
  expect((await current.appLogs(0, [{ app: "shop", container: "shop-1", line: "listening on :80" }])).status).toBe(200);
  // an agent from before app-log shipping: 0.1.0, no capabilities
  await fakeAgent(ctl, "shop-2", { version: "0.1.0", capabilities: {} });
});

afterAll(async () => {
  await ctl?.stop();
});

describe("deploybot logs APP with a host whose agent predates app-log shipping", () => {
  test("names the host, its agent's version and 'upgrade' instead of 'no output yet'", async () => {
    const all = await cli(["logs", "shop"]);
    expect(all.code).toBe(0);
    expect(all.stdout).toBe("shop-1 | listening on :80\n");
    expect(all.stderr).toBe(`${OLD}\n`);

    const there = await cli(["logs", "shop", "--host", "shop-2"]);
    expect(there.code).toBe(0);
    expect(there.stdout).toBe("");
    expect(there.stderr).toBe(`${OLD}\n`);
    expect(there.stderr).not.toMatch(/no output/);

    const asJson = json(await cli(["logs", "shop", "--host", "shop-2", "--json"]));
    expect(asJson).toEqual({ lines: [], next: 0, silentHosts: [{ host: "shop-2", agentVersion: "0.1.0", message: OLD }] });
  });

  test("-f says so as the stream starts, then follows", async () => {
    const child = spawn(process.execPath, [BIN, "logs", "shop", "-f"], {
      env: { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: join(home, "config"), DEPLOYBOT_URL: ctl.url, DEPLOYBOT_TOKEN: ADMIN },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    try {
      await vi.waitFor(
        () => {
          expect(stdout).toBe("shop-1 | listening on :80\n");
          expect(stderr).toBe(`${OLD}\n`);
        },
        { timeout: 30_000, interval: 100 },
      );
    } finally {
      child.kill();
    }
  });
});
