import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { errorBody, notificationDelivery, notificationDeliveryAnswer, notificationDeliveryPage, notificationWebhookBody } from "@deploybot/protocol";
import { afterEach, describe, expect, test } from "vitest";
import { parseAppsConfig } from "../src/services/appsConfig";
import { privateAddressProblem } from "../src/services/notificationHttp";
import { ADMIN, type Harness, makeHarness } from "./fixture";
import { promtoolCheck } from "../../../test/support/promtool";
import { type Receiver, startReceiver, verifyDelivery } from "./receiver";

const SECRET = "whsec-0123456789abcdef";
const ALL_EVENTS = "[deployment.succeeded, deployment.failed, deployment.rolled_back, app.crash_looping, host.offline, host.online, run.failed, agent.updated]";

const appsWith = (notifications: string) => `
apps:
  - name: web
    repo: acme/web
    url: https://git.example.test/acme/web.git
    hosts: [web-1]
    run:
      ports: ["8080:80"]
    schedules:
      - name: report
        cron: "*/10 * * * *"
        command: [sh, -c, "exit 3"]
notifications:
${notifications}
`;

const webhookTarget = (url: string, extra = "allow_private: true") => `  targets:
    - name: ops
      type: webhook
      url: ${url}
      secret: ${SECRET}
      events: ${ALL_EVENTS}
      ${extra}`;

type Agent = { id: string; token: string };

async function runNext(h: Harness, agent: Agent, status: "succeeded" | "failed", result: Record<string, unknown> = {}, error?: string) {
  const beat = await (await h.heartbeat(agent)).json();
  expect(beat.job).not.toBeNull();
  const { id, leaseId } = beat.job;
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status: "running" } });
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status, result, ...(error ? { error } : {}) } });
  return beat.job as { id: string; kind: string };
}

async function deploy(h: Harness, agent: Agent, ref: string, status: "succeeded" | "failed", error?: string) {
  const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref } });
  expect(res.status).toBe(201);
  await runNext(h, agent, status, status === "succeeded" ? { version: ref, image: `deploybot/web:${ref}` } : {}, error);
  return (await res.json()).deployment.id as string;
}

/** Sends what is due, as the controller's timer does every second. */
async function deliver(h: Harness) {
  await h.settle();
  await h.services.notifications.sendDue();
}

let receiver: Receiver | undefined;
afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
});

