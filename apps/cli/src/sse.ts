import { createParser, type EventSourceParser } from "eventsource-parser";
import { type ApiClient, CliError, ExitCode } from "./client";
import { interrupted, sleep } from "./command";

/** One dispatched Server-Sent Event; `id` is the stream's last event id once it was dispatched. */
export interface SseEvent {
  type: string;
  data: string;
  id: string | undefined;
}

/**
 * A `text/event-stream` parser: eventsource-parser does the WHATWG line rules (CRLF, LF or CR,
 * even split across chunks; comments; multi-line data); this wrapper only keeps the stream's
 * last event id, which moves when an event is dispatched, so a connection cut half-way through
 * an event resumes before it, never after it.
 */
export class SseParser {
  /** the id to send as Last-Event-ID when reconnecting */
  lastEventId: string | undefined;
  /** the server's `retry:` advice, in ms */
  retry: number | undefined;
  private out: SseEvent[] = [];
  private readonly parser: EventSourceParser;

  constructor(lastEventId?: string) {
    this.lastEventId = lastEventId;
    this.parser = createParser({
      onEvent: (event) => {
        if (event.id !== undefined) this.lastEventId = event.id;
        this.out.push({ type: event.event ?? "message", data: event.data, id: this.lastEventId });
      },
      onComment: (comment) => {
        this.out.push({ type: ":", data: comment.trimStart(), id: this.lastEventId });
      },
      onRetry: (ms) => {
        this.retry = ms;
      },
    });
  }

  /** Feeds decoded text; answers the events (and comments, as type ":") it completed. */
  feed(text: string): SseEvent[] {
    this.parser.feed(text);
    return this.out.splice(0);
  }
}

export interface FollowEventsOptions {
  /** the stream's path and query, e.g. /v1/logs/stream?job=ID */
  path: string;
  /** Ctrl-C, or the caller's own stop */
  signal: AbortSignal;
  lastEventId?: string;
  /** called for each event and comment, in order; answer "stop" to end the stream */
  onEvent(event: SseEvent): "stop" | undefined;
  /** told when a dropped connection is being resumed */
  onReconnect?(reason: string, lastEventId: string | undefined): void;
  /** told each time a connection is open: events committed from then on will arrive */
  onOpen?(): void;
  /** no byte for this long (the controller pings every 15 s) counts as a dropped connection */
  idleMs?: number;
}

// After a drop: keep trying this many times in a row (about a minute), then give up with exit 5.
const MAX_RECONNECTS = 30;
const MAX_RETRY_MS = 2_000;

/**
 * Reads an SSE stream until `onEvent` says stop, reconnecting with `Last-Event-ID` whenever the
 * connection drops or the body ends early, so no event is lost or repeated. The first
 * connection's errors (404, 401, unreachable) are thrown as they are.
 */
export async function followEvents(client: ApiClient, opts: FollowEventsOptions): Promise<void> {
  const idleMs = opts.idleMs ?? 45_000;
  let lastEventId = opts.lastEventId;
  let retryMs = 1_000;
  let connected = false;
  let failures = 0;
  for (;;) {
    if (opts.signal.aborted) throw interrupted();
    const cut = new AbortController();
    const signal = AbortSignal.any([opts.signal, cut.signal]);
    let res: Response;
    try {
      res = await client.stream(opts.path, lastEventId, signal);
    } catch (err) {
      if (opts.signal.aborted) throw interrupted();
      const retryable = err instanceof CliError && (err.exitCode === ExitCode.unreachable || (err.httpStatus ?? 0) >= 500);
      if (!connected || !retryable || ++failures > MAX_RECONNECTS) throw err;
      opts.onReconnect?.((err as Error).message, lastEventId);
      await sleep(Math.min(retryMs * failures, MAX_RETRY_MS), opts.signal);
      continue;
    }
    connected = true;
    opts.onOpen?.();

    const parser = new SseParser(lastEventId);
    const decoder = new TextDecoder();
    const reader = res.body!.getReader();
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => cut.abort(), idleMs);
    };
    let reason = "the controller closed the stream";
    try {
      arm();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        for (const event of parser.feed(decoder.decode(value, { stream: true }))) {
          if (event.type === ":") continue;
          lastEventId = parser.lastEventId;
          failures = 0;
          if (opts.onEvent(event) === "stop") return;
        }
        if (parser.retry !== undefined) retryMs = parser.retry;
      }
    } catch (err) {
      if (opts.signal.aborted) throw interrupted();
      reason = cut.signal.aborted ? `no data for ${Math.round(idleMs / 1000)} s` : `connection lost (${(err as Error).message})`;
    } finally {
      clearTimeout(idle);
      cut.abort();
      reader.cancel().catch(() => {});
    }
    lastEventId = parser.lastEventId;
    if (++failures > MAX_RECONNECTS) throw new CliError(ExitCode.unreachable, `lost the log stream from ${client.baseUrl}: ${reason}`);
    opts.onReconnect?.(reason, lastEventId);
    await sleep(Math.min(retryMs, MAX_RETRY_MS) * (failures > 1 ? 1 : 0.25), opts.signal);
  }
}
