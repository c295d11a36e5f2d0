import { describe, expect, test } from "vitest";
import { ADMIN, makeHarness } from "../fixture";
import { SHA } from "./handlers";
import { useFakeGitHub } from "./server";

useFakeGitHub();

const TOKEN = "ghp_idempotencytoken0123456789abcdefghijkl";

describe("Idempotency-Key under concurrency", () => {
  // With a GitHub token a deployment first resolves its ref over the network: eight retries
  // of one request are all in flight at once, as a client that retries on a timeout makes them.
  test("8 concurrent POST /v1/deployments with one Idempotency-Key create one deployment", async () => {
    const h = await makeHarness({ githubToken: TOKEN });
    const post = () =>
      h
        .call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref: "main" }, headers: { "idempotency-key": "deploy-once" } })
        .then(async (r) => ({ status: r.status, replayed: r.headers.get("idempotent-replayed"), body: await r.json() }));
    const answers = await Promise.all(Array.from({ length: 8 }, post));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(201));
    expect(new Set(answers.map((a) => a.body.deployment.id)).size).toBe(1);
    expect(answers.filter((a) => a.replayed === "true")).toHaveLength(7);
    expect(answers[0]!.body.deployment.sha).toBe(SHA.main);
    const list = await (await h.call("GET", "/v1/deployments?app=web", { token: ADMIN })).json();
    expect(list.deployments).toHaveLength(1);
    const jobs = await (await h.call("GET", "/v1/jobs?app=web", { token: ADMIN })).json();
    expect(jobs.jobs).toHaveLength(1);
  });

  test("the same key with another body is refused while the first is answered, and after", async () => {
    const h = await makeHarness({ githubToken: TOKEN });
    const post = (ref: string) =>
      h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref }, headers: { "idempotency-key": "k" } });
    const refs = ["main", "v1.0.0"];
    const answers = await Promise.all(refs.map(post));
    expect(answers.map((a) => a.status).sort()).toEqual([201, 422]);
    const winner = refs[answers.findIndex((a) => a.status === 201)]!;
    const loser = refs.find((r) => r !== winner)!;
    expect((await post(loser)).status).toBe(422);
    expect((await post(winner)).headers.get("idempotent-replayed")).toBe("true");
  });
});
