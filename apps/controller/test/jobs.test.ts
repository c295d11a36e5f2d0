import { job as jobSchema, jobPage } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { ADMIN, seedJob, test } from "./fixture";

const specJob = (overrides: Record<string, unknown> = {}) => ({
  spec: { kind: "build", app: "web", source: { type: "files", files: { Dockerfile: "FROM scratch\n" } } },
  target: { labels: ["builder"] },
  ...overrides,
});

describe("POST /v1/jobs", () => {
  test("the seeds' {repo, ref, host} resolves the app from apps.yaml", async ({ h }) => {
    const res = await h.submit(seedJob);
    expect(res.status).toBe(201);
    const job = jobSchema.parse((await res.json()).job);
    expect(job).toMatchObject({ kind: "deploy", app: "web", status: "pending", target: { host: "web-1" } });
    expect(job.spec.source).toEqual({ type: "git", url: "https://git.example.test/acme/web.git", ref: "main" });
    expect(job.spec.run?.ports).toEqual(["8080:80"]);
  });

  test("an unknown repo is a 422 naming it", async ({ h }) => {
    const res = await h.submit({ ...seedJob, repo: "acme/nope" });
    expect(res.status).toBe(422);
    const { error } = await res.json();
    expect(error).toMatchObject({ code: "unknown_repo" });
    expect(error.message).toContain("acme/nope");
  });

  test.for([
    ["--upload-pack=touch /tmp/x", "starts with '-'"],
    ["main\nx", "control character"],
    ["a..b", "'..'"],
    ["feature/x.lock", ".lock"],
    ["refs/heads/", "empty path component"],
    ["a b", "space"],
  ])("refuses the ref %j", async ([ref, reason], { h }) => {
    const res = await h.submit({ ...seedJob, ref });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.code).toBe("invalid_body");
    expect(error.message).toContain(reason);
    expect((await h.call("GET", "/v1/jobs", { token: ADMIN }).then((r) => r.json())).jobs).toEqual([]);
  });

  test("accepts a full spec aimed at labels", async ({ h }) => {
    const res = await h.submit(specJob());
    expect(res.status).toBe(201);
    expect((await res.json()).job).toMatchObject({ kind: "build", target: { labels: ["builder"] } });
  });

  test("refuses path traversal in a files source", async ({ h }) => {
    const res = await h.submit(
      specJob({ spec: { kind: "build", app: "web", source: { type: "files", files: { "../etc/passwd": "x" } } } }),
    );
    expect(res.status).toBe(400);
    expect((await res.json()).error.message).toContain("relative path");
  });

  test("an active job with the same repo+ref+target is returned, not duplicated", async ({ h }) => {
    const first = await h.submit(seedJob);
    const again = await h.submit(seedJob);
    expect(again.status).toBe(200);
    expect((await again.json()).job.id).toBe((await first.json()).job.id);
    const other = await h.submit({ ...seedJob, ref: "v2" });
    expect(other.status).toBe(201);
  });

  test("a finished job does not block a new one", async ({ h }) => {
    const first = (await (await h.submit(seedJob)).json()).job;
    await h.call("POST", `/v1/jobs/${first.id}/cancel`, { token: ADMIN });
    const again = await h.submit(seedJob);
    expect(again.status).toBe(201);
  });

  test("Idempotency-Key replays the first answer and refuses a different body", async ({ h }) => {
    const headers = { "idempotency-key": "k-1" };
    const first = await h.call("POST", "/v1/jobs", { token: ADMIN, body: specJob(), headers });
    const replay = await h.call("POST", "/v1/jobs", { token: ADMIN, body: specJob(), headers });
    expect(first.status).toBe(201);
    expect(replay.status).toBe(201);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect((await replay.json()).job.id).toBe((await first.json()).job.id);
    const different = await h.call("POST", "/v1/jobs", {
      token: ADMIN,
      body: specJob({ target: { host: "web-2" } }),
      headers,
    });
    expect(different.status).toBe(422);
    expect((await different.json()).error.code).toBe("idempotency_key_reused");
    const all = jobPage.parse(await (await h.call("GET", "/v1/jobs", { token: ADMIN })).json());
    expect(all.jobs).toHaveLength(1);
  });

  test("a read token cannot submit; a deploy token can", async ({ h }) => {
    const read = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "ro", scope: "read" } })).json()).token;
    const deploy = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "ci", scope: "deploy" } })).json()).token;
    expect((await h.submit(seedJob, read)).status).toBe(403);
    expect((await h.submit(seedJob, deploy)).status).toBe(201);
    expect((await h.submit(seedJob)).status).toBe(200);
  });
});

describe("GET /v1/jobs", () => {
  test("filters by status, host and app and pages with a cursor", async ({ h }) => {
    for (let i = 0; i < 5; i++) await h.submit({ ...seedJob, ref: `v${i}` });
    await h.submit({ ...seedJob, host: "web-2" });
    const jobs = [];
    let cursor: string | null = null;
    do {
      const q: string = `/v1/jobs?host=web-1&limit=2${cursor ? `&cursor=${cursor}` : ""}`;
      const page = jobPage.parse(await (await h.call("GET", q, { token: ADMIN })).json());
      jobs.push(...page.jobs);
      cursor = page.nextCursor;
    } while (cursor);
    expect(jobs.map((j) => j.spec.source?.type === "git" && j.spec.source.ref)).toEqual(["v4", "v3", "v2", "v1", "v0"]);
    const byApp = jobPage.parse(await (await h.call("GET", "/v1/jobs?app=web&status=pending", { token: ADMIN })).json());
    expect(byApp.jobs).toHaveLength(6);
    expect((await h.call("GET", "/v1/jobs?status=nope", { token: ADMIN })).status).toBe(400);
  });
});

describe("GET /v1/jobs/:id and cancel", () => {
  test("a missing job is a 404", async ({ h }) => {
    const res = await h.call("GET", "/v1/jobs/job_nope", { token: ADMIN });
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toBe("not_found");
  });

  test("cancelling a pending job ends it at once; again is a no-op", async ({ h }) => {
    const { job } = await (await h.submit(seedJob)).json();
    const res = await h.call("POST", `/v1/jobs/${job.id}/cancel`, { token: ADMIN });
    expect((await res.json()).job.status).toBe("cancelled");
    const again = await h.call("POST", `/v1/jobs/${job.id}/cancel`, { token: ADMIN });
    expect(again.status).toBe(200);
    const got = await (await h.call("GET", `/v1/jobs/${job.id}`, { token: ADMIN })).json();
    expect(got.job.status).toBe("cancelled");
  });
});
