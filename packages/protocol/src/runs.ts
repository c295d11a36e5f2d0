import { z } from "zod";
import { envName, name, pageCursor, queryNumber } from "./schemas";

/** What a schedule does with a tick while an earlier run of it is still active. */
export const concurrencyPolicies = ["forbid", "allow", "replace"] as const;
export const concurrencyPolicy = z.enum(concurrencyPolicies);

/** The largest result file kept per run; larger files are cut here and marked truncated. */
export const RESULT_FILE_LIMIT = 1024 * 1024;

/**
 * A run's status: the status of its job once one is queued (`queued` while it waits for an
 * agent), or what was decided instead of a job: `missed` (the controller was away and the tick
 * is past its deadline, or a newer tick ran), `skipped` (concurrency forbid, an earlier run was
 * active), `failed` before a job existed (for example: the app has no deployed release).
 */
export const runStatuses = ["queued", "running", "succeeded", "failed", "cancelled", "lost", "timed_out", "missed", "skipped"] as const;
export const runStatus = z.enum(runStatuses);
export type RunStatus = z.infer<typeof runStatus>;

export const runTriggers = ["schedule", "manual", "one-off"] as const;

export const runResultFile = z.object({
  path: z.string(),
  /** the file's size in the container; `stored` bytes of it are kept */
  size: z.number().int(),
  stored: z.number().int(),
  truncated: z.boolean(),
});

export const run = z.object({
  id: z.string(),
  app: z.string(),
  /** null for one-off runs */
  schedule: z.string().nullable(),
  trigger: z.enum(runTriggers),
  /** the cron tick this run belongs to (schedule runs) */
  tickAt: z.string().nullable(),
  status: runStatus,
  /** why it was missed, skipped or failed */
  reason: z.string().nullable(),
  command: z.array(z.string()),
  jobId: z.string().nullable(),
  host: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  durationMs: z.number().int().nullable(),
  resultFile: runResultFile.nullable(),
  error: z.string().nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
}).meta({ id: "Run" });
export type Run = z.infer<typeof run>;

export const runAnswer = z.object({ run });
export const runPage = z.object({ runs: z.array(run), nextCursor: z.string().nullable() });

export const listRunsQuery = z.object({
  app: name.optional(),
  schedule: name.optional(),
  cursor: pageCursor("run").optional(),
  limit: queryNumber(z.coerce.number().int().min(1).max(200).default(50)),
});

/** `POST /v1/apps/{name}/runs`: a one-off command in the app's current release. */
export const createRunRequest = z
  .object({
    command: z.array(z.string().max(4096)).min(1).max(256),
    host: name.optional(),
    env: z.record(envName, z.string()).optional(),
    timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
    /** a file in the container to keep as the run's result */
    resultFile: z.string().startsWith("/").max(1024).optional(),
  })
  .strict();
export type CreateRunRequest = z.infer<typeof createRunRequest>;

export const schedule = z.object({
  app: z.string(),
  name: z.string(),
  cron: z.string(),
  timezone: z.string(),
  command: z.array(z.string()),
  concurrency: concurrencyPolicy,
  startingDeadlineSeconds: z.number().nullable(),
  timeoutSeconds: z.number().nullable(),
  resultFile: z.string().nullable(),
  target: z.union([z.object({ host: z.string() }), z.object({ labels: z.array(z.string()) })]).nullable(),
  paused: z.boolean(),
  /** the next few ticks (ISO, UTC) */
  nextRuns: z.array(z.string()),
  lastRun: run.nullable(),
}).meta({ id: "Schedule" });
export type Schedule = z.infer<typeof schedule>;
export const scheduleAnswer = z.object({ schedule });
export const scheduleList = z.object({ schedules: z.array(schedule) });
export const listSchedulesQuery = z.object({ app: name.optional() });

/** Agents upload a run's result file here (`PUT /v1/jobs/{id}/result`), fenced by the lease. */
export const resultUploadHeaders = { lease: "x-deploybot-lease", path: "x-deploybot-result-path", size: "x-deploybot-result-size" } as const;
