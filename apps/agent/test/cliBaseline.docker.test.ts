import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { describeDocker, freePort, httpGet, makeGitRepo, testAppFiles, testRegistry, uniqueName } from "../../../test/support/docker";

const run = promisify(execFile);

/**
 * Not a test of our code: the same deploy steps done by hand with the git and docker CLIs
 * (clone, build, tag, push both tags, replace the container, poll /health), timed in the same
 * run as deploy.docker.test.ts so the agent's figures have a baseline next to them.
 */
describeDocker("baseline: the deploy steps by hand with the docker CLI", () => {
  const app = uniqueName("cliapp");
  const timings: Record<string, number> = {};
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    console.log(`cli baseline timings (s): ${JSON.stringify(timings)}`);
  });

  it("clone, build, push, run, health: cold then with a warm cache", async () => {
    const repo = await makeGitRepo();
    const tmp = await mkdtemp(path.join(os.tmpdir(), "deploybot-cli-"));
    const dockerConfig = path.join(tmp, "docker-config"); // keep `docker login` out of ~/.docker
    cleanups.push(() => repo.cleanup(), () => rm(tmp, { recursive: true, force: true }));
    const docker = (args: string[], input?: string) => {
      const child = run("docker", args, { env: { ...process.env, DOCKER_CONFIG: dockerConfig }, maxBuffer: 64 * 1024 * 1024 });
      if (input !== undefined) {
        child.child.stdin?.end(input);
      }
      return child;
    };
    await docker(["login", "-u", testRegistry.username, "--password-stdin", testRegistry.host], testRegistry.password);
    const port = await freePort();
    const image = `${testRegistry.host}/${app}`;
    let previous: string | null = null;

    for (const [step, version] of [["cold", "v1"], ["cached", "v2"]] as const) {
      const sha = await repo.commit(testAppFiles(version, { salt: app }), version);
      const started = Date.now();
      const dir = path.join(tmp, `checkout-${version}`);
      await run("git", ["clone", "-q", "--depth", "1", "--branch", "main", "--", repo.url, dir]);
      await docker(["build", "-q", "-t", `${image}:${sha}`, dir]);
      await docker(["tag", `${image}:${sha}`, `${image}:latest`]);
      await docker(["push", "-q", `${image}:${sha}`]);
      await docker(["push", "-q", `${image}:latest`]);
      if (previous) await docker(["rm", "-f", previous]);
      const name = `${app}-${version}`;
      await docker(["run", "-d", "--name", name, "--label", `deploybot.app=${app}`, "-p", `127.0.0.1:${port}:80`, `${image}:${sha}`]);
      cleanups.push(() => docker(["rm", "-f", name]));
      previous = name;
      while ((await httpGet(port, "/health"))?.status !== 200) await new Promise((r) => setTimeout(r, 100));
      timings[step] = (Date.now() - started) / 1000;
      expect((await httpGet(port, "/"))?.body).toBe(`${version}\n`);
    }
  });
});
