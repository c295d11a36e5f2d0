import type Dockerode from "dockerode";
import type { JobLog } from "../executors/types";
import { followProgress } from "./followProgress";
import type { AuthConfig } from "./registryAuth";
import { splitImageRef } from "./registryAuth";

export type PushResult = { ok: true; digest: string | undefined } | { ok: false; reason: string };

/** Tags `imageId` as `repo:tag` and pushes it; returns the manifest digest the registry reported. */
export async function pushImage(
  docker: Dockerode,
  input: { imageId: string; repo: string; tag: string; auth: AuthConfig | undefined },
  log: JobLog,
  signal: AbortSignal,
): Promise<PushResult> {
  if (signal.aborted) return { ok: false, reason: "cancelled" };
  try {
    await docker.getImage(input.imageId).tag({ repo: input.repo, tag: input.tag });
    log("system", `push: ${input.repo}:${input.tag}${input.auth ? ` as ${input.auth.username}` : " (no credentials)"}`);
    const stream = await docker.getImage(input.repo).push({ tag: input.tag, authconfig: input.auth, abortSignal: signal } as Dockerode.ImagePushOptions);
    const progress = await followProgress(stream, log, signal);
    if (!progress.ok) return progress.reason === "cancelled" ? progress : { ok: false, reason: `push of ${input.repo}:${input.tag} failed: ${progress.reason}` };
    const digest = progress.aux.map((a) => a.Digest).find((d): d is string => typeof d === "string");
    return { ok: true, digest };
  } catch (err) {
    return { ok: false, reason: signal.aborted ? "cancelled" : `push of ${input.repo}:${input.tag} failed: ${(err as Error).message}` };
  }
}

export type PullResult = { ok: true; imageId: string; digest: string | undefined } | { ok: false; reason: string };

/** Pulls `ref` (a missing tag means `latest`) and returns the local image id and repo digest. */
export async function pullImage(docker: Dockerode, ref: string, auth: AuthConfig | undefined, log: JobLog, signal: AbortSignal): Promise<PullResult> {
  if (signal.aborted) return { ok: false, reason: "cancelled" };
  const { repo, tag } = splitImageRef(ref);
  const full = ref.includes("@") ? ref : `${repo}:${tag ?? "latest"}`;
  // A digest names immutable content, and a repository with no registry host (a local build
  // such as deploybot/web:v1, kept for rollback) lives only here: use the local copy.
  const local = await docker.getImage(full).inspect().catch(() => null);
  if (local && (full.includes("@sha256:") || !hasRegistryHost(repo))) {
    log("system", `pull: ${full} is present locally`);
    return { ok: true, imageId: local.Id, digest: local.RepoDigests?.find((d) => d.startsWith(`${repo}@`))?.split("@")[1] };
  }
  try {
    log("system", `pull: ${full}`);
    const stream = await docker.pull(full, { authconfig: auth, abortSignal: signal });
    const progress = await followProgress(stream, log, signal);
    if (!progress.ok) return progress.reason === "cancelled" ? progress : { ok: false, reason: `pull of ${full} failed: ${progress.reason}` };
    const info = await docker.getImage(full).inspect();
    const digest = info.RepoDigests?.find((d) => d.startsWith(`${repo}@`))?.split("@")[1];
    return { ok: true, imageId: info.Id, digest };
  } catch (err) {
    return { ok: false, reason: signal.aborted ? "cancelled" : `pull of ${full} failed: ${(err as Error).message}` };
  }
}

/** `host:port/x` or `registry.example.com/x` carry a registry host; `deploybot/web` does not. */
function hasRegistryHost(repo: string): boolean {
  const first = repo.split("/")[0]!;
  return repo.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
}
