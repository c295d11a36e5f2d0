/** One member of an archive, after parsing and before any check or write. */
export type ArchiveEntry =
  | { type: "file"; path: string; mode: number; data: Buffer }
  | { type: "dir"; path: string; mode: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "hardlink"; path: string; target: string };

export type ParseResult = { ok: true; entries: ArchiveEntry[] } | { ok: false; reason: string };

/** Caps so a small upload cannot expand into a disk-filling bomb. */
export const archiveLimits = { maxEntries: 100_000, maxTotalBytes: 2 * 1024 ** 3 };
