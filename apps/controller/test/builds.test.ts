import { buildResult } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { ADMIN, makeHarness, test } from "./fixture";

const files = { Dockerfile: "FROM scratch\nCOPY hello.txt /\n", "hello.txt": "hi\n" };

describe("POST /v1/builds", () => {
  test("queues a files build for a builder and reports {success, image_tag, error} when it ends", async () => {
    const h = await makeHarness({ registry: { url: "127.0.0.1:5000", username: "u", password: "p" } });
    const res = await h.call("POST", "/v1/builds", { token: ADMIN, body: { name: "hello", version: "1.2.3", files } });
    expect(res.status).toBe(201);
    const { job, imageTag } = await res.json();
    expect(imageTag).toBe("127.0.0.1:5000/hello:1.2.3");
    expect(job).toMatchObject({ kind: "build", target: { labels: ["builder"] } });
    const pending = buildResult.parse(await (await h.call("GET", `/v1/builds/${job.id}`, { token: ADMIN })).json());
    expect(pending).toMatchObject({ success: null, image_tag: null, error: null });

    const agent = await h.register("b-1", ["builder"]);
    const beat = await (await h.heartbeat(agent)).json();
    expect(beat.job.spec).toMatchObject({ image: "127.0.0.1:5000/hello", version: "1.2.3", registry: { password: "p" } });
    await h.call("POST", `/v1/jobs/${job.id}/status`, { token: agent.token, body: { leaseId: beat.job.leaseId, status: "succeeded" } });
    const done = buildResult.parse(await (await h.call("GET", `/v1/builds/${job.id}`, { token: ADMIN })).json());
    expect(done).toMatchObject({ success: true, image_tag: "127.0.0.1:5000/hello:1.2.3", error: null });
  });

  test("without a registry there is nowhere to push: 422", async ({ h }) => {
    const res = await h.call("POST", "/v1/builds", { token: ADMIN, body: { name: "hello", version: "1", files } });
    expect(res.status).toBe(422);
    expect((await res.json()).error.code).toBe("no_registry");
  });

  test("has its own, larger body limit; other routes keep 1 MiB", async () => {
    const h = await makeHarness({ registry: { url: "127.0.0.1:5000", username: "u", password: "p" }, buildBodyLimit: 4 * 1024 * 1024 });
    const big = { ...files, "blob.txt": "x".repeat(2 * 1024 * 1024) };
    expect((await h.call("POST", "/v1/builds", { token: ADMIN, body: { name: "big", version: "1", files: big } })).status).toBe(201);
    const huge = { ...files, "blob.txt": "x".repeat(5 * 1024 * 1024) };
    expect((await h.call("POST", "/v1/builds", { token: ADMIN, body: { name: "big", version: "2", files: huge } })).status).toBe(413);
    expect((await h.call("POST", "/v1/jobs", { token: ADMIN, body: { repo: "acme/web", ref: "x".repeat(2 * 1024 * 1024), host: "web-1" } })).status).toBe(413);
  });

  test("refuses traversal in the file map and bad versions", async ({ h }) => {
    expect((await h.call("POST", "/v1/builds", { token: ADMIN, body: { name: "x", version: "1", files: { "../x": "" } } })).status).toBe(400);
    expect((await h.call("POST", "/v1/builds", { token: ADMIN, body: { name: "x", version: "-1", files } })).status).toBe(400);
  });
});
