import { lstat, mkdir, realpath } from "node:fs/promises";
import path from "node:path";

/**
 * Checks a path that comes from a job (files map, archive entry, link target) before it touches
 * the disk. Returns the normalised POSIX relative path, or a reason it is refused.
 * Refused: empty, absolute (`/x`, `\x`, `C:x`), NUL, any `..` component, backslashes (an
 * archive made on Windows could smuggle `..\` past a POSIX-only split).
 */
export function checkRelativePath(p: string): { ok: true; path: string } | { ok: false; reason: string } {
  if (p.length === 0) return { ok: false, reason: "empty path" };
  if (p.includes("\0")) return { ok: false, reason: `path contains NUL: ${JSON.stringify(p)}` };
  if (p.includes("\\")) return { ok: false, reason: `path contains a backslash: ${JSON.stringify(p)}` };
  if (p.startsWith("/") || /^[a-zA-Z]:/.test(p)) return { ok: false, reason: `absolute path: ${JSON.stringify(p)}` };
  const parts = p.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.some((part) => part === "..")) return { ok: false, reason: `path escapes the tree ('..'): ${JSON.stringify(p)}` };
  if (parts.length === 0) return { ok: false, reason: `path names the tree root: ${JSON.stringify(p)}` };
  return { ok: true, path: parts.join("/") };
}

/**
 * A symlink at `linkPath` (relative, already checked) pointing at `target` must stay inside the
 * tree: absolute targets are refused, relative ones are resolved from the link's directory.
 */
export function symlinkTargetProblem(linkPath: string, target: string): string | null {
  if (target.length === 0 || target.includes("\0")) return `symlink ${linkPath} has an invalid target`;
  if (target.startsWith("/") || target.includes("\\")) return `symlink ${linkPath} points outside the tree (${target})`;
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(linkPath), target));
  if (resolved === ".." || resolved.startsWith("../")) return `symlink ${linkPath} points outside the tree (${target})`;
  return null;
}

export const isInside = (root: string, candidate: string): boolean => {
  const rel = path.relative(root, candidate);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
};

/**
 * Creates the parent directories of `rel` under `root` and returns the absolute target path,
 * refusing when an existing component (a symlink written earlier, or one already on disk)
 * resolves outside the tree. The textual checks above make this unreachable in theory; it is
 * the belt to their braces, because a path bug here writes anywhere on the host.
 */
export async function prepareTargetPath(root: string, rel: string): Promise<string> {
  const realRoot = await realpath(root);
  const target = path.join(realRoot, rel);
  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true });
  const realParent = await realpath(parent);
  if (!isInside(realRoot, realParent)) throw new PathRefused(`${rel} resolves outside the tree through a symlink`);
  const existing = await lstat(target).catch(() => null);
  if (existing?.isSymbolicLink()) throw new PathRefused(`${rel} would be written through a symlink`);
  return target;
}

/** Resolves a directory or file named by the job (build context, Dockerfile) inside `root`. */
export async function resolveInside(root: string, rel: string): Promise<string> {
  const realRoot = await realpath(root);
  const resolved = await realpath(path.join(realRoot, rel)).catch(() => null);
  if (resolved === null) throw new PathRefused(`${rel} does not exist in the source`);
  if (!isInside(realRoot, resolved)) throw new PathRefused(`${rel} resolves outside the source tree`);
  return resolved;
}

/** Thrown only inside the sources module; converted to a failed outcome at its boundary. */
export class PathRefused extends Error {}
