import { z } from "zod";
import { desiredRunState, name, queryNumber } from "./schemas";

// ---------------------------------------------------------------------------------------------
// Status and operations (REST)
// ---------------------------------------------------------------------------------------------

export const appHostStatus = z.object({
  host: z.string(),
  online: z.boolean(),
  desired: z
    .object({ release: z.string().nullable(), replicas: z.number().int(), state: desiredRunState, updatedAt: z.string() })
    .nullable(),
  actual: z.object({
    releases: z.array(z.string()),
    containers: z.number().int(),
    running: z.number().int(),
    healthy: z.number().int(),
    restarts: z.number().int(),
    lastExitCode: z.number().int().nullable(),
    lastReason: z.string().nullable(),
    since: z.string().nullable(),
    nextRestartAt: z.string().nullable(),
  }),
});
export type AppHostStatus = z.infer<typeof appHostStatus>;

export const appOperations = ["stop", "start", "restart", "scale", "remove"] as const;
export const appOperation = z.enum(appOperations);
export type AppOperation = z.infer<typeof appOperation>;

export const appOperationRequest = z
  .object({
    /** default: every host the app runs on (apps.yaml hosts plus hosts with a desired state) */
    hosts: z.array(name).min(1).max(100).optional(),
    /** scale only (0 is `stop`) */
    replicas: z.number().int().min(1).max(100).optional(),
    /** remove only: also delete the app's named volumes on those hosts, with their data */
    purgeVolumes: z.boolean().optional(),
  })
  .strict();
export type AppOperationRequest = z.infer<typeof appOperationRequest>;

export const appLogsQuery = z.object({
  host: name.optional(),
  /** "10m", "2h", "30s", or an ISO time */
  since: z.string().max(40).optional(),
  tail: queryNumber(z.coerce.number().int().min(1).max(10_000).optional()),
  after: queryNumber(z.coerce.number().int().min(0).optional()),
  follow: z.enum(["0", "1", "true", "false"]).optional(),
});

export const appLogLine = z.object({
  id: z.number().int(),
  host: z.string(),
  container: z.string(),
  ts: z.string(),
  stream: z.string(),
  line: z.string(),
});
export type AppLogLine = z.infer<typeof appLogLine>;

/** A batch of container output lines at the agent's offset (like job logs). */
export const appLogEntry = z.object({
  ts: z.string().max(40),
  app: z.string().max(128),
  container: z.string().max(128),
  stream: z.enum(["stdout", "stderr"]).default("stdout"),
  line: z.string().max(65_536),
});
export type AppLogEntry = z.infer<typeof appLogEntry>;

export const appendAppLogsRequest = z.object({
  offset: z.number().int().min(0),
  entries: z.array(appLogEntry).max(5000),
});

/**
 * `since` of an app's output ("10m", "2h", "45s", "1d" or an ISO time) as epoch ms at `now`; null
 * when it is neither. One parser for the controller (a 400) and the CLI (a usage error, exit 2).
 */
export function sinceMs(since: string, now: number): number | null {
  const rel = /^(\d{1,7})(s|m|h|d)$/.exec(since);
  if (rel) return now - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as "s" | "m" | "h" | "d"];
  const at = Date.parse(since);
  return Number.isNaN(at) ? null : at;
}

export const SINCE_FORMS = "10m, 2h, 1d or an ISO time";

/** Docker trims trailing zeros of RFC 3339 nanoseconds; padded to 9 digits, timestamps compare as strings. */
export function normaliseTs(ts: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(ts);
  return m ? `${m[1]}.${(m[2] ?? "").padEnd(9, "0")}Z` : ts;
}
