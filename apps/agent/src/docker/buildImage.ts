import { readdir } from "node:fs/promises";
import type Dockerode from "dockerode";
import type { JobLog } from "../executors/types";
import { followProgress } from "./followProgress";

export type BuildResult = { ok: true; imageId: string; cached: number; steps: number } | { ok: false; reason: string };

/**
 * Builds `contextDir` with the engine's classic builder. dockerode packs the context with
 * tar-fs and honours a .dockerignore at the context root. The Dockerfile path is relative to
 * the context (the Engine API's and compose's meaning). Every output line reaches the job log;
 * "Using cache" lines are counted so a redeploy can report how much it reused.
 */
export async function buildImage(
  docker: Dockerode,
  input: {
    contextDir: string;
    dockerfile: string;
    args: Record<string, string>;
    target?: string;
    tags: [string, ...string[]];
    labels?: Record<string, string>;
    /** every layer this build commits (not the ones it takes from the cache), as it commits it */
    onLayer?: (imageId: string) => void;
  },
  log: JobLog,
  signal: AbortSignal,
): Promise<BuildResult> {
  if (signal.aborted) return { ok: false, reason: "cancelled" };
  const src = await readdir(input.contextDir);
  let cached = 0;
  let steps = 0;
  // The classic builder prints " ---> <image id>" after each step. The layer is this build's own
  // unless the step came from the cache ("---> Using cache" just before) or is a FROM (the base
  // image, or an earlier stage's).
  let previous = "";
  const countingLog: JobLog = (stream, line) => {
    if (/^Step \d+\/\d+ :/.test(line)) steps++;
    if (line.includes("Using cache")) cached++;
    const layer = /^\s*---> ([0-9a-f]{12,64})\s*$/.exec(line);
    if (layer && !/Using cache|^Step \d+\/\d+ : FROM /i.test(previous)) input.onLayer?.(layer[1]!);
    if (line.trim()) previous = line.trim();
    log(stream, line);
  };
  let response: NodeJS.ReadableStream;
  try {
    response = await docker.buildImage(
      { context: input.contextDir, src },
      {
        // One tag at build time; further tags (":latest") are added by the push step.
        t: input.tags[0],
        dockerfile: input.dockerfile,
        buildargs: input.args,
        ...(input.target ? { target: input.target } : {}),
        labels: input.labels ?? {},
        rm: true,
        forcerm: true,
        abortSignal: signal,
      },
    );
  } catch (err) {
    return { ok: false, reason: signal.aborted ? "cancelled" : `build request failed: ${(err as Error).message}` };
  }
  const progress = await followProgress(response, countingLog, signal);
  if (!progress.ok) return progress.reason === "cancelled" ? progress : { ok: false, reason: `build failed: ${progress.reason}` };
  const imageId = progress.aux.map((a) => a.ID).find((id): id is string => typeof id === "string");
  if (imageId) return { ok: true, imageId, cached, steps };
  // Older engines report the id only as "Successfully built <id>"; the first tag is as good.
  const inspected = await docker.getImage(input.tags[0] ?? "").inspect().catch(() => null);
  return inspected ? { ok: true, imageId: inspected.Id, cached, steps } : { ok: false, reason: "build finished without an image id" };
}
