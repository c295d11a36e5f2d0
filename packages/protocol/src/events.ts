import { z } from "zod";
import { deploymentStatuses } from "./deployments";
import { run } from "./runs";
import { jobKind, jobStatus, name } from "./schemas";

/**
 * The controller's change events (`GET /v1/events`, and the outbox every consequence is applied
 * from). Each type names the shape of its `data`. The set is open: a feature adds its types here
 * (one entry, one schema), clients ignore types they do not know, and data only ever gains fields.
 */

/** `job.changed`: a job was queued or moved to another status (claim, start, finish, requeue, lost, cancel, supersede, timeout). */
export const jobChangedEvent = z.object({
  id: z.string(),
  kind: jobKind,
  app: z.string(),
  status: jobStatus,
  /** what moved it: queued | claimed | started | finished | requeued | failed | lost | cancel_requested | cancelled | superseded | timed_out */
  transition: z.string(),
  host: z.string().nullable(),
  labels: z.array(z.string()).nullable(),
  agentId: z.string().nullable(),
  deploymentId: z.string().nullable(),
  attempts: z.number().int(),
  cancelRequested: z.boolean(),
  error: z.string().nullable(),
  /** the agent's count of log lines, from its final report (the log is complete at this offset) */
  expectedLogLines: z.number().int().nullable(),
  /**
   * The job's times after the change, in milliseconds since the epoch (null: not yet): queued,
   * claimed, started, ended. Missing only in events stored before these fields existed: a
   * consumer that needs them reads the job then.
   */
  createdAtMs: z.number().int().optional(),
  assignedAtMs: z.number().int().nullable().optional(),
  startedAtMs: z.number().int().nullable().optional(),
  finishedAtMs: z.number().int().nullable().optional(),
});
export type JobChangedEvent = z.infer<typeof jobChangedEvent>;

/** `deployment.changed`: created, or its status (or the failure of one of its consequences) changed. */
export const deploymentChangedEvent = z.object({
  id: z.string(),
  app: z.string(),
  status: z.enum(deploymentStatuses),
  error: z.string().nullable(),
  releaseId: z.string().nullable(),
  sha: z.string().nullable(),
  image: z.string().nullable(),
  hosts: z.array(z.string()),
  trigger: z.string(),
  /** a consequence of this deployment's changes that failed and is being retried, else null */
  consequenceError: z.string().nullable().default(null),
});
export type DeploymentChangedEvent = z.infer<typeof deploymentChangedEvent>;

/** `host.online` / `host.offline`: an agent started or stopped heartbeating (silent for 3 intervals). */
export const hostChangedEvent = z.object({
  id: z.string(),
  hostname: z.string(),
  /** host.online of a host's first registration (not a host coming back) */
  first: z.boolean().optional(),
});

/** `agent.updated`: a host's agent registered with another version than it had (a self-update, or a reinstall). */
export const agentUpdatedEvent = z.object({ id: z.string(), hostname: z.string(), from: z.string(), to: z.string() });

/** `config.reloaded`: apps.yaml was read again (SIGHUP); a failed reload keeps the previous config. */
export const configReloadedEvent = z.object({
  ok: z.boolean(),
  apps: z.number().int(),
  /** the reload error (file, line, field), when ok is false */
  error: z.string().nullable(),
});

/** `consequence.failed`: something that follows a change (a commit status, a fan-out) failed; it is retried with backoff. */
export const consequenceFailedEvent = z.object({
  /** the event whose consequence failed */
  eventId: z.number().int(),
  eventType: z.string(),
  consequence: z.string(),
  error: z.string(),
  attempts: z.number().int(),
  deploymentId: z.string().nullable(),
  /** false once it was given up */
  retrying: z.boolean(),
});

/** `app.reconciled`: an agent's reconcile loop saw or did something to an app (exited, restarted, recreated, unhealthy, stopped, removed, start_failed). */
export const appReconciledEvent = z.object({
  host: z.string(),
  kind: z.string(),
  reason: z.string(),
  container: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  /** when the agent did it (events made while the controller was away arrive later) */
  at: z.string(),
});

/** `app.desired`: what a host should run of an app changed (a deploy, rollback or app operation succeeded there). */
export const appDesiredEvent = z.object({
  host: z.string(),
  release: z.string().nullable(),
  replicas: z.number().int(),
  state: z.string(),
  jobId: z.string(),
  kind: z.string(),
});

/**
 * `run.changed`: a run was queued, decided without a job (missed, skipped, failed before a job
 * existed), started or ended; `data` is the run as `GET /v1/runs/{id}` answers it.
 */
export const runChangedEvent = run;

export const eventTypes = {
  "run.changed": runChangedEvent,
  "app.reconciled": appReconciledEvent,
  "app.desired": appDesiredEvent,
  "job.changed": jobChangedEvent,
  "deployment.changed": deploymentChangedEvent,
  "host.online": hostChangedEvent,
  "host.offline": hostChangedEvent,
  "agent.updated": agentUpdatedEvent,
  "config.reloaded": configReloadedEvent,
  "consequence.failed": consequenceFailedEvent,
} as const;
export type EventType = keyof typeof eventTypes;
export type EventData<T extends EventType> = z.infer<(typeof eventTypes)[T]>;
export const eventTypeNames = Object.keys(eventTypes) as EventType[];

/** The `data` of every SSE frame of `GET /v1/events`; the frame's `id` is `id`, its `event` is `type`. */
export const controllerEvent = z.object({
  /** the outbox id: increasing, never reused; resume with `Last-Event-ID` */
  id: z.number().int(),
  type: z.string(),
  /** ISO time of the commit */
  at: z.string(),
  /** the app it concerns, when it concerns one */
  app: z.string().nullable(),
  data: z.record(z.string(), z.unknown()),
});
export type ControllerEvent = z.infer<typeof controllerEvent>;

/** Parses an event's data with its type's schema; null for a type this client does not know. */
export function parseEventData<T extends EventType>(type: T, data: unknown): EventData<T> | null;
export function parseEventData(type: string, data: unknown): unknown;
export function parseEventData(type: string, data: unknown): unknown {
  const schema = (eventTypes as Record<string, z.ZodType>)[type];
  return schema ? schema.parse(data) : null;
}

/** An entry of `types=`: a full type (`job.changed`) or a family (`job`, every `job.*`). */
const typeFilter = z.string().regex(/^[a-z][a-z_]*(\.[a-z][a-z_]*)?$/, "must be an event type like job.changed, or a family like job");

export const eventsQuery = z.object({
  app: name.optional().describe("only events about this app"),
  types: z
    .string()
    .max(500)
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return undefined;
      const list = v.split(",").map((t) => t.trim());
      for (const t of list) {
        if (!typeFilter.safeParse(t).success) {
          ctx.addIssue({ code: "custom", message: `'${t.slice(0, 60)}' is not an event type or family` });
          return z.NEVER;
        }
      }
      return list;
    })
    .describe("comma-separated event types or families (job, deployment, host, config)"),
  after: z
    .string()
    .regex(/^\d{1,15}$/, "must be an event id")
    .optional()
    .describe("resume after this event id (the Last-Event-ID header wins); 0 replays everything retained"),
});
export type EventsQuery = z.infer<typeof eventsQuery>;

/** `types=` entries match a type exactly or by family. */
export function eventTypeMatches(type: string, filters: readonly string[] | undefined): boolean {
  if (!filters) return true;
  return filters.some((f) => f === type || type.startsWith(`${f}.`));
}
