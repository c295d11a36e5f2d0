import { type AppendLogsRequest, isFinal, type JobStatus } from "@deploybot/protocol";
import { and, asc, eq, gt, sql } from "drizzle-orm";
import { reusable } from "../db/reusable";
import { jobLogs, jobs } from "../db/schema";
import { ApiError } from "../lib/errors";
import type { Deps } from "./deps";
import type { StoredLogLine } from "./events";
import type { LeaseService } from "./leases";
import type { IngestRedaction } from "./redaction";

export const TRUNCATION_MARKER = "[deploybot] log truncated: the job's log reached its size limit; later lines were dropped";

/**
 * Job logs are an append-only sequence addressed by the agent's line offset. An append names
 * the offset of its first entry: a retry of lines already stored is a no-op, an overlap stores
 * only the new tail, and a gap is refused with the controller's offset so the agent resyncs.
 */
export class JobLogService {
  private readonly insert;
  private readonly advance;

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
      if (stored.length > 0) {
        const insert = this.insert();
        for (const line of stored) await insert.execute({ jobId, ...line });
      }
      if (fresh.length > 0) {
        await this.advance().execute({ offset: seq, bytes, truncated: truncated ? 1 : 0, id: jobId, from: job.logOffset });
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
