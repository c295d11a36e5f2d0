import { RESULT_FILE_LIMIT } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import { extract } from "tar-stream";

export type ResultFile =
  | { ok: true; path: string; size: number; content: Buffer; truncated: boolean }
  | { ok: false; path: string; error: string };

/**
 * Copies a run's result file out of its stopped container: the engine's getArchive answers a
 * tar of the path, read here as a stream with tar-stream. Only the first entry counts and only
 * a regular file is taken (a directory, a symlink or a device is refused, so nothing outside the
 * named file is ever read); at most `limit` bytes are kept and the rest of the archive is never
 * read, so a 10 GB file costs 1 MiB of memory.
 */
export async function copyResultFile(docker: Dockerode, containerId: string, path: string, limit = RESULT_FILE_LIMIT): Promise<ResultFile> {
  let archive: NodeJS.ReadableStream;
  try {
    archive = (await docker.getContainer(containerId).getArchive({ path })) as NodeJS.ReadableStream;
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    return { ok: false, path, error: status === 404 ? "no such file in the container" : (err as Error).message };
  }
  const reader = extract();
  (archive as NodeJS.ReadableStream & { pipe: (d: NodeJS.WritableStream) => void }).pipe(reader);
  const stop = () => {
    reader.destroy();
    (archive as unknown as { destroy?: () => void }).destroy?.();
  };
  try {
    for await (const entry of reader) {
      const { type, size } = entry.header;
      if (type !== "file" && type !== "contiguous-file") {
        entry.resume();
        stop();
        return { ok: false, path, error: `not a regular file (a ${type ?? "unknown"} entry)` };
      }
      const chunks: Buffer[] = [];
      let kept = 0;
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        const room = limit - kept;
        if (room > 0) {
          const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
          chunks.push(part);
          kept += part.length;
        }
        if (kept >= limit) break;
      }
      const total = size ?? kept;
      stop();
      return { ok: true, path, size: Math.max(total, kept), content: Buffer.concat(chunks), truncated: total > kept };
    }
    return { ok: false, path, error: "the engine returned an empty archive" };
  } catch (err) {
    stop();
    return { ok: false, path, error: `unreadable archive: ${(err as Error).message}` };
  }
}
