import { access, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Source } from "@deploybot/protocol";
import Dockerode from "dockerode";
import { afterAll, beforeAll, expect, it } from "vitest";
import { containersWithLabels, describeDocker, makeGitRepo, testAppFiles, uniqueName } from "../../../test/support/docker";
import { executeJob } from "../src/executors";
import { makeTar, makeZip } from "./archiveFixtures";
import { makeContext, makeJob, type TestContext } from "./jobFixture";

const docker = new Dockerode();

/**
 * Hostile input is refused before any git or docker work: no build step in the log, no
 * container, no image, nothing written outside the work dir. The controller's schemas refuse
 * most of these already; the agent checks again because it executes them.
 */
describeDocker("hostile sources are refused before anything runs", () => {
  const contexts: TestContext[] = [];
  let outside: string;
  beforeAll(async () => {
    outside = await mkdtemp(path.join(os.tmpdir(), "deploybot-outside-"));
  });
  afterAll(async () => {
    for (const ctx of contexts) await ctx.cleanup();
    await rm(outside, { recursive: true, force: true });
  });

  const expectRefused = async (source: Source, reason: RegExp, extra: Record<string, unknown> = {}) => {
    const app = uniqueName("hostile");
    const ctx = await makeContext(docker);
    contexts.push(ctx);
    const job = makeJob({ kind: "deploy", app, source, ...extra });
    const outcome = await executeJob(job, ctx);
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.error).toMatch(reason);
    expect(ctx.text()).not.toMatch(/Step \d|build:/);
    expect(await containersWithLabels([`deploybot.app=${app}`])).toEqual([]);
    expect(await docker.listImages({ filters: { reference: [`deploybot/${app}`] } })).toEqual([]);
    expect(await readdir(outside)).toEqual([]);
    expect(await readdir(ctx.workRoot)).toEqual([]); // the work dir was cleaned
  };

  const outsideTarget = () => path.relative("/", path.join(outside, "pwned")); // "tmp/deploybot-outside-x/pwned"
  const up = "../../../../../../../../..";

  it("files: '..' and absolute paths", async () => {
    await expectRefused({ type: "files", files: { ...testAppFiles("x"), [`${up}/${outsideTarget()}`]: "x" } }, /files source refused: path escapes the tree/);
    await expectRefused({ type: "files", files: { ...testAppFiles("x"), [`/${outsideTarget()}`]: "x" } }, /files source refused: absolute path/);
  });

  it("tar, tar.gz and zip: traversal, absolute names and links out of the tree", async () => {
    const app = Object.entries(testAppFiles("x")).map(([name, content]) => ({ name, content }));
    const b64 = (b: Buffer) => b.toString("base64");
    await expectRefused({ type: "archive", format: "tar", data: b64(makeTar([...app, { name: `${up}/${outsideTarget()}`, content: "x" }])) }, /escapes the tree/);
    await expectRefused({ type: "archive", format: "tar.gz", data: b64(makeTar([...app, { name: `/${outsideTarget()}`, content: "x" }], { gzip: true })) }, /absolute path/);
    // The classic two-step: a symlink to the outside dir, then a file written "into" it.
    await expectRefused(
      { type: "archive", format: "tar", data: b64(makeTar([...app, { name: "out", type: "symlink", target: outside }, { name: "out/pwned", content: "x" }])) },
      /symlink out points outside the tree/,
    );
    await expectRefused({ type: "archive", format: "tar", data: b64(makeTar([...app, { name: "h", type: "hardlink", target: `${up}/etc/passwd` }])) }, /hardlink h points outside/);
    await expectRefused({ type: "archive", format: "zip", data: b64(makeZip([...app, { name: `${up}/${outsideTarget()}`, content: "x" }])) }, /archive source refused: path escapes the tree/);
    await expectRefused({ type: "archive", format: "zip", data: b64(makeZip([...app, { name: "l", type: "symlink", target: `${up}/etc` }])) }, /symlink l points outside/);
  });

  it("git: a ref or url that git would read as an option", async () => {
    const repo = await makeGitRepo();
    const marker = path.join(outside, "x");
    // a mangled payload would touch /tmp/x: compared with what was there before, as the machine
    // may have a /tmp/x of its own
    const stray = async () => (await stat("/tmp/x").catch(() => null))?.mtimeMs ?? null;
    const strayBefore = await stray();
    try {
      await repo.commit(testAppFiles("x"), "x");
      await expectRefused({ type: "git", url: repo.url, ref: `--upload-pack=touch ${marker}` }, /git ref .* refused: starts with '-'/);
      await expectRefused({ type: "git", url: `--upload-pack=touch ${marker}`, ref: "main" }, /git url starts with '-'/);
      await expectRefused({ type: "git", url: `ext::sh -c touch% ${marker}`, ref: "main" }, /transport helper/);
      await expect(access(marker)).rejects.toThrow();
      expect(await stray()).toBe(strayBefore);
    } finally {
      await repo.cleanup();
    }
  });

  it("a build spec that points outside the tree", async () => {
    await expectRefused({ type: "files", files: testAppFiles("x") }, /build spec refused: .* does not exist|outside/, {
      build: { dockerfile: "../../../../etc/passwd", context: ".", args: {} },
    });
  });
});
