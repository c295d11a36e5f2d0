import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LogEntry } from "@deploybot/protocol";
import type { Logger } from "pino";
import { backoffMs, sleep } from "./backoff";
import { type ControllerClient, ControllerError } from "./controllerClient";
import type { Redactor } from "./redact";
import { localIoReason } from "./diskFull";

const BATCH_LINES = 1000;
const BATCH_BYTES = 512 * 1024;
const FLUSH_EVERY_MS = 250;

/**
 * One job's log on its way to the controller. Every line is redacted, written to a spool file
 * in the state dir, then uploaded in batches at the controller's offset, so an outage of hours
 * or an agent restart loses no line and sends none twice.
 */
export class JobLogSpool {
  private readonly entries: LogEntry[] = [];
  private readonly file: string;
  private readonly dir: string;
  private readonly metaFile: string;
  private acked = 0;
  private pendingDisk: string[] = [];
  private closed = false;
  private abandoned = false;
  private halted = false;
  private wake: (() => void) | null = null;
  /** the first local write that failed (ENOSPC, EIO): lines stay in memory and are still sent */
  ioError: string | null = null;
  readonly done: Promise<void>;

  constructor(
    dir: string,
    readonly jobId: string,
    private readonly leaseId: string,
    private readonly client: ControllerClient,
    private readonly redactor: Redactor,
    private readonly logger: Logger,
    private readonly onCancelRequested: () => void = () => {},
    /** the longest wait between upload retries (the daemon: one heartbeat interval, see daemon.ts retrying) */
    private readonly retryCapMs: () => number = () => 30_000,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.dir = dir;
    this.file = join(dir, `${jobId}.jsonl`);
    this.metaFile = join(dir, `${jobId}.meta.json`);
    if (existsSync(this.file)) {
      for (const line of readFileSync(this.file, "utf8").split("\n")) {
        if (!line) continue;
        try {
          this.entries.push(JSON.parse(line) as LogEntry);
        } catch {
          // a torn last line from a crash mid-write; everything before it is intact
        }
      }
      this.acked = Math.min(this.readMeta()?.acked ?? 0, this.entries.length);
    } else {
      this.writeLocal(() => writeFileSync(this.metaFile, JSON.stringify({ leaseId, acked: 0 }), { mode: 0o600 }));
    }
    this.done = this.uploadLoop();
  }

  private readMeta(): { leaseId: string; acked: number } | null {
    try {
      return JSON.parse(readFileSync(this.metaFile, "utf8"));
    } catch {
      return null;
    }
  }

  get lines(): number {
    return this.entries.length;
  }

  append(stream: LogEntry["stream"], line: string): void {
    if (this.closed) return;
    for (const part of line.split(/\r?\n/)) {
      const entry: LogEntry = { ts: new Date().toISOString(), stream, line: this.redactor.redact(part).slice(0, 65_536) };
      this.entries.push(entry);
      this.pendingDisk.push(`${JSON.stringify(entry)}\n`);
    }
    if (this.pendingDisk.length === 1 || this.pendingDisk.length >= 100) setImmediate(() => this.flushDisk());
  }

  private flushDisk(): void {
    if (this.pendingDisk.length === 0) return;
    const chunk = this.pendingDisk.join("");
    this.pendingDisk = [];
    this.writeLocal(() => appendFileSync(this.file, chunk, { mode: 0o600 }));
  }

  /** A full or failing state disk must not stop the job's log or its report: note it, go on. */
  private writeLocal(write: () => void): void {
    try {
      write();
    } catch (err) {
      if (!this.ioError) {
        this.ioError = localIoReason(err, this.dir);
        this.logger.error({ jobId: this.jobId, err: this.ioError }, "cannot write the log spool; lines are kept in memory");
      }
    }
  }

  /** No more lines; resolves when everything is uploaded (or `timeoutMs` passes). */
  async close(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    this.flushDisk();
    this.closed = true;
    this.wake?.();
    const timedOut = new Promise<"timeout">((r) => {
      if (Number.isFinite(timeoutMs)) setTimeout(() => r("timeout"), timeoutMs).unref();
    });
    return (await Promise.race([this.done.then(() => "done" as const), timedOut])) === "done";
  }

  /** Stops uploading and keeps the spool on disk for the next run (a process that is going away). */
  async halt(): Promise<void> {
    this.flushDisk();
    this.halted = true;
    this.wake?.();
    await this.done;
  }

  private async uploadLoop(): Promise<void> {
    let failures = 0;
    while (!this.abandoned && !this.halted) {
      this.flushDisk();
      if (this.acked >= this.entries.length) {
        if (this.closed) break;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, FLUSH_EVERY_MS);
        });
        this.wake = null;
        continue;
      }
      const batch: LogEntry[] = [];
      let bytes = 0;
      for (let i = this.acked; i < this.entries.length && batch.length < BATCH_LINES && bytes < BATCH_BYTES; i++) {
        batch.push(this.entries[i]!);
        bytes += this.entries[i]!.line.length;
      }
      try {
        const res = await this.client.post<{ offset: number; cancelRequested: boolean }>(`/v1/jobs/${this.jobId}/logs`, {
          leaseId: this.leaseId,
          offset: this.acked,
          entries: batch,
        });
        this.setAcked(res.offset);
        failures = 0;
        if (res.cancelRequested) this.onCancelRequested();
      } catch (err) {
        if (err instanceof ControllerError && err.code === "offset_mismatch") {
          // the controller stored a retry whose answer we lost (or less): continue from its offset
          this.setAcked((err.details as { offset: number }).offset);
        } else if (err instanceof ControllerError && err.status < 500 && err.status !== 429) {
          this.logger.warn({ jobId: this.jobId, code: err.code }, "controller refuses this job's logs; dropping them");
          this.abandoned = true;
        } else {
          await sleep(backoffMs(failures++, 500, this.retryCapMs()));
        }
      }
    }
    if (!this.halted && (this.acked >= this.entries.length || this.abandoned)) this.remove();
  }

  private setAcked(offset: number) {
    this.acked = Math.min(offset, this.entries.length);
    this.writeLocal(() => writeFileSync(this.metaFile, JSON.stringify({ leaseId: this.leaseId, acked: this.acked }), { mode: 0o600 }));
  }

  private remove() {
    rmSync(this.file, { force: true });
    rmSync(this.metaFile, { force: true });
  }

  /** Spools left by an earlier run of the agent, by job id, with their lease. */
  static leftovers(dir: string): { jobId: string; leaseId: string }[] {
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith(".meta.json"))
      .flatMap((f) => {
        try {
          const meta = JSON.parse(readFileSync(join(dir, f), "utf8")) as { leaseId: string };
          return [{ jobId: f.slice(0, -".meta.json".length), leaseId: meta.leaseId }];
        } catch {
          return [];
        }
      });
  }
}
