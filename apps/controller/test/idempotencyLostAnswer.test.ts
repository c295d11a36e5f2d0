import { describe, expect } from "vitest";
import { deployments, jobs } from "../src/db/schema";
import { ADMIN, type Harness, test } from "./fixture";

/**
 * A keyed request whose work and key committed, but whose process died before it stored the
 * answer (kill -9 between the two): the retry — the CLI's, or one through a proxy to another
 * controller — is answered from what the request made, and nothing is made twice. Storing the
 * answer fails here the way a dead process would leave it: key taken, work committed, no answer.
 */
function loseNextAnswer(h: Harness) {
  const keys = h.services.idempotencyKeys;
  const complete = keys.complete.bind(keys);
  keys.complete = async () => {
    keys.complete = complete;
    throw new Error("the process died before storing the answer");
  };
}

describe("a keyed request that died between its commit and its answer", () => {
  test("POST /v1/jobs: the retry gets 201 with the same job; one job exists", async ({ h }) => {
    const post = () =>
      h.call("POST", "/v1/jobs", { token: ADMIN, body: { repo: "acme/web", ref: "main", host: "web-1" }, headers: { "idempotency-key": "submit-once" } });
    loseNextAnswer(h);
    expect((await post()).status).toBe(500);
    const retry = await post();
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    const { job } = (await retry.json()) as { job: { id: string; status: string } };
    const rows = await h.db.select({ id: jobs.id }).from(jobs);
    expect(rows).toEqual([{ id: job.id }]);
    // the rebuilt answer is stored: the next retry replays it at once, the same
    const again = await post();
    expect(again.status).toBe(201);
    expect(((await again.json()) as { job: { id: string } }).job.id).toBe(job.id);
  });

  test("POST /v1/deployments: the retry gets 201 with the same deployment; one deployment exists", async ({ h }) => {
    const post = () =>
      h.call("POST", "/v1/deployments", {
        token: ADMIN,
        body: { app: "web", image: "127.0.0.1:5000/acme/web:v1" },
        headers: { "idempotency-key": "deploy-once" },
      });
    loseNextAnswer(h);
    expect((await post()).status).toBe(500);
    const retry = await post();
    expect(retry.status).toBe(201);
    const { deployment } = (await retry.json()) as { deployment: { id: string; app: string } };
    expect(deployment.app).toBe("web");
    expect(await h.db.select({ id: deployments.id }).from(deployments)).toEqual([{ id: deployment.id }]);
  });

});
