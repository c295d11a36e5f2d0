import { repositoryOf } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import type { JobLog } from "../executors/types";

/**
 * Keeps the `keep` newest images of an app's repositories on this host and removes older ones,
 * never one a container uses and never a protected one (the rollback target). Failures to
 * remove are reported, not fatal: retention must never fail a deploy that worked.
 */
export async function pruneAppImages(
  docker: Dockerode,
  opts: { repositories: string[]; keep: number; protect: string[] },
  log: JobLog,
): Promise<string[]> {
  const repos = new Set(opts.repositories.map(repositoryOf));
  const images = (await docker.listImages()).filter((img) =>
    [...(img.RepoTags ?? []), ...(img.RepoDigests ?? [])].some((ref) => repos.has(repositoryOf(ref))),
  );
  const inUse = new Set((await docker.listContainers({ all: true })).map((c) => c.ImageID));
  const protectedIds = new Set<string>();
  for (const ref of opts.protect) {
    const id = await docker
      .getImage(ref)
      .inspect()
      .then((i) => i.Id, () => null);
    if (id) protectedIds.add(id);
  }
  const removed: string[] = [];
  const newestFirst = images.sort((a, b) => b.Created - a.Created);
  for (const img of newestFirst.slice(opts.keep)) {
    if (inUse.has(img.Id) || protectedIds.has(img.Id)) continue;
    try {
      await docker.getImage(img.Id).remove({ force: true, noprune: false });
      removed.push(img.Id);
    } catch (err) {
      log("system", `image retention: could not remove ${img.Id.slice(7, 19)}: ${(err as Error).message}`);
    }
  }
  if (removed.length > 0) log("system", `image retention: kept ${opts.keep} newest, removed ${removed.length} older image(s)`);
  return removed;
}
