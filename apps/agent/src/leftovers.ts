import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type Dockerode from "dockerode";
import type { Logger } from "pino";
import { LABELS, listManagedInfo, stopAndRemove } from "./docker/managedContainers";

/**
 * What an agent leaves behind when it dies mid-job (kill -9, OOM, power): the job's work dir,
 * its log spool, a result file, the layers a cut build had already committed (dangling images),
 * a deploy's candidate or a run's container. No later job touches another job's leftovers, so the
 * agent sweeps them itself at start and after every job. Only what is provably its own goes:
 * files under its state dir, images its builds recorded (below), containers with its host label.
 */

/** Work dirs, result files and build records are named by the job id made file-safe. */
export const fileSafe = (jobId: string): string => jobId.replace(/[^A-Za-z0-9_.-]/g, "_");

const BUILT_DIR = "built";

/**
 * Records an image a build of `jobId` created. The classic builder commits a layer per step; a
 * build cut mid-way leaves the last one untagged and without any label (labels are applied by a
 * final step that never ran), so the image id as the build reported it is the only sure way to
 * tell our dangling layers from other builds'. Best effort: a full disk only loses the record.
 */
export function recordBuiltImage(stateDir: string, jobId: string, imageId: string): void {
  try {
    mkdirSync(join(stateDir, BUILT_DIR), { recursive: true, mode: 0o700 });
    appendFileSync(join(stateDir, BUILT_DIR, fileSafe(jobId)), `${imageId}\n`, { mode: 0o600 });
  } catch {
    // nothing to do: the layer stays until an operator prunes it
  }
}

export interface LeftoverReport {
  workDirs: string[];
  spools: string[];
  results: string[];
  images: string[];
  containers: string[];
}

const entries = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir) : []);

/** Lines in a spool file (a torn last line from a crash counts, as the spool reads it back). */
function spoolLines(file: string): number {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
}

function spoolAcked(meta: string): number | null {
  try {
    const acked = (JSON.parse(readFileSync(meta, "utf8")) as { acked?: unknown }).acked;
    return typeof acked === "number" ? acked : null;
  } catch {
    return null;
  }
}

/**
 * The file part, synchronous on purpose: a job claimed meanwhile cannot slip between the "is it
 * held" check and the removal. `held` are the job ids this agent holds right now. A spool goes
 * only when the controller has acknowledged every line of it (or it has no lease to upload with);
 * one still owing lines is left for the uploader.
 */
export function removeLeftoverFiles(stateDir: string, held: ReadonlySet<string>): Omit<LeftoverReport, "images" | "containers"> {
  const heldSafe = new Set([...held].map(fileSafe));
  const report = { workDirs: [] as string[], spools: [] as string[], results: [] as string[] };
  for (const name of entries(join(stateDir, "work"))) {
    if (heldSafe.has(name)) continue;
    rmSync(join(stateDir, "work", name), { recursive: true, force: true });
    report.workDirs.push(name);
  }
  for (const name of entries(join(stateDir, "results"))) {
    if (heldSafe.has(name)) continue;
    rmSync(join(stateDir, "results", name), { force: true });
    report.results.push(name);
  }
  const spoolDir = join(stateDir, "spool");
  const jobs = new Set(entries(spoolDir).flatMap((f) => {
    const m = /^(.*)\.(jsonl|meta\.json)$/.exec(f);
    return m ? [m[1]!] : [];
  }));
  for (const jobId of jobs) {
    if (held.has(jobId)) continue;
    const file = join(spoolDir, `${jobId}.jsonl`);
    const acked = spoolAcked(join(spoolDir, `${jobId}.meta.json`));
    // without a readable meta file there is no lease to upload with: nobody will ever send it
    if (acked !== null && acked < spoolLines(file)) continue;
    rmSync(file, { force: true });
    rmSync(join(spoolDir, `${jobId}.meta.json`), { force: true });
    report.spools.push(jobId);
  }
  return report;
}

/**
 * Dangling images recorded by builds of jobs no longer held: removed when still untagged, without
 * force, so an image a container uses or another image builds on (the engine answers 409) stays.
 * A record is dropped once every image in it is gone or in use (tagged, a parent, a stopped
 * container's); an engine that cannot be reached, or a step still running on a layer, keeps it for
 * the next sweep.
 */
export async function removeLeftoverImages(docker: Dockerode, stateDir: string, held: () => ReadonlySet<string>): Promise<string[]> {
  const dir = join(stateDir, BUILT_DIR);
  const removed: string[] = [];
  for (const name of entries(dir)) {
    if ([...held()].map(fileSafe).includes(name)) continue;
    const ids = readFileSync(join(dir, name), "utf8").split("\n").filter(Boolean).reverse();
    let keep = false;
    for (const id of ids) {
      const image = docker.getImage(id);
      const info = await image.inspect().catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404) keep = true;
        return null;
      });
      if (!info || (info.RepoTags ?? []).some((t) => t !== "<none>:<none>")) continue;
      try {
        await image.remove({ noprune: false });
        removed.push(id);
      } catch (err) {
        const status = (err as { statusCode?: number }).statusCode;
        // a cut build's step may still run in the engine for a moment: look again next sweep
        if ((status !== 404 && status !== 409) || /running container/.test((err as Error).message)) keep = true;
      }
    }
    if (!keep) rmSync(join(dir, name), { force: true });
  }
  return removed;
}

/** A deploy's candidate or a run's container whose job this agent no longer holds. */
export async function removeLeftoverContainers(docker: Dockerode, held: () => ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const c of await listManagedInfo(docker)) {
    const role = c.Labels?.[LABELS.role];
    const job = c.Labels?.[LABELS.job];
    if ((role !== "candidate" && role !== "run") || !job || held().has(job)) continue;
    await stopAndRemove(docker, c.Id);
    removed.push(c.Id);
  }
  return removed;
}

/** The whole sweep; never throws (a sweep that fails is retried after the next job). */
export async function removeLeftovers(docker: Dockerode, stateDir: string, held: () => ReadonlySet<string>, logger: Logger): Promise<LeftoverReport> {
  const report: LeftoverReport = { workDirs: [], spools: [], results: [], images: [], containers: [] };
  try {
    Object.assign(report, removeLeftoverFiles(stateDir, held()));
  } catch (err) {
    logger.warn({ err: (err as Error).message }, "removing leftover files failed");
  }
  report.images = await removeLeftoverImages(docker, stateDir, held).catch((err: Error) => {
    logger.warn({ err: err.message }, "removing leftover images failed");
    return [];
  });
  report.containers = await removeLeftoverContainers(docker, held).catch((err: Error) => {
    logger.warn({ err: err.message }, "removing leftover containers failed");
    return [];
  });
  const counts = Object.fromEntries(Object.entries(report).map(([k, v]) => [k, v.length]));
  if (Object.values(counts).some((n) => n > 0)) logger.info(counts, "removed leftovers of jobs this agent no longer holds");
  return report;
}
