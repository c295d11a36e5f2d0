import { mkdir } from "node:fs/promises";
import type { Source } from "@deploybot/protocol";
import type { JobLog } from "../executors/types";
import type { ParseResult } from "./archiveEntry";
import { checkoutGit } from "./gitSource";
import { PathRefused } from "./safePaths";
import { readTar } from "./tarReader";
import { checkEntries, writeEntries } from "./writeEntries";
import { readZip } from "./zipReader";

/** A build tree on disk, or an image to pull. `sha` is set for git sources. */
export type Materialized =
  | { ok: true; kind: "tree"; dir: string; sha?: string; files?: number }
  | { ok: true; kind: "image"; image: string }
  | { ok: false; reason: string };

/**
 * Turns any job source into what the executors consume. One function for every source type:
 * each branch only decodes its input into archive entries (or a checkout), and every write
 * goes through the same checks.
 */
export async function materializeSource(
  source: Source,
  input: { app: string; dest: string; cacheRoot: string },
  log: JobLog,
  signal: AbortSignal,
): Promise<Materialized> {
  try {
    if (source.type !== "image") await mkdir(input.dest, { recursive: true });
    if (source.type === "image") return { ok: true, kind: "image", image: source.image };
    if (source.type === "git") {
      const checkout = await checkoutGit({ app: input.app, url: source.url, ref: source.ref, cacheRoot: input.cacheRoot, dest: input.dest }, log, signal);
      if (!checkout.ok) return checkout;
      return { ok: true, kind: "tree", dir: input.dest, sha: checkout.sha };
    }
    const parsed = await decodeEntries(source);
    if (!parsed.ok) return { ok: false, reason: `${source.type} source refused: ${parsed.reason}` };
    const checked = checkEntries(parsed.entries);
    if (!checked.ok) return { ok: false, reason: `${source.type} source refused: ${checked.reason}` };
    const files = await writeEntries(input.dest, checked.entries);
    log("system", `${source.type}: wrote ${files} files`);
    return { ok: true, kind: "tree", dir: input.dest, files };
  } catch (err) {
    if (err instanceof PathRefused) return { ok: false, reason: `${source.type} source refused: ${err.message}` };
    throw err;
  }
}

async function decodeEntries(source: Extract<Source, { type: "files" | "archive" }>): Promise<ParseResult> {
  if (source.type === "files") {
    return {
      ok: true,
      entries: Object.entries(source.files).map(([path, content]) => ({ type: "file", path, mode: 0o644, data: Buffer.from(content, "utf8") })),
    };
  }
  const bytes = Buffer.from(source.data, "base64");
  if (source.format === "zip") return readZip(bytes);
  return readTar(bytes, { gzip: source.format === "tar.gz" });
}
