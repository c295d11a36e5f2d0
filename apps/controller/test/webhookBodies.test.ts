import { readdirSync, statSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startTestController } from "./server";

const MB = 1024 * 1024;
const BAD = `sha256=${"0".repeat(64)}`;
const spoolFiles = () => readdirSync(tmpdir()).filter((f) => f.startsWith(`deploybot-webhook-${process.pid}-`));
const until = async (what: string, check: () => boolean) => {
  for (let i = 0; i < 600; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
};

/** A webhook POST whose body the test writes piece by piece; `answer` settles with status, headers and JSON. */
function openDelivery(port: number, length: number, signature = BAD) {
  const req = http.request({
    host: "127.0.0.1",
    port,
    path: "/v1/webhooks/github",
    method: "POST",
    headers: { "content-type": "application/json", "content-length": String(length), "x-github-event": "push", "x-github-delivery": `d-${Math.random()}`, "x-hub-signature-256": signature },
  });
  const answer = new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: { error?: { code: string } } }>((resolve, reject) => {
    req.on("response", (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : {} }));
    });
    req.on("error", reject);
  });
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  let sent = 0;
  const send = async (bytes: number) => {
    const end = Math.min(length, sent + bytes);
    while (sent < end) {
      const n = Math.min(chunk.length, end - sent);
      sent += n;
      if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await new Promise((r) => req.once("drain", r));
    }
    if (sent >= length) req.end();
  };
  return { send, answer, abort: () => req.destroy() };
}

describe("POST /v1/webhooks/github reads unauthenticated bodies with bounds", () => {
  let ctl: Awaited<ReturnType<typeof startTestController>>;
  beforeAll(async () => {
    ctl = await startTestController(undefined, { DEPLOYBOT_WEBHOOK_SECRET: "It's a Secret to Everybody", DEPLOYBOT_WEBHOOK_MAX_IN_FLIGHT: "2" });
  });
  afterAll(async () => {
    await ctl?.stop();
  });

  test("a bad signature on a 25 MB body is refused without holding the body in memory: past 1 MB it waits on disk, then is removed", async () => {
    const delivery = openDelivery(ctl.port, 25 * MB);
    await delivery.send(12 * MB);
    await until("the unverified bytes on disk", () => spoolFiles().some((f) => statSync(join(tmpdir(), f)).size >= 8 * MB));
    await delivery.send(25 * MB);
    const answer = await delivery.answer;
    expect(answer.status).toBe(401);
    expect(answer.body.error).toMatchObject({ code: "invalid_signature" });
    expect(spoolFiles()).toEqual([]);
  });

  test("beyond DEPLOYBOT_WEBHOOK_MAX_IN_FLIGHT bodies being read, a delivery is answered 503 with the error envelope and Retry-After", async () => {
    const held = [openDelivery(ctl.port, 4 * MB), openDelivery(ctl.port, 4 * MB)];
    for (const h of held) await h.send(2 * MB);
    await until("two bodies being read", () => ctl.services.webhooks.bodies.reading === 2);
    const third = openDelivery(ctl.port, 1000);
    await third.send(1000);
    const busy = await third.answer;
    expect(busy.status).toBe(503);
    expect(busy.body.error).toMatchObject({ code: "webhook_busy" });
    expect(busy.headers["retry-after"]).toBe("5");
    for (const h of held) await h.send(4 * MB);
    for (const h of held) expect((await h.answer).status).toBe(401);
    expect(ctl.services.webhooks.bodies.reading).toBe(0);
    // the slots are free again: the next delivery is read (and refused for its signature)
    const next = openDelivery(ctl.port, 1000);
    await next.send(1000);
    expect((await next.answer).status).toBe(401);
    expect((await fetch(`${ctl.url}/healthz`)).status).toBe(200);
  });

  test("a malformed signature is refused before the body is read", async () => {
    const delivery = openDelivery(ctl.port, 25 * MB, "sha256=not-hex");
    await delivery.send(MB);
    const answer = await delivery.answer;
    expect(answer.status).toBe(401);
    expect(answer.body.error).toMatchObject({ code: "invalid_signature" });
    delivery.abort();
  });
});
