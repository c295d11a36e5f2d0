import type { JobChangedEvent } from "@deploybot/protocol";
import { EventEmitter } from "node:events";

/** What a log stream hears of a job's change: the `job.changed` event's data. */
export type JobChange = JobChangedEvent;

export interface StoredLogLine {
  seq: number;
  ts: string;
  stream: string;
  line: string;
}

/**
 * In-process signals for live log streams: job changes (emitted by the drainer, from the
 * outbox, after the change committed) and appended log lines. Nothing durable listens here:
 * consequences that must happen are outbox consumers (drainer.ts).
 */
export class JobEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // one listener per open log stream; the default cap of 10 would warn at the 11th viewer
    this.emitter.setMaxListeners(0);
  }

  jobChanged(change: JobChange): void {
    this.emitter.emit("job", change);
  }

  logsAppended(jobId: string, entries: StoredLogLine[]): void {
    if (entries.length > 0) this.emitter.emit("logs", jobId, entries);
  }

  onJob(listener: (change: JobChange) => void): () => void {
    this.emitter.on("job", listener);
    return () => this.emitter.off("job", listener);
  }

  onLogs(listener: (jobId: string, entries: StoredLogLine[]) => void): () => void {
    this.emitter.on("logs", listener);
    return () => this.emitter.off("logs", listener);
  }
}
