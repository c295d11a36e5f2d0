import { type AppendLogsRequest, isFinal, type JobStatus } from "@deploybot/protocol";
import { and, asc, eq, gt, sql } from "drizzle-orm";
import { reusable } from "../db/reusable";
import { jobLogs, jobs } from "../db/schema";
import { ApiError } from "../lib/errors";
import type { Deps } from "./deps";
import type { StoredLogLine } from "./events";
import type { LeaseService } from "./leases";
import type { IngestRedaction } from "./redaction";

/** Rows per multi-row INSERT on SQLite: a full chunk binds 500 parameters (SQLite allows 32,766). */
const CHUNK = 100;

export const TRUNCATION_MARKER = "[deploybot] log truncated: the job's log reached its size limit; later lines were dropped";

/**
 * Job logs are an append-only sequence addressed by the agent's line offset. An append names
 * the offset of its first entry: a retry of lines already stored is a no-op, an overlap stores
 * only the new tail, and a gap is refused with the controller's offset so the agent resyncs.
 */
export class JobLogService {
  private readonly insert;
  private readonly advance;
  /**
   * SQLite's fast path: better-sqlite3 statements prepared once, full chunks of lines in one
   * multi-row INSERT. The drizzle prepared queries below (the PostgreSQL path) ran at 0.73-0.78x
   * the lines/s of raw statements on SQLite: drizzle fills placeholders per parameter and answers
   * each execute with a thenable. Measured (pnpm bench:logs, 100-line batches, 5 passes
   * interleaved, load 12): this path 1.15x the lines/s of the raw statements before drizzle (1.20x
   * by CPU), the drizzle queries 0.75x (0.59x by CPU) in the same run.
   */
  private readonly sqlite;

  constructor(
    private readonly deps: Deps,
    private readonly leases: LeaseService,
    private readonly redaction?: IngestRedaction,
  ) {
    const p = sql.placeholder;
    this.insert = reusable(deps.db, () =>
      deps.db.insert(jobLogs).values({ jobId: p("jobId"), seq: p("seq"), ts: p("ts"), stream: p("stream"), line: p("line") }).prepare(),
    );
    this.advance = reusable(deps.db, () =>
      deps.db
        .update(jobs)
        .set({ logOffset: sql`${p("offset")}`, logBytes: sql`${p("bytes")}`, logTruncated: sql`${p("truncated")}` })
        .where(and(eq(jobs.id, p("id")), eq(jobs.logOffset, p("from"))))
        .prepare(),
    );
    if (deps.db.engine === "sqlite") {
      const client = deps.db.$client;
      const insert = "INSERT INTO job_logs (job_id, seq, ts, stream, line) VALUES ";
      this.sqlite = {
        one: client.prepare(`${insert}(?, ?, ?, ?, ?)`),
        chunk: client.prepare(insert + Array.from({ length: CHUNK }, () => "(?, ?, ?, ?, ?)").join(", ")),
        advance: client.prepare("UPDATE jobs SET log_offset = ?, log_bytes = ?, log_truncated = ? WHERE id = ? AND log_offset = ?"),
      };
    }
  }

  /** Stores the lines: SQLite by full chunks in one statement each, PostgreSQL one query per line. */
  private async store(jobId: string, lines: StoredLogLine[]): Promise<void> {
    if (!this.sqlite) {
      const insert = this.insert();
      for (const line of lines) await insert.execute({ jobId, ...line });
      return;
    }
    const { one, chunk } = this.sqlite;
    let i = 0;
    if (lines.length >= CHUNK) {
      const params: Array<string | number> = new Array(CHUNK * 5);
      for (; i + CHUNK <= lines.length; i += CHUNK) {
        for (let k = 0; k < CHUNK; k++) {
          const l = lines[i + k]!;
          params[k * 5] = jobId;
          params[k * 5 + 1] = l.seq;
          params[k * 5 + 2] = l.ts;
          params[k * 5 + 3] = l.stream;
          params[k * 5 + 4] = l.line;
        }
        chunk.run(params);
      }
    }
    for (; i < lines.length; i++) {
      const l = lines[i]!;
      one.run(jobId, l.seq, l.ts, l.stream, l.line);
    }
  }

  async append(agentId: string, jobId: string, body: AppendLogsRequest) {
    const max = this.deps.config.logMaxBytes;
    // One transaction: the offset check and the inserts commit together.
    const result = await this.deps.db.write(async () => {
      let job = await this.leases.fence(jobId, agentId, body.leaseId);
      if (body.offset > job.logOffset) {
        throw new ApiError(409, "offset_mismatch", `expected offset ${job.logOffset}, got ${body.offset}`, {
          offset: job.logOffset,
        });
      }
      const fresh = body.entries.slice(job.logOffset - body.offset);
      const redactor = fresh.length > 0 ? await this.redaction?.forApp(job.app) : undefined;
      let bytes = job.logBytes;
      let truncated = job.logTruncated;
      let seq = job.logOffset;
      const stored: StoredLogLine[] = [];
      for (const entry of fresh) {
        if (!truncated) {
          const size = Buffer.byteLength(entry.line);
          const over = bytes + size > max;
          const line: StoredLogLine = over
            ? { seq, ts: entry.ts, stream: "system", line: TRUNCATION_MARKER }
            : { seq, ts: entry.ts, stream: entry.stream, line: redactor ? redactor.redact(entry.line) : entry.line };
          if (over) truncated = true;
          else bytes += size;
          stored.push(line);
        }
        seq++;
      }
      if (stored.length > 0) await this.store(jobId, stored);
      if (fresh.length > 0) {
        if (this.sqlite) this.sqlite.advance.run(seq, bytes, truncated ? 1 : 0, jobId, job.logOffset);
        else await this.advance().execute({ offset: seq, bytes, truncated: truncated ? 1 : 0, id: jobId, from: job.logOffset });
        if (!isFinal(job.status as JobStatus)) job = await this.leases.renew(job);
      }
      return { stored, answer: { offset: seq, truncated, cancelRequested: job.cancelRequested } };
    });
    this.deps.events.logsAppended(jobId, result.stored);
    return result.answer;
  }

  async read(jobId: string, after: number, limit: number) {
    const job = (await this.deps.db
      .select({ status: jobs.status, truncated: jobs.logTruncated, offset: jobs.logOffset })
      .from(jobs)
      .where(eq(jobs.id, jobId)))[0];
    if (!job) throw new ApiError(404, "not_found", `job '${jobId}' does not exist`);
    const entries = await this.deps.db
      .select({ seq: jobLogs.seq, ts: jobLogs.ts, stream: jobLogs.stream, line: jobLogs.line })
      .from(jobLogs)
      .where(and(eq(jobLogs.jobId, jobId), gt(jobLogs.seq, after)))
      .orderBy(asc(jobLogs.seq))
      .limit(limit);
    const last = entries[entries.length - 1];
    return {
      jobId,
      entries,
      next: last ? last.seq : after,
      truncated: job.truncated,
      finished: isFinal(job.status as JobStatus),
    };
  }
}
