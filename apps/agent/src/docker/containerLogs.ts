import { PassThrough } from "node:stream";
import type Dockerode from "dockerode";
import type { JobLog } from "../executors/types";

/**
 * The last `lines` of a container's output, for failure messages. Containers are created
 * without a TTY, so the engine multiplexes stdout/stderr in 8-byte-framed chunks.
 */
export async function lastLogLines(docker: Dockerode, containerId: string, lines = 20): Promise<string[]> {
  const raw = (await docker
    .getContainer(containerId)
    .logs({ stdout: true, stderr: true, tail: lines, follow: false })
    .catch(() => Buffer.alloc(0))) as Buffer;
  return demuxBuffer(raw).flatMap((f) => f.text.split("\n")).filter((l) => l.trim() !== "").slice(-lines);
}

export function demuxBuffer(buf: Buffer): { stream: "stdout" | "stderr"; text: string }[] {
  const frames: { stream: "stdout" | "stderr"; text: string }[] = [];
  let pos = 0;
  while (pos + 8 <= buf.length) {
    const size = buf.readUInt32BE(pos + 4);
    frames.push({ stream: buf[pos] === 2 ? "stderr" : "stdout", text: buf.subarray(pos + 8, pos + 8 + size).toString("utf8") });
    pos += 8 + size;
  }
  return frames;
}

/** Follows a container's output into the job log until it exits (or the signal fires). */
export async function streamContainerLogs(docker: Dockerode, containerId: string, log: JobLog, signal: AbortSignal): Promise<void> {
  const stream = (await docker.getContainer(containerId).logs({ stdout: true, stderr: true, follow: true, abortSignal: signal } as Dockerode.ContainerLogsOptions & { follow: true })) as NodeJS.ReadableStream;
  const pipeLines = (name: "stdout" | "stderr") => {
    const out = new PassThrough();
    let pending = "";
    out.on("data", (chunk: Buffer) => {
      const lines = (pending + chunk.toString("utf8")).split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) log(name, line);
    });
    return { out, flush: () => pending !== "" && log(name, pending) };
  };
  const stdout = pipeLines("stdout");
  const stderr = pipeLines("stderr");
  docker.modem.demuxStream(stream, stdout.out, stderr.out);
  await new Promise<void>((resolve) => {
    stream.on("end", resolve);
    stream.on("close", resolve);
    stream.on("error", () => resolve());
  });
  stdout.flush();
  stderr.flush();
}
