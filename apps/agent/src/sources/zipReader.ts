import type { Readable } from "node:stream";
import yauzl, { type Entry, type ZipFile } from "yauzl";
import { type ArchiveEntry, archiveLimits, type ParseResult } from "./archiveEntry";

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;

/**
 * Reads a zip with yauzl (central directory, zip64, data descriptors, size validation).
 * Names are decoded here rather than by yauzl, so every path goes through our own checks
 * (checkEntries) with the same reasons as tar and files sources. Unix symlinks (mode in the
 * external attributes) are reported as symlinks so the caller can check where they point.
 */
export async function readZip(buf: Buffer): Promise<ParseResult> {
  let zip: ZipFile;
  try {
    zip = await new Promise<ZipFile>((resolve, reject) =>
      yauzl.fromBuffer(buf, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true }, (err, z) => (err ? reject(err) : resolve(z))),
    );
  } catch (err) {
    return { ok: false, reason: `not a zip archive: ${(err as Error).message}` };
  }
  if (zip.entryCount > archiveLimits.maxEntries) return { ok: false, reason: "archive has too many entries" };
  const entries: ArchiveEntry[] = [];
  let total = 0;
  try {
    for (;;) {
      const entry = await nextEntry(zip);
      if (!entry) break;
      const name = (entry.fileName as unknown as Buffer).toString("utf8");
      if ((entry.generalPurposeBitFlag & 0x1) !== 0) return { ok: false, reason: `encrypted zip member ${JSON.stringify(name)}` };
      const mode = entry.versionMadeBy >> 8 === 3 ? entry.externalFileAttributes >>> 16 : 0; // 3 = unix: st_mode
      if (name.endsWith("/") || (mode & S_IFMT) === S_IFDIR) {
        entries.push({ type: "dir", path: name, mode: mode & 0o7777 || 0o755 });
        continue;
      }
      total += entry.uncompressedSize;
      if (total > archiveLimits.maxTotalBytes) return { ok: false, reason: "archive expands beyond the size limit" };
      const data = await readEntry(zip, entry);
      if ((mode & S_IFMT) === S_IFLNK) entries.push({ type: "symlink", path: name, target: data.toString("utf8") });
      else entries.push({ type: "file", path: name, mode: mode & 0o7777 || 0o644, data });
    }
  } catch (err) {
    return { ok: false, reason: `corrupt zip archive: ${(err as Error).message}` };
  } finally {
    zip.close();
  }
  return { ok: true, entries };
}

function nextEntry(zip: ZipFile): Promise<Entry | null> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      zip.off("entry", onEntry);
      zip.off("end", onEnd);
      zip.off("error", onError);
    };
    const onEntry = (entry: Entry) => {
      cleanup();
      resolve(entry);
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    zip.on("entry", onEntry).on("end", onEnd).on("error", onError);
    zip.readEntry();
  });
}

async function readEntry(zip: ZipFile, entry: Entry): Promise<Buffer> {
  const stream = await new Promise<Readable>((resolve, reject) => zip.openReadStream(entry, (err, s) => (err ? reject(err) : resolve(s))));
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
