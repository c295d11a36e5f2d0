import { gunzipSync } from "node:zlib";
import { type ArchiveEntry, archiveLimits, type ParseResult } from "./archiveEntry";

const BLOCK = 512;

/**
 * A small ustar/pax/GNU tar reader over a buffer. Enough for `git archive`, GNU tar and bsdtar
 * output; device files and FIFOs are refused rather than skipped, so nothing odd is half-applied.
 */
export function readTar(archive: Buffer, options: { gzip?: boolean } = {}): ParseResult {
  let buf: Buffer;
  try {
    buf = options.gzip ? gunzipSync(archive, { maxOutputLength: archiveLimits.maxTotalBytes }) : archive;
  } catch (err) {
    return { ok: false, reason: `not a valid gzip stream: ${(err as Error).message}` };
  }
  const entries: ArchiveEntry[] = [];
  let offset = 0;
  let paxPath: string | undefined;
  let paxLink: string | undefined;
  while (offset + BLOCK <= buf.length) {
    const header = buf.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break; // end-of-archive marker
    if (!checksumMatches(header)) return { ok: false, reason: `corrupt tar header at byte ${offset}` };
    const size = readNumber(header.subarray(124, 136));
    if (size === null || size < 0) return { ok: false, reason: `bad size field at byte ${offset}` };
    const dataStart = offset + BLOCK;
    if (dataStart + size > buf.length) return { ok: false, reason: "tar archive is truncated" };
    const data = buf.subarray(dataStart, dataStart + size);
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    const type = String.fromCharCode(header[156] ?? 0);

    if (type === "x") {
      const pax = parsePax(data);
      paxPath = pax.path ?? paxPath;
      paxLink = pax.linkpath ?? paxLink;
      continue;
    }
    if (type === "L" || type === "K") {
      const long = cString(data);
      if (type === "L") paxPath = long;
      else paxLink = long;
      continue;
    }
    if (type === "g") continue; // global pax header (git archive writes the commit id here)

    const prefix = cString(header.subarray(345, 500));
    const ustar = cString(header.subarray(257, 263)) === "ustar";
    const name = paxPath ?? (ustar && prefix ? `${prefix}/${cString(header.subarray(0, 100))}` : cString(header.subarray(0, 100)));
    const link = paxLink ?? cString(header.subarray(157, 257));
    paxPath = undefined;
    paxLink = undefined;
    const mode = readNumber(header.subarray(100, 108)) ?? 0o644;

    if (type === "0" || type === "\0" || type === "7") entries.push({ type: "file", path: name, mode, data });
    else if (type === "5") entries.push({ type: "dir", path: name, mode });
    else if (type === "2") entries.push({ type: "symlink", path: name, target: link });
    else if (type === "1") entries.push({ type: "hardlink", path: name, target: link });
    else return { ok: false, reason: `unsupported tar entry type '${type}' for ${JSON.stringify(name)}` };
    if (entries.length > archiveLimits.maxEntries) return { ok: false, reason: "archive has too many entries" };
  }
  return { ok: true, entries };
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end === -1 ? b.length : end).toString("utf8");
}

/** Octal, or GNU base-256 when the high bit of the first byte is set. */
function readNumber(field: Buffer): number | null {
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + (field[i] ?? 0);
    return n;
  }
  const text = cString(field).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) return null;
  return Number.parseInt(text, 8);
}

function checksumMatches(header: Buffer): boolean {
  const stored = readNumber(header.subarray(148, 156));
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (header[i] ?? 0);
  return stored === sum;
}

/** pax records are "<len> <key>=<value>\n", len counting the whole record. */
function parsePax(data: Buffer): { path?: string; linkpath?: string } {
  const out: { path?: string; linkpath?: string } = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space === -1) break;
    const len = Number.parseInt(data.subarray(pos, space).toString("ascii"), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const record = data.subarray(space + 1, pos + len - 1).toString("utf8");
    const eq = record.indexOf("=");
    const key = record.slice(0, eq);
    if (key === "path") out.path = record.slice(eq + 1);
    if (key === "linkpath") out.linkpath = record.slice(eq + 1);
    pos += len;
  }
  return out;
}
