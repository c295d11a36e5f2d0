import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { deployment as deploymentSchema } from "@deploybot/protocol";
import { describe, expect, test } from "vitest";
import { ADMIN, type Harness, makeHarness } from "./fixture";

const SECRET = "It's a Secret to Everybody";
const fixture = (name: string) => readFileSync(new URL(`./fixtures/github/${name}`, import.meta.url), "utf8");
const PUSH = JSON.parse(fixture("push.json"));
const PING = fixture("ping.json");
const PUSHED_SHA = PUSH.after as string;

const sign = (body: string, secret = SECRET) => `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
let deliveries = 0;
const newDeliveryId = () => `72d3162e-cc78-11e3-81ab-${String(++deliveries).padStart(12, "0")}`;

interface Send {
  event?: string;
  deliveryId?: string;
  signature?: string | null;
  contentType?: string;
}

/** Sends `body` as GitHub does: raw bytes, signed with the shared secret unless told otherwise. */
async function deliver(h: Pick<Harness, "app">, body: string | object, opts: Send = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const headers: Record<string, string> = {
    "content-type": opts.contentType ?? "application/json",
    "user-agent": "GitHub-Hookshot/044aadd",
    "x-github-event": opts.event ?? "push",
    "x-github-delivery": opts.deliveryId ?? newDeliveryId(),
    "x-github-hook-id": "467512345",
  };
  const signature = opts.signature === undefined ? sign(text) : opts.signature;
  if (signature !== null) headers["x-hub-signature-256"] = signature;
  return h.app.request("/v1/webhooks/github", { method: "POST", headers, body: text });
}

const push = (overrides: Record<string, unknown> = {}) => ({ ...PUSH, ...overrides });
const commitMessage = (message: string) => push({ head_commit: { ...PUSH.head_commit, message } });

const jobsOf = async (h: Harness) => (await (await h.call("GET", "/v1/jobs", { token: ADMIN })).json()).jobs as { id: string; target: unknown; spec: { source: unknown }; deploymentId: string }[];
const deliveryLog = async (h: Harness, limit?: number) =>
  (await (await h.call("GET", `/v1/webhooks/deliveries${limit ? `?limit=${limit}` : ""}`, { token: ADMIN })).json()).deliveries as Record<string, unknown>[];

const harness = () => makeHarness({ webhookSecret: SECRET });

describe("POST /v1/webhooks/github: happy path", () => {
  test("a signed push to the app's branch deploys the pushed sha to its hosts", async () => {
    const h = await harness();
    const id = newDeliveryId();
    // the fixture's own bytes (pretty-printed): the signature covers the raw body, not a re-serialisation
    const res = await deliver(h, fixture("push.json"), { deliveryId: id });
    expect(res.status).toBe(202);
    const body = await res.json();
    expect(body).toMatchObject({ deliveryId: id, event: "push", outcome: "deployed", repo: "acme/web", ref: "refs/heads/main", sha: PUSHED_SHA });

    const d = deploymentSchema.parse((await (await h.call("GET", `/v1/deployments/${body.deploymentId}`, { token: ADMIN })).json()).deployment);
    expect(d).toMatchObject({ app: "web", sha: PUSHED_SHA, ref: "main", trigger: "webhook", triggeredBy: id, hosts: ["web-1"] });

    const jobs = await jobsOf(h);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({ deploymentId: d.id, target: { host: "web-1" } });
    expect(jobs[0]!.spec.source).toEqual({ type: "git", url: "https://git.example.test/acme/web.git", ref: PUSHED_SHA });

    expect(await deliveryLog(h)).toEqual([expect.objectContaining({ deliveryId: id, outcome: "deployed", deploymentId: d.id })]);
  });

  test("the repository name matches apps.yaml case-insensitively", async () => {
    const h = await harness();
    const res = await deliver(h, push({ repository: { ...PUSH.repository, full_name: "ACME/Web" } }));
    expect((await res.json()).outcome).toBe("deployed");
  });

  test("a hook set to the form content type (payload=...) works too", async () => {
    const h = await harness();
    const form = new URLSearchParams({ payload: JSON.stringify(PUSH) }).toString();
    const res = await deliver(h, form, { contentType: "application/x-www-form-urlencoded" });
    expect(res.status).toBe(202);
    expect(await jobsOf(h)).toHaveLength(1);
  });

  test("ping is answered with pong and recorded", async () => {
    const h = await harness();
    const res = await deliver(h, PING, { event: "ping" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ outcome: "pong", event: "ping" });
    expect((await deliveryLog(h))[0]).toMatchObject({ event: "ping", outcome: "pong" });
  });

  test("other events are accepted and ignored", async () => {
    const h = await harness();
    const res = await deliver(h, { action: "opened", issue: { number: 1 } }, { event: "issues" });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ outcome: "ignored", reason: "event 'issues' is not handled" });
    expect(await jobsOf(h)).toEqual([]);
  });
});

describe("POST /v1/webhooks/github: security", () => {
  const RAW = fixture("push.json");
  test.for([
    ["forged (wrong secret)", RAW, sign(RAW, "not the secret")],
    ["tampered (body changed after signing)", RAW.replace("refs/heads/main", "refs/heads/prod"), sign(RAW)],
    ["missing signature", RAW, null],
    ["sha1 signature only", RAW, `sha1=${createHmac("sha1", SECRET).update(RAW).digest("hex")}`],
    ["truncated signature", RAW, sign(RAW).slice(0, 20)],
    ["signature of an empty secret", RAW, sign(RAW, "")],
  ] as const)("%s: 401 and nothing created or recorded", async ([, body, signature]) => {
    const h = await harness();
    const res = await deliver(h, body, { signature });
    expect(res.status).toBe(401);
    expect((await res.json()).error.code).toBe("invalid_signature");
    expect(await jobsOf(h)).toEqual([]);
    expect(await deliveryLog(h)).toEqual([]);
  });

  test("a replayed delivery id is a no-op answered with the first outcome", async () => {
    const h = await harness();
    const id = newDeliveryId();
    const first = await (await deliver(h, PUSH, { deliveryId: id })).json();
    const again = await deliver(h, PUSH, { deliveryId: id });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ duplicate: true, deliveryId: id, outcome: "deployed", deploymentId: first.deploymentId });
    expect(await jobsOf(h)).toHaveLength(1);
    expect(await deliveryLog(h)).toHaveLength(1);
  });

  test("concurrent redeliveries of one id create one deployment", async () => {
    const h = await harness();
    const id = newDeliveryId();
    const answers = await Promise.all([1, 2, 3].map(() => deliver(h, PUSH, { deliveryId: id }).then((r) => r.json())));
    expect(answers.filter((a) => a.duplicate)).toHaveLength(2);
    // a copy that arrives while the first is being decided answers "processing", without an id yet
    expect(new Set(answers.map((a) => a.deploymentId).filter(Boolean)).size).toBe(1);
    expect(await jobsOf(h)).toHaveLength(1);
  });

  test("the same signed push replayed under a new delivery id deploys nothing and is recorded as a duplicate", async () => {
    const h = await harness();
    const first = await (await deliver(h, PUSH)).json();
    expect(first.outcome).toBe("deployed");
    for (const id of [newDeliveryId(), newDeliveryId()]) {
      const replay = await deliver(h, PUSH, { deliveryId: id });
      expect(replay.status).toBe(200);
      expect(await replay.json()).toMatchObject({ deliveryId: id, outcome: "duplicate", deploymentId: first.deploymentId });
    }
    expect(await jobsOf(h)).toHaveLength(1);
    const log = await deliveryLog(h);
    expect(log.map((d) => d.outcome)).toEqual(["duplicate", "duplicate", "deployed"]);
    // concurrent replays under different ids: still one deployment, decided by the database
    const other = push({ after: "b".repeat(40) });
    await Promise.all([1, 2, 3].map(() => deliver(h, other)));
    expect(await jobsOf(h)).toHaveLength(2);
  });

  test("the delivery id is taken in the database, so a second controller on the same file sees it", async () => {
    const h = await harness();
    const id = newDeliveryId();
    await deliver(h, PUSH, { deliveryId: id });
    // a fresh service on the same database (another process) has no memory of the first
    const { WebhookService } = await import("../src/services/webhooks");
    const deps = (h.services.jobs as unknown as { deps: ConstructorParameters<typeof WebhookService>[0] }).deps;
    const second = new WebhookService(deps, h.services.deployments);
    const answer = await second.receive({ event: "push", deliveryId: id, signature: sign(JSON.stringify(PUSH)), contentType: "application/json", body: JSON.stringify(PUSH) });
    expect(answer.body).toMatchObject({ duplicate: true, outcome: "deployed" });
    expect(await jobsOf(h)).toHaveLength(1);
  });

  test("without DEPLOYBOT_WEBHOOK_SECRET webhooks are disabled (503)", async () => {
    const h = await makeHarness();
    const res = await deliver(h, PUSH);
    expect(res.status).toBe(503);
    expect((await res.json()).error.code).toBe("webhooks_disabled");
    expect(await jobsOf(h)).toEqual([]);
  });

  test("signed garbage is a 400 invalid_payload, recorded as rejected", async () => {
    const h = await harness();
    for (const garbage of ["{not json", JSON.stringify({ hello: "world" })]) {
      const res = await deliver(h, garbage);
      expect(res.status).toBe(400);
      expect((await res.json()).error.code).toBe("invalid_payload");
    }
    expect(await jobsOf(h)).toEqual([]);
    expect((await deliveryLog(h)).map((d) => d.outcome)).toEqual(["rejected", "rejected"]);
  });

  test("the deliveries list needs the read scope", async () => {
    const h = await harness();
    expect((await h.call("GET", "/v1/webhooks/deliveries")).status).toBe(401);
  });
});

describe("POST /v1/webhooks/github: pushes that deploy nothing", () => {
  test.for([
    ["another branch", push({ ref: "refs/heads/feature/login" }), "branch 'feature/login' is not 'main'"],
    [
      "a deleted branch",
      push({ after: "0000000000000000000000000000000000000000", deleted: true, head_commit: null, commits: [] }),
      "branch 'main' was deleted",
    ],
    ["an unmapped repository", push({ repository: { ...PUSH.repository, full_name: "acme/other" } }), "no app in apps.yaml has repo 'acme/other'"],
    ["a tag", push({ ref: "refs/tags/v1.2.0", base_ref: "refs/heads/main" }), "tag pushes are not deployed"],
    ["[skip deploy] in the head commit", commitMessage("Fix typo [skip deploy]"), "[skip deploy]"],
    ["[skip ci] in the head commit", commitMessage("Docs\n\n[skip ci]"), "[skip ci]"],
  ] as const)("%s: ignored with its reason, nothing created", async ([, payload, reason]) => {
    const h = await harness();
    const id = newDeliveryId();
    const res = await deliver(h, payload, { deliveryId: id });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.outcome).toBe("ignored");
    expect(body.reason).toContain(reason);
    expect(await jobsOf(h)).toEqual([]);
    expect(await deliveryLog(h)).toEqual([expect.objectContaining({ deliveryId: id, outcome: "ignored", reason: body.reason, deploymentId: null })]);
  });

  test("a NUL character in the ref is refused and recorded, not a 500 that left the delivery 'processing'", async () => {
    const h = await harness();
    const id = newDeliveryId();
    const res = await deliver(h, push({ ref: "refs/heads/ma\u0000in" }), { deliveryId: id });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe("invalid_payload");
    expect(await jobsOf(h)).toEqual([]);
    expect(await deliveryLog(h)).toEqual([expect.objectContaining({ deliveryId: id, outcome: "rejected", ref: null, reason: expect.stringContaining("NUL") })]);
    expect(h.logLines.filter((l) => l.includes("unhandled error"))).toEqual([]);
  });

  test("an app with deploy_on_push: false ignores pushes", async () => {
    const h = await makeHarness({ webhookSecret: SECRET }, "apps:\n  - name: web\n    repo: acme/web\n    deploy_on_push: false\n    hosts: [web-1]\n");
    const res = await deliver(h, PUSH);
    expect(await res.json()).toMatchObject({ outcome: "ignored", reason: "app 'web' has deploy_on_push: false" });
  });
});

describe("GET /v1/webhooks/deliveries", () => {
  test("lists deliveries newest first, up to limit", async () => {
    const h = await harness();
    await deliver(h, PING, { event: "ping" });
    h.clock.advance(1000);
    await deliver(h, push({ ref: "refs/heads/dev" }));
    h.clock.advance(1000);
    await deliver(h, PUSH);
    const all = await deliveryLog(h);
    expect(all.map((d) => d.outcome)).toEqual(["deployed", "ignored", "pong"]);
    expect(all[0]).toMatchObject({ receivedAt: "2026-11-22T12:00:02.000Z" });
    expect(await deliveryLog(h, 1)).toHaveLength(1);
  });
});

describe("a failure on our side while deploying a push", () => {
  test("is not recorded, so GitHub's redelivery deploys it", async () => {
    const h = await harness();
    const id = newDeliveryId();
    const create = h.services.deployments.create.bind(h.services.deployments);
    h.services.deployments.create = async () => {
      throw new Error("disk full");
    };
    const first = await deliver(h, PUSH, { deliveryId: id });
    expect(first.status).toBe(500);
    expect(await deliveryLog(h)).toEqual([]);
    h.services.deployments.create = create;
    const again = await deliver(h, PUSH, { deliveryId: id });
    expect(again.status).toBe(202);
    expect((await again.json()).outcome).toBe("deployed");
    expect(await jobsOf(h)).toHaveLength(1);
  });
});

describe("a monorepo: several apps of one repository", () => {
  const MONO = `
