import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AppLogEntry } from "@deploybot/protocol";
import type { Logger } from "pino";
import { backoffMs, sleep } from "../backoff";
import { type ControllerClient, ControllerError } from "../controllerClient";

const BATCH_LINES = 1000;
const BATCH_BYTES = 512 * 1024;
/** Unsent lines kept while the controller is away; past this the oldest are dropped (and counted in the agent log). */
const MAX_UNSENT = 200_000;

/**
 * Containers' output on its way to the controller: appended to a file in the state dir,
 * uploaded in batches at the controller's offset (a retry stores nothing twice), and cut
 * from the file once acknowledged, so an outage or an agent restart loses no line and
 * repeats none. `onFlushed` runs after lines reach the disk (the followers' cursors move then).
 */
export class AppLogSpool {
  private entries: AppLogEntry[] = [];
  /** the agent-wide offset of entries[0] */
  private base = 0;
  /** the offset the file's header says; lines before `base` still in the file are resent harmlessly */
  private fileBase = 0;
  private pendingDisk: AppLogEntry[] = [];
  private stopped = false;
  private wake: (() => void) | null = null;
  private done: Promise<void> | null = null;
  /** first line `{"base":N}`, then one entry per line: one file, so one rename keeps both consistent */
  private readonly file: string;

  constructor(
    dir: string,
    private readonly client: ControllerClient,
    private readonly logger: Logger,
    private readonly onFlushed: (entries: AppLogEntry[]) => void,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = join(dir, "spool.jsonl");
    try {
      const [header, ...lines] = readFileSync(this.file, "utf8").split("\n");
      this.base = (JSON.parse(header ?? "") as { base: number }).base;
      this.fileBase = this.base;
      for (const line of lines) {
        if (!line) continue;
        try {
          this.entries.push(JSON.parse(line) as AppLogEntry);
        } catch {
          // a torn last line from a crash mid-write: it was never acknowledged, and its cursor never moved
        }
      }
    } catch {
      this.rewrite();
    }
  }

  /** Lines read back from disk at start: where each container's follower resumes. */
  get spooled(): readonly AppLogEntry[] {
    return this.entries;
  }

  append(entry: AppLogEntry): void {
    this.pendingDisk.push(entry);
    if (this.pendingDisk.length === 1) setImmediate(() => this.flushDisk());
  }

  flushDisk(): void {
    if (this.pendingDisk.length === 0) return;
    const batch = this.pendingDisk;
    this.pendingDisk = [];
    appendFileSync(this.file, batch.map((e) => `${JSON.stringify(e)}\n`).join(""), { mode: 0o600 });
    this.entries.push(...batch);
    if (this.entries.length > MAX_UNSENT) {
      const dropped = this.entries.length - MAX_UNSENT + MAX_UNSENT / 10;
      this.logger.warn({ dropped }, "app log spool full while the controller is away; dropping the oldest lines");
      this.entries.splice(0, dropped);
      this.base += dropped;
      this.rewrite();
    }
    this.onFlushed(batch);
    this.wake?.();
  }

  /** Uploads until stopped; `agentPath` is `/v1/agents/{id}` once the agent is registered. */
  start(agentPath: () => string | null): void {
    this.done ??= this.uploadLoop(agentPath);
  }

  async stop(): Promise<void> {
    this.flushDisk();
    this.stopped = true;
    this.wake?.();
    await this.done;
  }

  private async uploadLoop(agentPath: () => string | null): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const path = agentPath();
      if (!path || this.entries.length === 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, 250);
        });
        this.wake = null;
        continue;
      }
      const batch: AppLogEntry[] = [];
      let bytes = 0;
      for (const e of this.entries) {
        if (batch.length >= BATCH_LINES || bytes >= BATCH_BYTES) break;
        batch.push(e);
        bytes += e.line.length;
      }
      try {
        const res = await this.client.post<{ offset: number }>(`${path}/app-logs`, { offset: this.base, entries: batch });
        this.acknowledge(res.offset);
        failures = 0;
      } catch (err) {
        if (err instanceof ControllerError && err.code === "offset_mismatch") {
          // ahead: the controller stored a batch whose answer we lost. Behind: its database was
          // replaced; what it lost cannot be sent again, so number from its offset on.
          const theirs = (err.details as { offset: number }).offset;
          if (theirs >= this.base) this.acknowledge(theirs);
          else {
            this.base = theirs;
            this.rewrite();
          }
        } else {
          if (err instanceof ControllerError && err.status < 500 && err.status !== 429) {
            this.logger.warn({ code: err.code, err: err.message }, "controller refuses app logs; retrying later");
          }
          await sleep(backoffMs(failures++, 500, 30_000));
        }
      }
    }
  }

  private acknowledge(offset: number) {
    const n = Math.min(Math.max(0, offset - this.base), this.entries.length);
    if (n === 0) return;
    this.entries.splice(0, n);
    this.base += n;
    // Rewriting costs every unsent line: do it when the spool is empty (the usual case) or every
    // 5,000 lines. Until then the file still holds sent lines, and after a crash the controller
    // skips them by offset.
    if (this.entries.length === 0 || this.base - this.fileBase >= 5000) this.rewrite();
  }

  /** The file holds exactly the unacknowledged lines after their offset (tmp + rename). */
  private rewrite() {
    const body = [JSON.stringify({ base: this.base }), ...this.entries.map((e) => JSON.stringify(e))].join("\n");
    writeFileSync(`${this.file}.tmp`, `${body}\n`, { mode: 0o600 });
    renameSync(`${this.file}.tmp`, this.file);
    this.fileBase = this.base;
  }
}
