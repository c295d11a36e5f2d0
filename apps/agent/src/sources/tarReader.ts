import { gunzipSync } from "node:zlib";
import { extract, type Header } from "tar-stream";
import { type ArchiveEntry, archiveLimits, type ParseResult } from "./archiveEntry";

/**
 * Reads a tar (ustar, pax, GNU long names — what `git archive`, GNU tar and bsdtar write) with
 * tar-stream. Device files and FIFOs are refused rather than skipped, so nothing odd is
 * half-applied; path checks happen later, in checkEntries, for every archive format alike.
 */
export async function readTar(archive: Buffer, options: { gzip?: boolean } = {}): Promise<ParseResult> {
  let buf: Buffer;
  try {
    buf = options.gzip ? gunzipSync(archive, { maxOutputLength: archiveLimits.maxTotalBytes }) : archive;
  } catch (err) {
    return { ok: false, reason: `not a valid gzip stream: ${(err as Error).message}` };
  }
  const entries: ArchiveEntry[] = [];
  const reader = extract();
  try {
    reader.end(buf);
    for await (const entry of reader) {
      const header = entry.header;
      const data = await collect(entry);
      const problem = addEntry(entries, header, data);
      if (problem) {
        reader.destroy();
        return { ok: false, reason: problem };
      }
    }
  } catch (err) {
    return { ok: false, reason: `not a valid tar archive: ${(err as Error).message}` };
  }
  return { ok: true, entries };
}

function addEntry(entries: ArchiveEntry[], header: Header, data: Buffer): string | null {
  const path = header.name;
  const mode = header.mode || 0o644;
  if (header.type === "file" || header.type === "contiguous-file") entries.push({ type: "file", path, mode, data });
  else if (header.type === "directory") entries.push({ type: "dir", path, mode });
  else if (header.type === "symlink") entries.push({ type: "symlink", path, target: header.linkname });
  else if (header.type === "link") entries.push({ type: "hardlink", path, target: header.linkname });
  else return `unsupported tar entry type '${header.type}' for ${JSON.stringify(path)}`;
  if (entries.length > archiveLimits.maxEntries) return "archive has too many entries";
  return null;
}

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
