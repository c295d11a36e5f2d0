import { link, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import type { ArchiveEntry } from "./archiveEntry";
import { checkRelativePath, PathRefused, prepareTargetPath, symlinkTargetProblem } from "./safePaths";

/**
 * Validates every entry first and only then writes, so a refused archive leaves nothing behind
 * (the job's work dir stays empty and the job fails before any docker call).
 */
export function checkEntries(entries: ArchiveEntry[]): { ok: true; entries: ArchiveEntry[] } | { ok: false; reason: string } {
  const checked: ArchiveEntry[] = [];
  for (const entry of entries) {
    const p = checkRelativePath(entry.path);
    if (!p.ok) {
      // "./" alone is how many tar tools name the root directory; it carries nothing to write.
      if (entry.type === "dir" && /^(\.\/?)+$/.test(entry.path)) continue;
      return { ok: false, reason: p.reason };
    }
    if (entry.type === "symlink") {
      const problem = symlinkTargetProblem(p.path, entry.target);
      if (problem) return { ok: false, reason: problem };
    }
    if (entry.type === "hardlink") {
      // A hardlink target names another member of the archive, relative to the archive root.
      const target = checkRelativePath(entry.target);
      if (!target.ok) return { ok: false, reason: `hardlink ${p.path} points outside the tree (${entry.target})` };
      checked.push({ ...entry, path: p.path, target: target.path });
      continue;
    }
    checked.push({ ...entry, path: p.path });
  }
  return { ok: true, entries: checked };
}

/** Writes checked entries under `root`; throws PathRefused if the disk disagrees with the checks. */
export async function writeEntries(root: string, entries: ArchiveEntry[]): Promise<number> {
  let written = 0;
  for (const entry of entries) {
    if (entry.type === "dir") {
      const target = await prepareTargetPath(root, entry.path);
      await mkdir(target, { recursive: true });
      continue;
    }
    const target = await prepareTargetPath(root, entry.path);
    await rm(target, { force: true, recursive: true });
    if (entry.type === "file") {
      // flag "wx": never follow or reuse something that appeared at the path meanwhile.
      await writeFile(target, entry.data, { flag: "wx", mode: entry.mode & 0o777 });
      written++;
    } else if (entry.type === "symlink") {
      await symlink(entry.target, target);
    } else {
      const source = await prepareTargetPath(root, entry.target);
      await link(source, target).catch((err: NodeJS.ErrnoException) => {
        throw new PathRefused(`hardlink ${entry.path} -> ${entry.target}: ${err.code ?? err.message}`);
      });
      written++;
    }
  }
  return written;
}
