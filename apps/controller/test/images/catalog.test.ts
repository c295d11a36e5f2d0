import { image as imageSchema, appRefs as refsSchema } from "@deploybot/protocol";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { makeGitRepo, type TestGitRepo } from "../../../../test/support/docker";
import { ADMIN, type Harness, makeHarness } from "../fixture";

type Agent = { id: string; token: string };

let repo: TestGitRepo;
let v1: string;
let mainSha: string;

const appsYaml = (url: string) => `
apps:
  - name: cat
    repo: acme/cat
    url: ${url}
    hosts: [cat-1]
    image: 127.0.0.1:5000/cat
`;

beforeAll(async () => {
  repo = await makeGitRepo();
  v1 = await repo.commit({ Dockerfile: "FROM scratch\n" }, "v1");
  await repo.tag("v1.2.3");
  mainSha = await repo.commit({ Dockerfile: "FROM scratch\n# v2\n" }, "v2");
});
afterAll(() => repo?.cleanup());

const harness = () => makeHarness({}, appsYaml(`file://${repo.url}`));
const post = (h: Harness, body: unknown, token = ADMIN) => h.call("POST", "/v1/images", { token, body });
const getImage = async (h: Harness, id: string) => imageSchema.parse((await (await h.call("GET", `/v1/images/${id}`, { token: ADMIN })).json()).image);

/** Claims the next job as `agent`, reports it running, then ends it. */
async function runBuild(h: Harness, agent: Agent, end: { status: "succeeded" | "failed"; result?: Record<string, unknown>; error?: string }, onRunning?: () => Promise<void>) {
  const beat = await (await h.heartbeat(agent)).json();
  expect(beat.job?.spec.kind).toBe("build");
  const { id, leaseId } = beat.job;
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, status: "running" } });
  await onRunning?.();
  await h.call("POST", `/v1/jobs/${id}/status`, { token: agent.token, body: { leaseId, ...end } });
  return beat.job;
}

describe("POST /v1/images", () => {
  test("builds a git tag without deploying; status follows the build job: pending -> building -> success", async () => {
    const h = await harness();
    const agent = await h.register("cat-1");
    const res = await post(h, { app: "cat", tag: "v1.2.3" });
    expect(res.status).toBe(201);
    const { image, created } = await res.json();
    expect(created).toBe(true);
    expect(imageSchema.parse(image)).toMatchObject({ app: "cat", tag: "v1.2.3", ref: "v1.2.3", sha: v1, status: "pending", imageTag: "127.0.0.1:5000/cat:v1.2.3", digest: null, builds: 1 });

    const digest = `sha256:${"a".repeat(64)}`;
    const job = await runBuild(h, agent, { status: "succeeded", result: { digest, sha: v1, version: "v1.2.3" } }, async () => {
      expect((await getImage(h, image.id)).status).toBe("building");
    });
    // the build job builds the tag's commit and tags the image with the tag; nothing is deployed
    expect(job.spec).toMatchObject({ kind: "build", source: { type: "git", ref: v1 }, image: "127.0.0.1:5000/cat", version: "v1.2.3" });
    const built = await getImage(h, image.id);
    expect(built).toMatchObject({ status: "success", digest, pullRef: `127.0.0.1:5000/cat@${digest}`, buildJobId: job.id, error: null });
    expect(built.startedAt).not.toBeNull();
    expect(built.finishedAt).not.toBeNull();
    const deployments = await (await h.call("GET", "/v1/deployments", { token: ADMIN })).json();
    expect(deployments.deployments).toEqual([]);
  });

  test("a repeated request returns the same image, or builds it again when it failed; rebuild builds it again under the same id", async () => {
    const h = await harness();
    const agent = await h.register("cat-1");
    const first = await (await post(h, { app: "cat", tag: "v1.2.3" })).json();
    const again = await post(h, { app: "cat", tag: "v1.2.3" });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ created: false, image: { id: first.image.id, buildJobId: first.image.buildJobId } });
    // a rebuild asked while the first build is still queued joins it
    expect(await (await post(h, { app: "cat", tag: "v1.2.3", rebuild: true })).json()).toMatchObject({ created: false, image: { buildJobId: first.image.buildJobId } });

    await runBuild(h, agent, { status: "failed", error: "build: step 2 failed" });
    expect(await getImage(h, first.image.id)).toMatchObject({ status: "failed", error: "build: step 2 failed" });
    // a failed build kept nothing: asking again, without rebuild, builds it again
    const retried = await post(h, { app: "cat", tag: "v1.2.3" });
    expect(retried.status).toBe(201);
    const body = await retried.json();
    expect(body.image).toMatchObject({ id: first.image.id, status: "pending", error: null, builds: 2 });
    expect(body.image.buildJobId).not.toBe(first.image.buildJobId);
    await runBuild(h, agent, { status: "succeeded", result: { digest: `sha256:${"b".repeat(64)}`, sha: v1, version: "v1.2.3" } });
    // a built one is answered as it is, unless rebuild
    expect(await (await post(h, { app: "cat", tag: "v1.2.3" })).json()).toMatchObject({ created: false, image: { status: "success", builds: 2 } });
    const rebuilt = await post(h, { app: "cat", tag: "v1.2.3", rebuild: true });
    expect(rebuilt.status).toBe(201);
    expect((await rebuilt.json()).image).toMatchObject({ id: first.image.id, status: "pending", builds: 3 });
    const list = await (await h.call("GET", "/v1/images?app=cat", { token: ADMIN })).json();
    expect(list.images).toHaveLength(1);
  });

  test("a branch builds its current commit, tagged with the short sha", async () => {
    const h = await harness();
    const res = await post(h, { app: "cat", ref: "main" });
    expect(res.status).toBe(201);
    expect((await res.json()).image).toMatchObject({ tag: mainSha.slice(0, 12), ref: "main", sha: mainSha });
  });

  test("errors: unknown tag 422, unknown app 404, both ref and tag 400, a tag Docker refuses 400, no token 401, read token 403", async () => {
    const h = await harness();
    const unknown = await post(h, { app: "cat", tag: "v9.9.9" });
    expect(unknown.status).toBe(422);
    expect((await unknown.json()).error.code).toBe("unknown_ref");
    expect((await post(h, { app: "nope", tag: "v1.2.3" })).status).toBe(404);
    expect((await post(h, { app: "cat", tag: "v1.2.3", ref: "main" })).status).toBe(400);
    expect((await post(h, { app: "cat", tag: "release/1" })).status).toBe(400);
    expect((await post(h, { app: "cat", tag: "v1.2.3" }, "")).status).toBe(401);
    const read = (await (await h.call("POST", "/v1/tokens", { token: ADMIN, body: { name: "r", scope: "read" } })).json()).token;
    expect((await post(h, { app: "cat", tag: "v1.2.3" }, read)).status).toBe(403);
    expect((await h.call("GET", "/v1/images", { token: read })).status).toBe(200);
    expect((await h.call("GET", "/v1/images/img_nope", { token: ADMIN })).status).toBe(404);
  });

  test("DELETE forgets the image and cancels its queued build", async () => {
    const h = await harness();
    const { image } = await (await post(h, { app: "cat", tag: "v1.2.3" })).json();
    const del = await h.call("DELETE", `/v1/images/${image.id}`, { token: ADMIN });
    expect(del.status).toBe(200);
    expect((await h.call("GET", `/v1/images/${image.id}`, { token: ADMIN })).status).toBe(404);
    const job = await (await h.call("GET", `/v1/jobs/${image.buildJobId}`, { token: ADMIN })).json();
    expect(job.job.status).toBe("cancelled");
  });
});