describe("notifications", () => {
  test("a receiver on 127.0.0.1 gets exactly one correctly signed delivery per event", async () => {
    receiver = await startReceiver();
    const h = await makeHarness({}, appsWith(webhookTarget(receiver.url)));
    const agent = await h.register("web-1"); // a first registration is not a host coming back

    const v1 = await deploy(h, agent, "v1", "succeeded");
    const v2 = await deploy(h, agent, "v2", "succeeded");
    const rollback = await h.call("POST", "/v1/apps/web/rollback", { token: ADMIN, body: {} });
    expect(rollback.status).toBe(201);
    const rb = (await rollback.json()).deployment.id as string;
    await runNext(h, agent, "succeeded");
    const v3 = await deploy(h, agent, "v3", "failed", "health check failed");

    // three exits within ten minutes: crash-looping (notified once, however many more come)
    const at = (s: number) => new Date(h.clock.now + s * 1000).toISOString();
    const exits = [1, 2, 3, 4, 5].map((s) => ({ seq: s, at: at(s), app: "web", kind: "exited", reason: `exited with code 1; restarting in ${s} s`, container: "web-1c", exitCode: 1 }));
    await h.heartbeat(agent, { appEvents: exits });

    // a scheduled run that fails
    for (let i = 0; i < 12; i++) {
      h.clock.advance(60_000);
      await h.services.scheduler.tick();
    }
    await h.settle();
    const run = await runNext(h, agent, "failed", { exitCode: 3 }, "exit code 3");
    expect(run.kind).toBe("run");

    // offline, and back
    h.clock.advance(h.config.heartbeatIntervalSeconds * 4 * 1000);
    await h.services.agents.flushLiveness();
    await h.services.agents.markOffline();
    await h.heartbeat(agent);
    await h.services.agents.flushLiveness();

    // the agent comes back as a newer version
    const reg = await h.call("POST", "/v1/agents/register", { token: agent.token, body: { hostname: "web-1", version: "test-2", heldJobIds: [] } });
    expect(reg.status).toBe(200);

    await deliver(h);
    await deliver(h); // nothing is sent twice

    const bodies = receiver.received.map((r) => {
      expect(verifyDelivery(SECRET, r.headers, r.body)).toBe(true);
      expect(verifyDelivery("another-secret-of-16", r.headers, r.body)).toBe(false);
      const body = notificationWebhookBody.parse(JSON.parse(r.body));
      expect(r.headers["x-deploybot-delivery"]).toBe(body.id);
      expect(r.headers["x-deploybot-event"]).toBe(body.event);
      expect(r.headers["content-type"]).toBe("application/json");
      return body;
    });
    // what each is about: a deployment or run by id, a host by name
    const about = (b: (typeof bodies)[number]) => (b.event.startsWith("deployment.") || b.event === "run.failed" ? b.data.id : (b.data.hostname ?? b.data.host));
    // one request per due delivery, all at once: they arrive in any order (on PostgreSQL the
    // claims of one pass commit in any order), each exactly once
    expect(bodies).toHaveLength(9);
    expect(bodies.map((b) => [b.event, about(b)])).toEqual(expect.arrayContaining([
      ["deployment.succeeded", v1],
      ["deployment.succeeded", v2],
      ["deployment.rolled_back", rb],
      ["deployment.failed", v3],
      ["app.crash_looping", "web-1"],
      ["run.failed", expect.stringMatching(/^run_/)],
      ["host.offline", "web-1"],
      ["host.online", "web-1"],
      ["agent.updated", "web-1"],
    ]));
    expect(new Set(bodies.map((b) => b.id)).size).toBe(bodies.length);
    expect(bodies.find((b) => b.event === "deployment.failed")!.summary).toBe(`web: deployment ${v3} failed: web-1: health check failed`);
    expect(bodies.find((b) => b.event === "app.crash_looping")!.summary).toMatch(/^web is crash-looping on web-1: 3 exits in 10 minutes/);
    expect(bodies.find((b) => b.event === "agent.updated")!.summary).toBe("agent on web-1 updated from test to test-2");

    const listed = await h.services.notifications.list({ limit: 50 });
    expect(listed).toHaveLength(9);
    for (const d of listed) {
      expect(notificationDelivery.parse(d)).toMatchObject({ target: "ops", type: "webhook", status: "delivered", attempts: 1 });
      expect(d.history).toEqual([expect.objectContaining({ attempt: 1, outcome: "delivered", statusCode: 200, error: null })]);
    }
  });

  test("a target gets only the events and apps it asked for", async () => {
    receiver = await startReceiver();
    const h = await makeHarness(
      {},
      appsWith(`  targets:
    - name: failures
      type: webhook
      url: ${receiver.url}
      secret: ${SECRET}
      events: [deployment.failed]
      allow_private: true
    - name: other-app
      type: webhook
      url: ${receiver.url}
      secret: ${SECRET}
      events: [deployment.succeeded, deployment.failed]
      apps: [api]
      allow_private: true`),
    );
    const agent = await h.register("web-1");
    await deploy(h, agent, "v1", "succeeded");
    const failed = await deploy(h, agent, "v2", "failed", "boom");
    await deliver(h);
    expect(receiver.received.map((r) => JSON.parse(r.body)).map((b) => [b.event, b.data.id])).toEqual([["deployment.failed", failed]]);
  });

  test("a slack-format target gets the documented body, and what it echoes of its URL is redacted in the record", async () => {
    receiver = await startReceiver();
    const slackUrl = `${receiver.url}/services/T000/B000/XXXXsecretXXXXtoken`;
    const h = await makeHarness(
      {},
      appsWith(`  targets:
    - name: chat
      type: slack
      url: ${slackUrl}
      events: [deployment.failed]
      allow_private: true`),
    );
    const agent = await h.register("web-1");
    const id = await deploy(h, agent, "v1", "failed", "exit <1> & done");
    receiver.answer(400, `invalid_payload for /hook/services/T000/B000/XXXXsecretXXXXtoken`);
    await deliver(h);
    expect(receiver.received).toHaveLength(1);
    const r = receiver.received[0]!;
    expect(r.headers["x-deploybot-signature-256"]).toBeUndefined();
    const body = JSON.parse(r.body);
    const delivery = (await h.services.notifications.list({ limit: 1 }))[0]!;
    const text = `:x: deploybot: web: deployment ${id} failed: web-1: exit &lt;1&gt; &amp; done`;
    expect(body).toEqual({
      text,
      blocks: [
        { type: "section", text: { type: "mrkdwn", text } },
        { type: "context", elements: [{ type: "mrkdwn", text: `deployment.failed · ${new Date(h.clock.now).toISOString()} · ${delivery.id}` }] },
      ],
    });
    expect(delivery).toMatchObject({ status: "pending", attempts: 1 });
    expect(delivery.history[0]).toMatchObject({ outcome: "failed", statusCode: 400 });
    expect(delivery.lastError).toContain("invalid_payload");
    expect(JSON.stringify(delivery)).not.toContain("XXXXsecretXXXXtoken");
  });

  test("an app's secret values are redacted from what a target receives", async () => {
    receiver = await startReceiver();
    const h = await makeHarness({}, appsWith(webhookTarget(receiver.url)));
    expect((await h.call("PUT", "/v1/apps/web/secrets/API_KEY", { token: ADMIN, body: { value: "sk-live-abcdef123456" } })).status).toBeLessThan(300);
    const agent = await h.register("web-1");
    await deploy(h, agent, "v1", "failed", "could not reach the API with key sk-live-abcdef123456");
    await deliver(h);
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.body).not.toContain("sk-live-abcdef123456");
    expect(JSON.parse(receiver.received[0]!.body).summary).toContain("********");
  });

  test("a private address without allow_private is refused and recorded, by address and by name", async () => {
    receiver = await startReceiver();
    const byName = receiver.url.replace("127.0.0.1", "localhost");
    const h = await makeHarness(
      {},
      appsWith(`  targets:
    - name: literal
      type: webhook
      url: ${receiver.url}
      secret: ${SECRET}
      events: [deployment.failed]
    - name: by-name
      type: slack
      url: ${byName}
      events: [deployment.failed]`),
    );
    const agent = await h.register("web-1");
    await deploy(h, agent, "v1", "failed", "boom");
    await deliver(h);
    h.clock.advance(3600_000);
    await deliver(h); // a refusal is final: nothing is retried
    expect(receiver.received).toHaveLength(0);
    const listed = await h.services.notifications.list({ limit: 10 });
    expect(listed.map((d) => [d.target, d.status, d.attempts])).toEqual(
      expect.arrayContaining([
        ["literal", "refused", 1],
        ["by-name", "refused", 1],
      ]),
    );
    for (const d of listed) {
      expect(d.history).toEqual([expect.objectContaining({ outcome: "refused", statusCode: null })]);
      expect(d.lastError).toMatch(
        d.target === "literal"
          ? /^refused: 127\.0\.0\.1, a loopback, link-local or private address; set allow_private: true on the target to allow it$/
          : /^refused: localhost resolves to (127\.0\.0\.1|::1), a loopback, link-local or private address; set allow_private: true/,
      );
    }
  });

  test("a failing receiver is retried with backoff until it answers, then never again", async () => {
    receiver = await startReceiver();
    const h = await makeHarness({}, appsWith(`${webhookTarget(receiver.url)}\n  first_retry_seconds: 10\n  max_backoff_seconds: 40\n  retry_for_seconds: 3600`));
    const agent = await h.register("web-1");
    await deploy(h, agent, "v1", "failed", "boom");
    receiver.answer(503, "busy");
    await deliver(h);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      const d = (await h.services.notifications.list({ limit: 1 }))[0]!;
      const wait = Date.parse(d.nextAttemptAt!) - h.clock.now;
      waits.push(wait);
      h.clock.advance(wait - 1);
      await deliver(h);
      expect(receiver.received).toHaveLength(i + 1); // not due yet
      h.clock.advance(1);
      await deliver(h);
    }
    // 10, 20, 40, 40 s (±20%)
    expect(waits.map((w, i) => w / [10, 20, 40, 40][i]! / 1000).every((r) => r >= 0.8 && r <= 1.2)).toBe(true);
    receiver.answer(200, "ok");
    h.clock.advance(60_000);
    await deliver(h);
    h.clock.advance(3600_000);
    await deliver(h);
    const d = (await h.services.notifications.list({ limit: 1 }))[0]!;
    expect(d).toMatchObject({ status: "delivered", attempts: 6, nextAttemptAt: null });
    expect(d.history.map((a) => a.statusCode)).toEqual([503, 503, 503, 503, 503, 200]);
    expect(receiver.received.map((r) => r.headers["x-deploybot-delivery"])).toEqual(Array(6).fill(d.id));
  });

  test("a receiver that never answers is cut off after timeout_seconds and retried", async () => {
    const silent = createServer(() => {}); // takes the request and never answers
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const port = (silent.address() as AddressInfo).port;
    try {
      const h = await makeHarness({}, appsWith(`${webhookTarget(`http://127.0.0.1:${port}/hook`)}\n  timeout_seconds: 0.5`));
      const agent = await h.register("web-1");
      await deploy(h, agent, "v1", "failed", "boom");
      await deliver(h);
      const d = (await h.services.notifications.list({ limit: 1 }))[0]!;
      expect(d).toMatchObject({ status: "pending", attempts: 1 });
      expect(d.history[0]).toMatchObject({ outcome: "failed", statusCode: null, error: "ETIMEDOUT: no answer within 500 ms" });
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  test("a delivery that fails past retry_for_seconds is given up", async () => {
    receiver = await startReceiver();
    const h = await makeHarness({}, appsWith(`${webhookTarget(receiver.url)}\n  first_retry_seconds: 10\n  retry_for_seconds: 30`));
    const agent = await h.register("web-1");
    await deploy(h, agent, "v1", "failed", "boom");
    receiver.answer(500);
    for (let i = 0; i < 10; i++) {
      await deliver(h);
      h.clock.advance(60_000);
    }
    const d = (await h.services.notifications.list({ limit: 1 }))[0]!;
    expect(d.status).toBe("failed");
    expect(d.attempts).toBeGreaterThanOrEqual(2);
    expect(d.attempts).toBeLessThanOrEqual(3);
    expect(receiver.received).toHaveLength(d.attempts);

    // what a scrape tells Prometheus: one given up, then one delivered and one waiting
    receiver.answer(200);
    await deploy(h, agent, "v2", "succeeded");
    await deliver(h);
    receiver.answer(503);
    await deploy(h, agent, "v3", "failed", "boom");
    await deliver(h);
    const text = await (await h.call("GET", "/metrics", { token: ADMIN })).text();
    const check = await promtoolCheck(text);
    expect(check.output).toBe("");
    const series = text.split("\n").filter((l) => l.startsWith("deploybot_notification_deliveries{"));
    expect(series.sort()).toEqual([
      'deploybot_notification_deliveries{target="ops",status="delivered"} 1',
      'deploybot_notification_deliveries{target="ops",status="failed"} 1',
      'deploybot_notification_deliveries{target="ops",status="pending"} 1',
    ]);
  });

  test("a target removed by a reload drops its pending deliveries", async () => {
    receiver = await startReceiver();
    const h = await makeHarness({}, appsWith(webhookTarget(receiver.url)));
    const agent = await h.register("web-1");
    await deploy(h, agent, "v1", "failed", "boom");
    await h.settle();
    h.setApps(appsWith("  targets: []"));
    await h.services.notifications.sendDue();
    expect(receiver.received).toHaveLength(0);
    expect((await h.services.notifications.list({ limit: 1 }))[0]).toMatchObject({ status: "dropped", attempts: 0, lastError: "target 'ops' is no longer configured (as a webhook target)" });
  });
});

describe("notification settings in apps.yaml", () => {
  test("a bad target is refused with its line and field", () => {
    expect(() => parseAppsConfig(appsWith(`  targets:\n    - name: ops\n      type: webhook\n      url: https://hooks.example.com/x\n      events: [deployment.failed]`), "apps.yaml")).toThrow(
      /apps\.yaml:\d+: notifications\.targets\[0\]\.secret: a webhook target needs a secret/,
    );
    expect(() => parseAppsConfig(appsWith(`  targets:\n    - name: ops\n      type: slack\n      url: ftp://hooks.example.com/x\n      events: [deployment.failed]`), "apps.yaml")).toThrow(
      /notifications\.targets\[0\]\.url: must be an http/,
    );
    expect(() => parseAppsConfig(appsWith(`  targets:\n    - name: ops\n      type: slack\n      url: https://hooks.example.com/x\n      events: [deployment.exploded]`), "apps.yaml")).toThrow(
      /notifications\.targets\[0\]\.events\[0\]/,
    );
  });

  test("which addresses are private", () => {
    for (const a of ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "::", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1"]) {
      expect(privateAddressProblem(a), a).not.toBeNull();
    }
    for (const a of ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1"]) {
      expect(privateAddressProblem(a), a).toBeNull();
    }
  });
});

describe("GET /v1/notifications/deliveries", () => {
  test("read scope lists deliveries with every attempt; filters; one by id; 401, 400, 404; a token limited to apps sees those apps' only", async () => {
    receiver = await startReceiver();
    const h = await makeHarness({}, appsWith(webhookTarget(receiver.url)));
    const agent = await h.register("web-1");
    const failed = await deploy(h, agent, "v1", "failed", "boom");
    await h.call("POST", "/v1/agents/register", { token: agent.token, body: { hostname: "web-1", version: "test-2", heldJobIds: [] } });
    await deliver(h);
    const token = async (body: Record<string, unknown>) => (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body })).json()).token as string;
    const read = await token({ name: "reader", scope: "read" });

    const all = notificationDeliveryPage.parse(await (await h.call("GET", "/v1/notifications/deliveries", { token: read })).json());
    expect(all.deliveries.map((d) => [d.event, d.status, d.history.length])).toEqual([
      ["agent.updated", "delivered", 1],
      ["deployment.failed", "delivered", 1],
    ]);
    const failures = notificationDeliveryPage.parse(await (await h.call("GET", "/v1/notifications/deliveries?event=deployment.failed&status=delivered&target=ops&limit=5", { token: read })).json());
    expect(failures.deliveries.map((d) => JSON.parse(receiver!.received.find((r) => r.headers["x-deploybot-delivery"] === d.id)!.body).data.id)).toEqual([failed]);
    const id = failures.deliveries[0]!.id;
    const one = notificationDeliveryAnswer.parse(await (await h.call("GET", `/v1/notifications/deliveries/${id}`, { token: read })).json());
    expect(one.delivery).toEqual(failures.deliveries[0]);

    expect((await h.call("GET", "/v1/notifications/deliveries")).status).toBe(401);
    const bad = await h.call("GET", "/v1/notifications/deliveries?status=lost", { token: read });
    expect(bad.status).toBe(400);
    expect(errorBody.parse(await bad.json()).error.code).toBe("invalid_query");
    const missing = await h.call("GET", "/v1/notifications/deliveries/ntf_nope", { token: read });
    expect(missing.status).toBe(404);
    expect(errorBody.parse(await missing.json()).error.code).toBe("not_found");

    const apiOnly = await token({ name: "api-reader", scope: "read", apps: ["api"] });
    expect(notificationDeliveryPage.parse(await (await h.call("GET", "/v1/notifications/deliveries", { token: apiOnly })).json()).deliveries).toEqual([]);
    expect((await h.call("GET", `/v1/notifications/deliveries/${id}`, { token: apiOnly })).status).toBe(404);
    const webOnly = await token({ name: "web-reader", scope: "read", apps: ["web"] });
    expect(notificationDeliveryPage.parse(await (await h.call("GET", "/v1/notifications/deliveries", { token: webOnly })).json()).deliveries.map((d) => d.id)).toEqual([id]);
  });
});
