import { afterAll, expect, it } from "vitest";
import Dockerode from "dockerode";
import { BASE_IMAGE, describeDocker, uniqueName } from "../../../test/support/docker";
import { LABELS, scopeToHost } from "../src/docker/managedContainers";
import { removeLeftoverContainers } from "../src/leftovers";

const docker = new Dockerode();

describeDocker("leftover containers (real engine)", () => {
  const host = uniqueName("host");
  const app = uniqueName("left");
  const made: string[] = [];

  afterAll(async () => {
    scopeToHost(null);
    for (const id of made) await docker.getContainer(id).remove({ force: true }).catch(() => undefined);
  });

  const container = async (labels: Record<string, string>) => {
    const c = await docker.createContainer({ Image: BASE_IMAGE, Cmd: ["sleep", "300"], Labels: { [LABELS.managed]: "true", [LABELS.app]: app, ...labels } });
    await c.start();
    made.push(c.id);
    return c.id;
  };
  const exists = (id: string) => docker.getContainer(id).inspect().then(() => true, () => false);

  it("removes a candidate or run container of a job no longer held; keeps the held job's, serving containers and other hosts'", async () => {
    scopeToHost(host);
    const candidate = await container({ [LABELS.host]: host, [LABELS.job]: "job-gone", [LABELS.role]: "candidate" });
    const heldRun = await container({ [LABELS.host]: host, [LABELS.job]: "job-held", [LABELS.role]: "run" });
    const serving = await container({ [LABELS.host]: host, [LABELS.job]: "job-old-deploy" });
    const othersCandidate = await container({ [LABELS.host]: `${host}-other`, [LABELS.job]: "job-gone", [LABELS.role]: "candidate" });

    const removed = await removeLeftoverContainers(docker, () => new Set(["job-held"]));
    expect(removed).toEqual([candidate]);
    expect(await exists(candidate)).toBe(false);
    expect(await exists(heldRun)).toBe(true);
    expect(await exists(serving)).toBe(true);
    expect(await exists(othersCandidate)).toBe(true);
  });
});