apps:
  - name: mono-api
    repo: acme/web
    url: https://git.example.test/acme/web.git
    hosts: [api-1]
    build: { dockerfile: Dockerfile, context: services/api }
  - name: mono-worker
    repo: acme/web
    hosts: [worker-1]
    build: { dockerfile: worker.Dockerfile, context: services/worker }
  - name: mono-docs
    repo: acme/web
    branch: gh-pages
    hosts: [docs-1]
`;
  const monoHarness = () => makeHarness({ webhookSecret: SECRET }, MONO);

  test("one signed push deploys every app of the repository on that branch, each with its own build", async () => {
    const h = await monoHarness();
    const res = await deliver(h, fixture("push.json"));
    expect(res.status).toBe(202);
    const body = await res.json();
    expect(body).toMatchObject({ outcome: "deployed", sha: PUSHED_SHA });
    expect(body.reason).toContain("mono-api");
    expect(body.reason).toContain("mono-worker");
    expect(body.reason).toContain("branch 'main' is not 'gh-pages', the branch app 'mono-docs' deploys");

    const jobs = (await (await h.call("GET", "/v1/jobs", { token: ADMIN })).json()).jobs as { app: string; target: unknown; spec: { build: { context: string; dockerfile: string } } }[];
    const byApp = Object.fromEntries(jobs.map((j) => [j.app, j]));
    expect(Object.keys(byApp).sort()).toEqual(["mono-api", "mono-worker"]);
    expect(byApp["mono-api"]).toMatchObject({ target: { host: "api-1" }, spec: { build: { context: "services/api", dockerfile: "Dockerfile" } } });
    expect(byApp["mono-worker"]).toMatchObject({ target: { host: "worker-1" }, spec: { build: { context: "services/worker", dockerfile: "worker.Dockerfile" } } });

    // a redelivery of the same push deploys nothing more
    const again = await deliver(h, fixture("push.json"), { deliveryId: body.deliveryId });
    expect((await again.json()).duplicate).toBe(true);
    expect((await (await h.call("GET", "/v1/jobs", { token: ADMIN })).json()).jobs).toHaveLength(2);
  });

  test("the seeds' {repo, ref, host} form picks the repository's app on that host, and refuses to guess", async () => {
    const h = await monoHarness();
    const onHost = await h.call("POST", "/v1/jobs", { token: ADMIN, body: { repo: "acme/web", ref: "main", host: "worker-1" } });
    expect(onHost.status).toBe(201);
    expect((await onHost.json()).job.app).toBe("mono-worker");
    const elsewhere = await h.call("POST", "/v1/jobs", { token: ADMIN, body: { repo: "acme/web", ref: "main", host: "other-1" } });
    expect(elsewhere.status).toBe(422);
    expect((await elsewhere.json()).error.code).toBe("ambiguous_repo");
  });
});
