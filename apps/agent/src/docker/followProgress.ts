import type { JobLog } from "../executors/types";

export type ProgressResult = { ok: true; aux: Record<string, unknown>[] } | { ok: false; reason: string };

interface ProgressMessage {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number };
  error?: string;
  errorDetail?: { message?: string };
  aux?: Record<string, unknown>;
}

/**
 * Reads the engine's JSON-lines progress stream (build, push, pull). Build output goes to the
 * job log line by line; push/pull progress bars (`progressDetail.current`) are dropped because
 * they repeat hundreds of times per layer. An `error` message fails the step with the daemon's
 * own words. Aborting the signal destroys the request, which makes dockerd cancel the build.
 */
export function followProgress(stream: NodeJS.ReadableStream, log: JobLog, signal: AbortSignal): Promise<ProgressResult> {
  return new Promise((resolve) => {
    const aux: Record<string, unknown>[] = [];
    let error: string | null = null;
    let pending = "";
    let settled = false;
    const finish = (result: ProgressResult) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      resolve(result);
    };
    const onAbort = () => {
      (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
      finish({ ok: false, reason: "cancelled" });
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });

    const handle = (line: string) => {
      if (line.trim() === "") return;
      let msg: ProgressMessage;
      try {
        msg = JSON.parse(line) as ProgressMessage;
      } catch {
        log("stdout", line);
        return;
      }
      if (msg.error || msg.errorDetail?.message) {
        error = msg.errorDetail?.message ?? msg.error ?? "unknown error";
        log("stderr", error);
      }
      if (msg.aux) aux.push(msg.aux);
      if (typeof msg.stream === "string") {
        for (const part of msg.stream.split("\n")) if (part.trim() !== "") log("stdout", part.replace(/\r$/, ""));
      } else if (msg.status && msg.progressDetail?.current === undefined) {
        log("stdout", msg.id ? `${msg.id}: ${msg.status}` : msg.status);
      }
    };
    stream.on("data", (chunk: Buffer | string) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) handle(line);
    });
    stream.on("end", () => {
      handle(pending);
      finish(error ? { ok: false, reason: error } : { ok: true, aux });
    });
    stream.on("error", (err: Error) => finish(signal.aborted ? { ok: false, reason: "cancelled" } : { ok: false, reason: err.message }));
    stream.on("close", () => finish(error ? { ok: false, reason: error } : signal.aborted ? { ok: false, reason: "cancelled" } : { ok: true, aux }));
  });
}
