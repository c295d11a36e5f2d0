import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { notificationDeliveryAnswer, notificationDeliveryPage } from "@deploybot/protocol";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { type Receiver, startReceiver } from "../../controller/test/receiver";
import { APPS_YAML } from "../../controller/test/appsYaml";
import { JOIN, startTestController } from "../../controller/test/server";
import { freePort } from "../../../test/support/docker";
import { json, runCli } from "./runCli";

// `deploybot notifications`: the real binary against a real controller whose targets are a
// receiver on 127.0.0.1 (allowed) and the same address without allow_private (refused).
vi.setConfig({ testTimeout: 60_000 });

let ctl: Awaited<ReturnType<typeof startTestController>>;
let receiver: Receiver;
let home: string;
const cli = (args: string[]) => runCli({ url: ctl.url, home }, args);

beforeAll(async () => {
  receiver = await startReceiver();
  const appsYaml = `${APPS_YAML}
notifications:
  targets:
    - name: ops
      type: webhook
      url: ${receiver.url}
      secret: cli-notification-secret
      events: [agent.updated]
      allow_private: true
    - name: chat
      type: slack
      url: ${receiver.url}/T0/B0/secret-slack-path
      events: [agent.updated]
    - name: down
      type: webhook
      url: http://127.0.0.1:${await freePort()}/hook
      secret: cli-notification-secret
      events: [agent.updated]
      allow_private: true
  # the first retry (10 s) would come after this: a failed attempt is the last one
  retry_for_seconds: 1
`;
  ctl = await startTestController(undefined, {}, { appsYaml });
  home = mkdtempSync(join(tmpdir(), "deploybot-cli-ntf-home-"));
  const register = async (version: string, token = JOIN) => {
    const res = await fetch(`${ctl.url}/v1/agents/register`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ hostname: "web-1", version, heldJobIds: [] }),
    });
    return ((await res.json()) as { token: string }).token;
  };
  await register("1.0.1", await register("1.0.0"));
  for (let i = 0; i < 100 && receiver.accepted().length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  for (let i = 0; i < 100 && notificationDeliveryPage.parse(json(await cli(["notifications", "--json", "--target", "down"]))).deliveries[0]?.status !== "failed"; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(async () => {
  await ctl?.stop();
  await receiver?.close();
});

describe("deploybot notifications", () => {
  test("lists deliveries with their status; one delivery shows its attempts; a bad filter is a usage error", async () => {
    const list = await cli(["notifications"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/DELIVERY\s+TARGET\s+EVENT\s+STATUS/);
    expect(list.stdout).toMatch(/ops\s+agent\.updated\s+delivered\s+1/);
    expect(list.stdout).toMatch(/chat\s+agent\.updated\s+refused\s+1/);
    expect(list.stderr).toMatch(/loopback, link-local or private address/);
    expect(list.stdout + list.stderr).not.toContain("secret-slack-path");

    const page = notificationDeliveryPage.parse(json(await cli(["notifications", "--json", "--target", "ops"])));
    expect(page.deliveries).toHaveLength(1);
    const id = page.deliveries[0]!.id;
    expect(receiver.accepted().map((r) => r.headers["x-deploybot-delivery"])).toEqual([id]);

    const one = await cli(["notifications", id]);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/target:\s+ops \(webhook\)/);
    expect(one.stdout).toMatch(/ATTEMPT\s+AT\s+OUTCOME\s+HTTP/);
    expect(one.stdout).toMatch(/1\s+\S+\s+delivered\s+200/);
    expect(notificationDeliveryAnswer.parse(json(await cli(["notifications", id, "--json"]))).delivery.history).toHaveLength(1);

    expect(notificationDeliveryPage.parse(json(await cli(["notifications", "--json", "--status", "refused"]))).deliveries.map((d) => d.target)).toEqual(["chat"]);
    // a delivery given up says why, with the last attempt's error
    const [down] = notificationDeliveryPage.parse(json(await cli(["notifications", "--json", "--target", "down"]))).deliveries;
    expect(down).toMatchObject({ status: "failed", attempts: 1 });
    const gaveUp = await cli(["notifications", down!.id]);
    expect(gaveUp.stdout).toMatch(/why:\s+given up: no attempt succeeded within notifications\.retry_for_seconds \(last: .*ECONNREFUSED/);

    expect((await cli(["notifications", "--status", "bogus"])).code).toBe(2);
    expect((await cli(["notifications", "ntf_nope"])).code).toBe(4);
  });
});
