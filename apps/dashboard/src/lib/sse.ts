import { createParser } from "eventsource-parser";
import { authHeaders } from "./api";

export type StreamState = "connecting" | "live" | "reconnecting" | "ended" | "failed";

export interface StreamHandlers {
  onEvent(event: string, data: string, id: string | undefined): void;
  onState?(state: StreamState, detail?: string): void;
}

export interface StreamOptions {
  /** event names after which the server closes on purpose: no reconnect */
  endEvents?: string[];
  /** a stream that answers this status does not exist (yet): stop quietly */
  onMissing?: (status: number) => void;
}

/**
 * Server-Sent Events read with fetch, because a browser EventSource cannot send the
 * Authorization header the API requires. Reconnects with backoff (1 s doubling to 15 s) and
 * resumes with Last-Event-ID, as EventSource would; a 4xx answer other than 429 is final.
 */
export function openStream(path: string, handlers: StreamHandlers, options: StreamOptions = {}): () => void {
  const abort = new AbortController();
  let lastId: string | undefined;
  let ended = false;
  let delay = 1000;

  const run = async () => {
    while (!abort.signal.aborted && !ended) {
      handlers.onState?.(lastId === undefined ? "connecting" : "reconnecting");
      try {
        const res = await fetch(path, {
          headers: { accept: "text/event-stream", ...authHeaders(), ...(lastId !== undefined ? { "last-event-id": lastId } : {}) },
          signal: abort.signal,
          cache: "no-store",
        });
        if (!res.ok || !res.body) {
          if (res.status >= 400 && res.status < 500 && res.status !== 429) {
            const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
            if (options.onMissing && (res.status === 404 || res.status === 405)) options.onMissing(res.status);
            else handlers.onState?.("failed", body?.error?.message ?? `HTTP ${res.status}`);
            return;
          }
          throw new Error(`HTTP ${res.status}`);
        }
        handlers.onState?.("live");
        delay = 1000;
        const parser = createParser({
          onEvent: (msg) => {
            if (msg.id !== undefined) lastId = msg.id;
            const name = msg.event ?? "message";
            if (options.endEvents?.includes(name)) ended = true;
            handlers.onEvent(name, msg.data, msg.id);
          },
        });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(value);
        }
      } catch {
        if (abort.signal.aborted) return;
      }
      if (ended) break;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15_000);
    }
    if (!abort.signal.aborted) handlers.onState?.("ended");
  };
  void run();
  return () => abort.abort();
}
