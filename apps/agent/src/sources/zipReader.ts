import { inflateRawSync } from "node:zlib";
import { type ArchiveEntry, archiveLimits, type ParseResult } from "./archiveEntry";

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;

/**
 * Reads a zip through its central directory (the authoritative list; local headers may carry
 * zeroed sizes when data descriptors are used). Stored and deflated members only; zip64 and
 * encrypted members are refused. Unix symlinks (mode in the external attributes) are reported
 * as symlinks so the caller can check where they point.
 */
export function readZip(buf: Buffer): ParseResult {
  const eocd = findEndOfCentralDirectory(buf);
  if (eocd === -1) return { ok: false, reason: "not a zip archive (no end of central directory)" };
  const count = buf.readUInt16LE(eocd + 10);
  const cdOffset = buf.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdOffset === 0xffffffff) return { ok: false, reason: "zip64 archives are not supported" };
  if (count > archiveLimits.maxEntries) return { ok: false, reason: "archive has too many entries" };

  const entries: ArchiveEntry[] = [];
  let total = 0;
  let pos = cdOffset;
  for (let i = 0; i < count; i++) {
    if (pos + 46 > buf.length || buf.readUInt32LE(pos) !== CENTRAL) return { ok: false, reason: "corrupt zip central directory" };
    const flags = buf.readUInt16LE(pos + 8);
    const method = buf.readUInt16LE(pos + 10);
    const compressedSize = buf.readUInt32LE(pos + 20);
    const size = buf.readUInt32LE(pos + 24);
    const nameLen = buf.readUInt16LE(pos + 28);
    const extraLen = buf.readUInt16LE(pos + 30);
    const commentLen = buf.readUInt16LE(pos + 32);
    const madeBy = buf.readUInt16LE(pos + 4) >> 8; // 3 = unix: external attrs carry st_mode
    const external = buf.readUInt32LE(pos + 38);
    const localOffset = buf.readUInt32LE(pos + 42);
    const name = buf.subarray(pos + 46, pos + 46 + nameLen).toString("utf8");
    pos += 46 + nameLen + extraLen + commentLen;

    if ((flags & 0x1) !== 0) return { ok: false, reason: `encrypted zip member ${JSON.stringify(name)}` };
    const mode = madeBy === 3 ? external >>> 16 : 0;
    if (name.endsWith("/") || (mode & S_IFMT) === S_IFDIR) {
      entries.push({ type: "dir", path: name, mode: mode & 0o7777 || 0o755 });
      continue;
    }
    if (localOffset + 30 > buf.length || buf.readUInt32LE(localOffset) !== LOCAL) return { ok: false, reason: `corrupt local header for ${JSON.stringify(name)}` };
    const dataStart = localOffset + 30 + buf.readUInt16LE(localOffset + 26) + buf.readUInt16LE(localOffset + 28);
    const raw = buf.subarray(dataStart, dataStart + compressedSize);
    if (raw.length !== compressedSize) return { ok: false, reason: "zip archive is truncated" };
    total += size;
    if (total > archiveLimits.maxTotalBytes) return { ok: false, reason: "archive expands beyond the size limit" };

    let data: Buffer;
    try {
      if (method === 0) data = Buffer.from(raw);
      else if (method === 8) data = inflateRawSync(raw, { maxOutputLength: Math.max(size, 1) });
      else return { ok: false, reason: `unsupported zip compression method ${method} for ${JSON.stringify(name)}` };
    } catch (err) {
      return { ok: false, reason: `cannot inflate ${JSON.stringify(name)}: ${(err as Error).message}` };
    }
    if (data.length !== size) return { ok: false, reason: `size mismatch for ${JSON.stringify(name)}` };
    if ((mode & S_IFMT) === S_IFLNK) entries.push({ type: "symlink", path: name, target: data.toString("utf8") });
    else entries.push({ type: "file", path: name, mode: mode & 0o7777 || 0o644, data });
  }
  return { ok: true, entries };
}

function findEndOfCentralDirectory(buf: Buffer): number {
  // The EOCD record is 22 bytes plus a comment of at most 65535 bytes, at the very end.
  const stop = Math.max(0, buf.length - 22 - 0xffff);
  for (let i = buf.length - 22; i >= stop; i--) if (buf.readUInt32LE(i) === EOCD) return i;
  return -1;
}
