import { statfsSync } from "node:fs";
import { dirname } from "node:path";

const FULL_CODES = new Set(["ENOSPC", "EDQUOT"]);

/** ENOSPC / EDQUOT from our own writes, or the same words in a tool's or the engine's message. */
export function isDiskFull(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | null;
  if (e?.code && FULL_CODES.has(e.code)) return true;
  const text = typeof err === "string" ? err : (e?.message ?? "");
  return /no space left on device|disk quota exceeded/i.test(text);
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 2 : 0)} MiB`;

/**
 * "0.00 MiB free of 1.00 MiB" for the filesystem holding `dir` (its nearest existing parent: a
 * work dir whose creation failed is not there), or "" when it cannot be read.
 */
export function freeSpace(dir: string): string {
  for (let at = dir; ; at = dirname(at)) {
    try {
      const s = statfsSync(at);
      return `${mib(s.bavail * s.bsize)} free of ${mib(s.blocks * s.bsize)}`;
    } catch {
      if (dirname(at) === at) return "";
    }
  }
}

/**
 * The reason a local write failed, for the job's error: a full disk says so and where (the path
 * when the system call named one, else the directory the agent was writing in), with what is
 * free there now. Anything else keeps its own message and place.
 */
export function localIoReason(err: unknown, dir: string): string {
  const e = err as NodeJS.ErrnoException;
  const where = e?.path ?? dir;
  if (isDiskFull(err)) {
    const free = freeSpace(dir);
    return `the disk is full: no space left on the filesystem holding ${where}${free ? ` (${free})` : ""}`;
  }
  return `local I/O error on the agent at ${where}: ${e?.message ?? String(err)}`;
}
