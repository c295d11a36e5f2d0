import { type ControllerEvent, type EventsQuery, eventTypeMatches } from "@deploybot/protocol";
import { ApiError } from "../lib/errors";
import type { Deps } from "./deps";
import type { SseSink } from "./logStream";
import { Wakeup } from "./logTail";
import type { OutboxEvent } from "./outbox";

export interface EventStreamOptions {
  /** a `: ping` comment after this long without a write, so proxies keep the connection */
  pingMs: number;
  /** outbox rows read per query */
  page: number;
}

/**
 * Frames by event object: streams given the same row object (the read they share in a turn, see
 * `read`, or a job.changed row the SQLite outbox hands out as it appended it) write its frame
 * once for all of them, not once per subscriber.
 */
const frames = new WeakMap<OutboxEvent, string>();

const frame = (e: OutboxEvent) => {
  let text = frames.get(e);
  if (text === undefined) {
    const body: ControllerEvent = { id: e.id, type: e.type, at: new Date(e.createdAt).toISOString(), app: e.app, data: e.data };
    text = `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(body)}\n\n`;
    frames.set(e, text);
  }
  return text;
};

/** Parses `Last-Event-ID` / `?after=`: an outbox id. */
export function parseEventCursor(text: string): number {
  if (!/^\d{1,15}$/.test(text.trim())) throw new ApiError(400, "invalid_cursor", "the event id must be an event's numeric id");
  return Number(text.trim());
}

/**
 * `GET /v1/events`: the outbox as Server-Sent Events, in commit order. Each frame's id is the
 * outbox id, so `Last-Event-ID` resumes exactly after the last event the client saw — across
 * controller restarts, since the outbox is the database. Without a cursor the stream starts at
 * the next change. A cursor older than the retention starts with a `gap` event (the events in
 * between were pruned), then everything retained.
 */
export class EventStreams {
  readonly options: EventStreamOptions;
  private open = 0;
  /** the read of this turn, shared by the streams that ask for the same page (see `read`) */
  private shared: { after: number; rows: Promise<OutboxEvent[]> } | undefined;

  constructor(
    private readonly deps: Deps,
    options: Partial<EventStreamOptions> = {},
  ) {
    this.options = { pingMs: 15_000, page: 500, ...options };
  }

  get streams(): number {
    return this.open;
  }

  /**
   * The page after `after`. Streams that follow live all stand at the same id and are woken in
   * the same turn: the first one's read serves the others for the rest of that turn (a row
   * committed meanwhile wakes them again). A read of its own per subscriber and change was most
   * of what a subscriber cost (39% of the profile with 20). With this and the frames written
   * once (above): 2.7-2.9 CPU µs per subscriber and change instead of 12.5-14.7 (pnpm
   * bench:events, two runs each, interleaved, load 6-7).
   */
  private read(after: number): Promise<OutboxEvent[]> {
    if (this.shared?.after === after) return this.shared.rows;
    const rows = this.deps.outbox.after(after, this.options.page);
    const shared = { after, rows };
    this.shared = shared;
    setImmediate(() => {
      if (this.shared === shared) this.shared = undefined;
    });
    return rows;
  }

  async serve(q: EventsQuery, after: number | undefined) {
    const { outbox } = this.deps;
    // read now, before the response starts: "from now" means the changes after this request
    let cursor = after ?? (await outbox.latestId());
    const oldest = await outbox.oldestId();
    const gap = after !== undefined && oldest !== null && after < oldest - 1 ? { after, oldestId: oldest } : null;
    const wanted = (e: OutboxEvent) => (q.app === undefined || e.app === q.app) && eventTypeMatches(e.type, q.types);

    return async (sink: SseSink) => {
      this.open++;
      const wakeup = new Wakeup();
      const stop = outbox.onAppend(wakeup.notify);
      sink.onAbort(wakeup.notify);
      let lastWrite = performance.now();
      const write = async (chunk: string) => {
        lastWrite = performance.now();
        await sink.write(chunk);
      };
      try {
        await write("retry: 2000\n\n");
        if (gap) await write(`event: gap\ndata: ${JSON.stringify(gap)}\n\n`);
        while (!sink.aborted) {
          const rows = await this.read(cursor);
          const text = rows.filter(wanted).map(frame).join("");
          if (rows.length > 0) cursor = rows[rows.length - 1]!.id;
          if (text) await write(text);
          if (rows.length === this.options.page) continue;
          const quiet = performance.now() - lastWrite;
          if (quiet >= this.options.pingMs) {
            await write(": ping\n\n");
            continue;
          }
          await wakeup.wait(this.options.pingMs - quiet);
        }
      } finally {
        this.open--;
        stop();
      }
    };
  }
}
