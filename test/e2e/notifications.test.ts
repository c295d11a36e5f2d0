import type { NotificationDelivery } from "../../packages/protocol/src/notifications";
import { afterEach, describe, expect, test } from "vitest";
import { type Receiver, startReceiver, verifyDelivery } from "../../apps/controller/test/receiver";
import { type ControllerProcess, controllerProcess, JOIN, waitFor } from "../harness/processes";

// Real controller processes and a real receiver on 127.0.0.1; the controller is killed with
// SIGKILL, so nothing of it survives but its database file.

const SECRET = "e2e-notification-secret";
/** How long the receiver is down in the outage test: the figure, real time. */
const OUTAGE_MS = 30_000;

const appsYaml = (url: string) => `
apps:
  - name: web
    repo: acme/web
    hosts: [web-1]
notifications:
  first_retry_seconds: 1
  max_backoff_seconds: 5
  targets:
    - name: ops
      type: webhook
      url: ${url}
      secret: ${SECRET}
      events: [agent.updated]
      allow_private: true
`;

let ctl: ControllerProcess | undefined;
let receiver: Receiver | undefined;
afterEach(async () => {
  await ctl?.stop("SIGKILL");
  await receiver?.close();
  ctl = receiver = undefined;
});

/** Registers web-1 (or re-registers it with its token) as `version`: from the second version on, an agent.updated event. */
async function registerAs(c: ControllerProcess, version: string, token = JOIN): Promise<string> {
  const res = await fetch(`${c.url}/v1/agents/register`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ hostname: "web-1", version, heldJobIds: [] }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { token: string }).token;
}

/** Every attempt the controller recorded, oldest first, as `GET /v1/notifications/deliveries` shows it. */
type Attempt = { id: string; status: string; attempts: number; outcome: string | null; statusCode: number | null; error: string | null };

async function attemptsIn(c: ControllerProcess): Promise<Attempt[]> {
  const { status, body } = await c.api<{ deliveries: NotificationDelivery[] }>("GET", "/v1/notifications/deliveries?limit=500");
  expect(status).toBe(200);
  return [...body.deliveries].reverse().flatMap((d): Attempt[] =>
    d.history.length === 0
      ? [{ id: d.id, status: d.status, attempts: d.attempts, outcome: null, statusCode: null, error: null }]
      : d.history.map((a) => ({ id: d.id, status: d.status, attempts: d.attempts, outcome: a.outcome, statusCode: a.statusCode, error: a.error })),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function checkAccepted(r: Receiver, count: number) {
  const accepted = r.accepted();
  expect(accepted).toHaveLength(count);
  for (const a of accepted) expect(verifyDelivery(SECRET, a.headers, a.body)).toBe(true);
  const ids = accepted.map((a) => a.headers["x-deploybot-delivery"]);
  expect(new Set(ids).size).toBe(count);
  return accepted.map((a) => JSON.parse(a.body) as { id: string; event: string; data: { to: string } });
}

describe("notifications from a real controller", () => {
  test("a receiver down for 30 s gets the delivery once it is back, retried with backoff, once", async () => {
    receiver = await startReceiver();
    ctl = await controllerProcess(appsYaml(receiver.url));
    await receiver.down();
    const token = await registerAs(ctl, "1.0.0");
    await registerAs(ctl, "1.0.1", token);
    await sleep(OUTAGE_MS);
    const during = await attemptsIn(ctl);
    // 1 + 2 + 4 + 5 + 5 ... s: at least five refused connections in 30 s
    expect(during.length).toBeGreaterThanOrEqual(5);
    expect(during.every((a) => a.status === "pending" && a.outcome === "failed" && a.statusCode === null && /ECONNREFUSED/.test(a.error ?? ""))).toBe(true);

    await receiver.up();
    await waitFor("the delivery", async () => (receiver!.accepted().length > 0 ? true : undefined), 60_000);
    await sleep(3_000); // a few more ticks of the sender: nothing more comes
    const [body] = checkAccepted(receiver, 1);
    expect(body).toMatchObject({ event: "agent.updated", data: { from: "1.0.0", to: "1.0.1" } });
    const after = await attemptsIn(ctl);
    expect(after.at(-1)).toMatchObject({ status: "delivered", outcome: "delivered", statusCode: 200, attempts: after.length });
    expect(receiver.received).toHaveLength(1); // the port was closed: every failed attempt was refused before any request
  });

  test("across a controller killed with SIGKILL, each change is delivered exactly once from the outbox", async () => {
    receiver = await startReceiver();
    // 1. killed after the change committed and before the drainer made its delivery
    ctl = await controllerProcess(appsYaml(receiver.url), { DEPLOYBOT_TEST_PAUSE_CONSEQUENCES: "1" });
    const token = await registerAs(ctl, "1.0.0");
    const second = await registerAs(ctl, "1.0.1", token);
    await sleep(1_500);
    expect(receiver.received).toHaveLength(0);
    expect(await attemptsIn(ctl)).toHaveLength(0);
    expect(await ctl.stop("SIGKILL")).toBeNull();
    await ctl.start({ DEPLOYBOT_TEST_PAUSE_CONSEQUENCES: "0" });
    await waitFor("the first delivery", async () => (receiver!.accepted().length > 0 ? true : undefined), 60_000);

    // 2. killed after the delivery was made and attempted, before it succeeded
    receiver.answer(503, "try later");
    await registerAs(ctl, "1.0.2", second);
    await waitFor("a failed attempt", async () => ((await attemptsIn(ctl!)).some((a) => a.statusCode === 503) ? true : undefined), 60_000);
    expect(await ctl.stop("SIGKILL")).toBeNull();
    receiver.answer(200, "ok");
    await ctl.start();
    await waitFor("the second delivery", async () => (receiver!.accepted().length > 1 ? true : undefined), 60_000);
    // The receiver's 200 and the controller's record of it are two steps: a kill between them
    // sends the delivery again at restart (at least once; the receiver dedupes by
    // x-deploybot-delivery). Step 3 is about a delivery already recorded, so wait for the record.
    await waitFor("the second delivery recorded", async () => (new Set((await attemptsIn(ctl!)).filter((a) => a.status === "delivered").map((a) => a.id)).size >= 2 ? true : undefined), 60_000);

    // 3. one more restart sends nothing again
    await ctl.stop("SIGKILL");
    await ctl.start();
    await sleep(3_000);
    const bodies = checkAccepted(receiver, 2);
    expect(bodies.map((b) => b.data.to)).toEqual(["1.0.1", "1.0.2"]);
    const records = await attemptsIn(ctl);
    expect([...new Set(records.map((r) => `${r.id} ${r.status}`))]).toEqual(bodies.map((b) => `${b.id} delivered`));
  });
});