describe("deployments and rollback by image id", () => {
  test("deploys a built image by id (pulled by digest); an image not built yet is 409", async () => {
    const h = await harness();
    const agent = await h.register("cat-1");
    const { image } = await (await post(h, { app: "cat", tag: "v1.2.3" })).json();
    const early = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "cat", imageId: image.id } });
    expect(early.status).toBe(409);
    expect((await early.json()).error.code).toBe("image_not_built");

    const digest = `sha256:${"b".repeat(64)}`;
    await runBuild(h, agent, { status: "succeeded", result: { digest, sha: v1 } });
    const res = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "cat", imageId: image.id } });
    expect(res.status).toBe(201);
    const { deployment } = await res.json();
    expect(deployment).toMatchObject({ image: `127.0.0.1:5000/cat@${digest}`, sha: v1, ref: "v1.2.3", status: "deploying" });
    const beat = await (await h.heartbeat(agent)).json();
    expect(beat.job.spec).toMatchObject({ kind: "deploy", source: { type: "image", image: `127.0.0.1:5000/cat@${digest}` }, version: "v1.2.3" });

    const rb = await h.call("POST", "/v1/apps/cat/rollback", { token: ADMIN, body: { imageId: image.id } });
    expect(rb.status).toBe(201);
    expect((await rb.json()).deployment).toMatchObject({ trigger: "rollback", image: `127.0.0.1:5000/cat@${digest}` });
    expect((await h.call("POST", "/v1/apps/cat/rollback", { token: ADMIN, body: { imageId: "img_missing" } })).status).toBe(404);
  });
});

describe("GET /v1/apps/{name}/refs from the app's own remote", () => {
  test("lists tags and branches of a file:// remote with git ls-remote", async () => {
    const h = await harness();
    const res = await h.call("GET", "/v1/apps/cat/refs", { token: ADMIN });
    expect(res.status).toBe(200);
    const body = refsSchema.parse(await res.json());
    expect(body.refs).toEqual(expect.arrayContaining([{ name: "v1.2.3", type: "tag", sha: v1 }, { name: "main", type: "branch", sha: mainSha }]));
    const tagsOnly = await (await h.call("GET", "/v1/apps/cat/refs?type=tag", { token: ADMIN })).json();
    expect(tagsOnly.refs.map((r: { name: string }) => r.name)).toEqual(["v1.2.3"]);
  });

  test("an unreadable remote is 502 without the URL's password; a URL git would read as an option is 422", async () => {
    const h = await makeHarness({}, appsYaml("https://user:s3cret@127.0.0.1:1/nope.git"));
    const res = await h.call("GET", "/v1/apps/cat/refs", { token: ADMIN });
    expect(res.status).toBe(502);
    const text = await res.text();
    expect(text).toContain("git_remote_unavailable");
    expect(text).not.toContain("s3cret");
    const bad = await makeHarness({}, appsYaml("--upload-pack=touch /tmp/x"));
    expect((await bad.call("GET", "/v1/apps/cat/refs", { token: ADMIN })).status).toBe(422);
  });
});
