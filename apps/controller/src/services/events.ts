import { EventEmitter } from "node:events";

export interface JobChange {
  id: string;
  status: string;
  app: string;
  host: string | null;
  agentId: string | null;
  deploymentId: string | null;
  expectedLogLines: number | null;
}

export interface StoredLogLine {
  seq: number;
  ts: string;
  stream: string;
  line: string;
}

/**
 * In-process facts about jobs, for listeners that must not poll: live log streams and
 * deployments that act when their jobs end. Emitted after the change is committed.
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

export const changeOf = (row: {
  id: string;
  status: string;
  app: string;
  targetHost: string | null;
  agentId: string | null;
  deploymentId: string | null;
  expectedLogLines: number | null;
}): JobChange => ({
  id: row.id,
  status: row.status,
  app: row.app,
  host: row.targetHost,
  agentId: row.agentId,
  deploymentId: row.deploymentId,
  expectedLogLines: row.expectedLogLines,
});
