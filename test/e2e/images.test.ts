import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../../apps/cli/test/runCli";
import { ADMIN, type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitForHostOnline } from "../harness/processes";
import { describeDocker, freePort, httpGet, makeGitRepo, registryDigest, removeAppContainers, type TestGitRepo, testAppFiles, testRegistry, testRegistryEnv, uniqueName } from "../support/docker";

/**
 * The images catalog as a user drives it: `deploybot build APP --tag` builds a git tag of a
 * local bare repository on a real agent and pushes it to the real registry without deploying
 * it; `deploybot deploy APP --image-id` then runs exactly that image, and so do a one-off run
 * of that release and a rollback to it.
 */
describeDocker("images catalog end to end (CLI, controller, agent, real engine and registry)", () => {
  const app = uniqueName("img");
  const host = uniqueName("host");
  let port: number;
  let repo: TestGitRepo;
  let ctl: ControllerProcess;
  let agent: AgentProcess;
  const home = mkdtempSync(join(tmpdir(), "deploybot-images-home-"));
  const cli = (args: string[]) => runCli({ url: ctl.url, home }, args, { env: { DEPLOYBOT_TOKEN: ADMIN } });

  beforeAll(async () => {
    port = await freePort();
    repo = await makeGitRepo();
    await repo.commit(testAppFiles("tagged-1.2.3", { salt: app }), "release 1.2.3");
    await repo.tag("v1.2.3");
    await repo.commit(testAppFiles("main-after-tag", { salt: app }), "later work");
    ctl = await controllerProcess(
      `
apps:
  - name: ${app}
    repo: acme/${app}
    url: file://${repo.url}
    hosts: [${host}]
    image: ${testRegistry.host}/${app}
    run:
      ports: ["127.0.0.1:${port}:80"]
      healthcheck: { path: /health, port: 80, timeout_seconds: 8 }
      memory: 64m
`,
      testRegistryEnv,
    );
    agent = agentProcess(ctl.url, host);
    await waitForHostOnline(ctl, host);
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await removeAppContainers(app);
    await repo?.cleanup();
  });

  it("builds a tag through the catalog, returns the same image when asked again, then deploys it by image id", async () => {
    const built = await cli(["build", app, "--tag", "v1.2.3"]);
    expect(built.stderr).toMatch(/image img_\w+ success/);
    expect(built.code).toBe(0);
    const imageId = built.stdout.trim().split("\n").pop()!;
    expect(imageId).toMatch(/^img_/);
    expect(built.stdout).toContain("Successfully built");

    const { body } = await ctl.api("GET", `/v1/images/${imageId}`);
    expect(body.image).toMatchObject({ app, tag: "v1.2.3", status: "success" });
    expect(body.image.digest).toBe(await registryDigest(app, "v1.2.3"));
    // built, not deployed: nothing answers on the app's port yet and there is no deployment
    expect(await httpGet(port, "/")).toBeNull();
    expect((await ctl.api("GET", `/v1/deployments?app=${app}`)).body.deployments).toEqual([]);

    const again = await ctl.api("POST", "/v1/images", { app, tag: "v1.2.3" });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ created: false, image: { id: imageId, buildJobId: body.image.buildJobId } });

    const list = await cli(["images", app]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${imageId}\\s+${app}\\s+v1\\.2\\.3\\s+success`));

    const deployed = await cli(["deploy", app, "--image-id", imageId]);
    expect(deployed.stderr).toMatch(/succeeded/);
    expect(deployed.code).toBe(0);
    // the tag's content runs, not the branch's newer commit, pulled by the catalog's digest
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "tagged-1.2.3\n" });
    const deps = (await ctl.api("GET", `/v1/deployments?app=${app}`)).body.deployments;
    expect(deps[0]).toMatchObject({ status: "succeeded", image: `${testRegistry.host}/${app}@${body.image.digest}`, ref: "v1.2.3" });

    // a one-off run of the release deployed from the catalog runs the same image
    const ran = await cli(["run", app, "--", "cat", "/www/index.html"]);
    expect(ran.stderr).not.toMatch(/invalid|failed/);
    expect(ran.stdout).toContain("tagged-1.2.3");
    expect(ran.code).toBe(0);

    // and a rollback to it, after a deploy of the branch, brings that image back
    expect((await cli(["deploy", app])).code).toBe(0);
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "main-after-tag\n" });
    const back = await cli(["rollback", app]);
    expect(back.stderr).toMatch(/succeeded/);
    expect(back.code).toBe(0);
    expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "tagged-1.2.3\n" });
  });
});
