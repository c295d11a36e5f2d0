import { z } from "zod";
import { refProblem } from "./refs";
import { acmeAccount, domainName, proxySpec, routeInfo, routingFields, tlsMode } from "./routing";
import { volumeList } from "./volumes";

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

export const gitRef = z
  .string()
  .superRefine((ref, ctx) => {
    const problem = refProblem(ref);
    if (problem) ctx.addIssue({ code: "custom", message: `ref ${problem}` });
  })
  .describe("A branch, tag or commit sha");

/** Host names and app names: what DNS and Docker container names accept. */
export const name = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, "must start with a letter or digit and use only letters, digits, '_', '.', '-'");

/**
 * A number in a query string (`schema` a z.coerce.number()): an empty value is refused like
 * `?limit=abc`. z.coerce.number() alone reads `?after=` as 0, which skipped the first log line
 * instead of meaning "from the start".
 */
export const queryNumber = <S extends z.ZodType>(schema: S) => z.preprocess((value) => (value === "" ? Number.NaN : value), schema);

export const label = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.=:/-]*$/, "must be letters, digits and _ . = : / -");

/** A job goes to one named host, or to any agent that carries every one of the labels. */
export const target = z.union([
  z.object({ host: name }).strict(),
  z.object({ labels: z.array(label).min(1).max(16) }).strict(),
]).meta({ id: "Target" });
export type Target = z.infer<typeof target>;

export const jobKinds = ["deploy", "build", "run", "stop", "restart", "remove", "start", "scale"] as const;
export const jobKind = z.enum(jobKinds);
export type JobKind = z.infer<typeof jobKind>;

export const jobStatuses = [
  "pending",
  "assigned",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "lost",
  "timed_out",
] as const;
export const jobStatus = z.enum(jobStatuses);
export type JobStatus = z.infer<typeof jobStatus>;
export const finalStatuses: readonly JobStatus[] = ["succeeded", "failed", "cancelled", "lost", "timed_out"];
export const activeStatuses: readonly JobStatus[] = ["pending", "assigned", "running"];
export const isFinal = (s: JobStatus): boolean => finalStatuses.includes(s);

/** A relative path inside a build context: no absolute paths, no `..`, no NUL. */
export const relativePath = z
  .string()
  .min(1)
  .max(1024)
  .refine(
    (p) =>
      !p.startsWith("/") &&
      !p.startsWith("\\") &&
      !/^[a-zA-Z]:/.test(p) &&
      !p.includes("\0") &&
      !p.split(/[\\/]/).some((part) => part === ".."),
    "must be a relative path inside the tree (no leading '/', no '..')",
  );

export const source = z.discriminatedUnion("type", [
  z.object({ type: z.literal("git"), url: z.string().min(1).max(2048), ref: gitRef }).strict(),
  z.object({ type: z.literal("files"), files: z.record(relativePath, z.string()) }).strict(),
  z
    .object({
      type: z.literal("archive"),
      format: z.enum(["tar", "tar.gz", "zip"]),
      /** base64 of the archive bytes */
      data: z.string().min(1),
    })
    .strict(),
  z.object({ type: z.literal("image"), image: z.string().min(1).max(512) }).strict(),
]).meta({ id: "Source" });
export type Source = z.infer<typeof source>;

export const buildSpec = z
  .object({
    dockerfile: relativePath.default("Dockerfile"),
    context: z
      .string()
      .default(".")
      .refine((p) => p === "." || relativePath.safeParse(p).success, "must be '.' or a relative path"),
    args: z.record(z.string(), z.string()).default({}),
    target: z.string().max(128).optional(),
  })
  .strict().meta({ id: "BuildSpec" });
export type BuildSpec = z.infer<typeof buildSpec>;

export const healthcheck = z
  .object({
    path: z.string().startsWith("/").default("/"),
    port: z.number().int().min(1).max(65535),
    timeout_seconds: z.number().int().min(1).max(3600).default(30),
    interval_seconds: z.number().min(0.1).max(60).default(1),
    /** while running: how often the agent checks (default 10; 0: never) */
    period_seconds: z.number().min(0).max(3600).optional(),
    /** while running: how long one check may take (default 2) */
    probe_timeout_seconds: z.number().min(0.1).max(60).optional(),
    /** while running: consecutive failed checks before the container is restarted (default 3) */
    failure_threshold: z.number().int().min(1).max(100).optional(),
  })
  .strict().meta({ id: "Healthcheck" });

export const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid environment variable name");

export const runSpec = z
  .object({
    ports: z.array(z.string().regex(/^(\d{1,3}(\.\d{1,3}){3}:)?\d{1,5}:\d{1,5}(\/(tcp|udp))?$/, "must look like HOST:CONTAINER")).default([]),
    env: z.record(envName, z.string()).default({}),
    secrets: z.array(envName).default([]),
    healthcheck: healthcheck.optional(),
    restart: z.enum(["no", "always", "unless-stopped", "on-failure"]).default("unless-stopped"),
    memory: z
      .string()
      .regex(/^\d+[kmg]?$/i, "must be a size like 512m")
      .optional(),
    cpus: z.number().positive().max(1024).optional(),
    command: z.array(z.string()).optional(),
    /** run a tiny init as PID 1 (HostConfig.Init), so apps that ignore SIGTERM still stop promptly */
    init: z.boolean().optional(),
    /** `run` jobs: a file in the container copied out into the result */
    result_file: z.string().startsWith("/").optional(),
    /** named volumes (`data:/var/lib/app`) and bind mounts (`/srv/app/uploads:/uploads:ro`), see volumes.ts */
    volumes: volumeList.optional(),
    /**
     * Stop the old container before the new one starts (no candidate, no overlap), for data that
     * cannot be opened by two containers at once. Costs downtime: stop + start + health check.
     */
    stop_first: z.boolean().optional(),
  })
  .strict().meta({ id: "RunSpec" });
export type RunSpec = z.infer<typeof runSpec>;

export const registryCredentials = z
  .object({ url: z.string().min(1), username: z.string(), password: z.string() })
  .strict();
export type RegistryCredentials = z.infer<typeof registryCredentials>;

/**
 * What an agent needs to run a job. Stored without credentials; the controller adds
 * `registry` and secret `env` values only to the copy it hands to the claiming agent.
 */
export const jobSpec = z
  .object({
    kind: jobKind,
    app: name,
    source: source.optional(),
    build: buildSpec.optional(),
    /** repository to tag and push to, e.g. 127.0.0.1:5000/web (no tag) */
    image: z.string().min(1).max(512).optional(),
    /** the version tag; defaults to the git sha or the job id */
    version: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/).optional(),
    run: runSpec.optional(),
    release: z.string().max(128).optional(),
    /** after a successful deploy, keep this many images of the app on the host and prune older ones */
    keepImages: z.number().int().min(1).max(100).optional(),
    /** images never pruned (the rollback target) */
    protectImages: z.array(z.string().max(512)).max(20).optional(),
    /** routed deploys: domains, proxy, replicas, tls (see routing.ts) */
    ...routingFields,
    /** `remove` jobs: also delete the app's named volumes on the host (their data is gone) */
    purgeVolumes: z.boolean().optional(),
  })
  .strict().meta({ id: "JobSpec" });
export type JobSpec = z.infer<typeof jobSpec>;

export const agentJobSpec = jobSpec.extend({
  registry: registryCredentials.optional(),
  secretEnv: z.record(envName, z.string()).optional(),
});
export type AgentJobSpec = z.infer<typeof agentJobSpec>;

// ---------------------------------------------------------------------------------------------
// Jobs (REST)
// ---------------------------------------------------------------------------------------------

export const job = z.object({
  id: z.string(),
  kind: jobKind,
  app: z.string(),
  status: jobStatus,
  target,
  spec: jobSpec,
  deploymentId: z.string().nullable(),
  agentId: z.string().nullable(),
  attempts: z.number().int(),
  maxAttempts: z.number().int(),
  cancelRequested: z.boolean(),
  timeoutSeconds: z.number().int(),
  result: z.unknown().nullable(),
  error: z.string().nullable(),
  logLines: z.number().int(),
  createdAt: z.string(),
  assignedAt: z.string().nullable(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
}).meta({ id: "Job" });
export type Job = z.infer<typeof job>;

/** The seeds' short form: deploy the app mapped to `repo` at `ref` on `host`. */
export const submitRepoJob = z
  .object({
    repo: z.string().min(1).max(512),
    ref: gitRef,
    host: name,
    timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
  })
  .strict();

export const submitSpecJob = z
  .object({
    spec: jobSpec,
    target,
    timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
    maxAttempts: z.number().int().min(1).max(10).optional(),
  })
  .strict();

export const submitJob = z.union([submitRepoJob, submitSpecJob]);
export type SubmitJob = z.infer<typeof submitJob>;

/** A page cursor is the id of the last item of the previous page: anything else is a 400, never an empty page. */
export const pageCursor = (prefix: string) =>
  z.string().regex(new RegExp(`^${prefix}_[0-9A-HJKMNP-TV-Z]{26}$`), `must be the nextCursor of a previous page (a ${prefix}_ id)`);

export const listJobsQuery = z.object({
  status: jobStatus.optional(),
  host: name.optional(),
  app: name.optional(),
  cursor: pageCursor("job").optional(),
  limit: queryNumber(z.coerce.number().int().min(1).max(200).default(50)),
});

/** GET /v1/volumes (here, not in volumes.ts: that file is imported by this one and cannot use `name`) */
export const listVolumesQuery = z.object({ app: name.optional(), host: name.optional() });

export const jobPage = z.object({ jobs: z.array(job), nextCursor: z.string().nullable() });

// ---------------------------------------------------------------------------------------------
// Agents (wire protocol)
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Agent wire protocol: tolerant in both directions. Bodies an agent sends drop fields they do not
// know (strip, never strict) and degrade unknown enum values to a safe one, so an agent one
// version ahead keeps working with this controller, and the agent reads answers without checking
// for extra fields. User-facing bodies stay strict.
// ---------------------------------------------------------------------------------------------

/** Carried in register and heartbeat bodies and answers; bumped on an incompatible change. */
export const PROTOCOL_VERSION = 1;

/**
 * What a controller can do beyond protocol v1, named in the answers to register and heartbeat.
 * An agent relies on a feature only once a controller has named it; an older controller names
 * none, and ignores the fields that use them.
 */
export const FEATURES = {
  /** a heartbeat may carry `finished`: the final status of the job it held, before it asks for the next one */
  finishedInHeartbeat: "heartbeat.finished",
} as const;
/** Unknown names from a newer controller are kept: the agent looks for the ones it knows. */
export const features = z.array(z.string().max(64)).max(64);

/** How deep and how large an agent-provided free-form object may be (a 5,000-deep one is a 400, never a 500). */
export const MAX_JSON_DEPTH = 16;
function jsonDepth(value: unknown, limit: number): number {
  const stack: [unknown, number][] = [[value, 1]];
  let deepest = 0;
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (d > deepest) deepest = d;
    if (deepest > limit) return deepest;
    if (v && typeof v === "object") for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return deepest;
}
export const boundedObject = z
  .record(z.string().max(256), z.unknown())
  .refine((v) => jsonDepth(v, MAX_JSON_DEPTH) <= MAX_JSON_DEPTH, `must be nested at most ${MAX_JSON_DEPTH} levels deep`);

/** An enum that reads an unknown value (from a newer agent) as `fallback` instead of refusing the body. */
const tolerantEnum = <T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) =>
  z.string().max(64).transform((v): T[number] => ((values as readonly string[]).includes(v) ? (v as T[number]) : fallback));

export const capabilities = z
  .object({
    engineVersion: z.string().max(64).optional(),
    arch: z.string().max(32).optional(),
    os: z.string().max(64).optional(),
    cpus: z.number().int().min(0).optional(),
    memoryBytes: z.number().int().min(0).optional(),
    /**
     * The agent honours `run.volumes`, `run.stop_first` and `purgeVolumes`. Absent (an agent from
     * before volumes, which would ignore them and run the app without its data): the controller
     * keeps such jobs queued for an agent that has it.
     */
    volumes: z.boolean().optional(),
    /** false: the agent opted out of updates offered in heartbeat answers (DEPLOYBOT_AUTO_UPDATE=false) */
    autoUpdate: z.boolean().optional(),
    /**
     * false: the agent ships no app output (DEPLOYBOT_SHIP_APP_LOGS=false), and `deploybot logs
     * APP` says so. Absent: an agent from before this field (which ships unless it predates
     * app-log shipping, see the controller's AppLogService.silentHosts).
     */
    appLogs: z.boolean().optional(),
  })
  .strip();

export const registerRequest = z
  .object({
    hostname: name,
    labels: z.array(label).max(32).default([]),
    version: z.string().max(64).default("unknown"),
    capabilities: capabilities.default({}),
    heldJobIds: z.array(z.string().max(64)).max(16).default([]),
    protocolVersion: z.number().int().min(1).optional(),
  })
  .strip();
export type RegisterRequest = z.infer<typeof registerRequest>;

/** A container the agent manages (labelled `deploybot.managed`), as reported in heartbeats. */
export const managedContainer = z
  .object({
    id: z.string().max(128),
    name: z.string().max(256).optional(),
    app: z.string().max(128).optional(),
    job: z.string().max(64).optional(),
    release: z.string().max(128).optional(),
    image: z.string().max(512).optional(),
    state: z.string().max(32).optional(),
  })
  .strip()
  .meta({ id: "ManagedContainer" });
export type ManagedContainer = z.infer<typeof managedContainer>;

export const agent = z.object({
  id: z.string(),
  hostname: z.string(),
  labels: z.array(z.string()),
  version: z.string(),
  capabilities: z.record(z.string(), z.unknown()),
  state: z.enum(["idle", "busy", "draining"]),
  online: z.boolean(),
  lastHeartbeatAt: z.string().nullable(),
  registeredAt: z.string(),
  containers: z.array(managedContainer),
  /** per app, what the agent's reconcile loop reports: restarts, last exit and why, healthy count (AppStatus) */
  appStatus: z.array(z.unknown()).optional(),
  /** the host's named volumes and their sizes, as the agent last measured them (every few minutes) */
  volumes: z.array(z.unknown()).optional(),
  currentJobId: z.string().nullable(),
}).meta({ id: "Agent" });
export type Agent = z.infer<typeof agent>;

/** `POST /v1/agents/join-tokens` (admin): a join token for one host name or any new one. */
export const createJoinTokenRequest = z
  .object({
    /** the one host name it registers (and may take over); absent: any host name not registered yet */
    host: name.optional(),
    singleUse: z.boolean().default(true),
    ttlSeconds: z.number().int().min(60).max(30 * 86_400).default(86_400),
  })
  .strict();

export const registerResponse = z.object({
  agent,
  token: z.string(),
  heartbeatIntervalSeconds: z.number(),
  protocolVersion: z.number().int().optional(),
  /** what the controller can do beyond protocol v1 (`FEATURES`); absent from older controllers */
  features: features.optional(),
});


// ---------------------------------------------------------------------------------------------
// Desired state (controller -> agent) and what the agent's reconcile loop did (agent -> controller)
// ---------------------------------------------------------------------------------------------

export const desiredRunStates = ["running", "stopped", "removed"] as const;
export const desiredRunState = z.enum(desiredRunStates);
export type DesiredRunState = z.infer<typeof desiredRunState>;

/** One app on one host as the controller wants it. Every field but `app` is optional on the wire. */
export const desiredApp = z.object({
  app: name,
  release: z.string().max(128).nullable().default(null),
  /** what the release's containers run (by digest once pushed) */
  image: z.string().max(512).nullable().default(null),
  run: runSpec.nullable().default(null),
  replicas: z.number().int().min(0).max(50).default(1),
  state: desiredRunState.default("running"),
  /** apps with domains: how the host proxy routes them (from the deploy); null: port mode or no traffic */
  route: z
    .object({ domains: z.array(domainName).max(100), proxy: proxySpec, tls: tlsMode, acme: acmeAccount.optional() })
    .nullable()
    .default(null),
  /** the job that set this entry: an agent keeps its own newer entry until the controller has caught up with it */
  jobId: z.string().max(64).nullable().default(null),
  /** secret values of run.secrets, only on the copy handed to the agent */
  secretEnv: z.record(envName, z.string()).optional(),
});
export type DesiredApp = z.infer<typeof desiredApp>;

/** `desired` in a heartbeat answer: every app of the host, sent only when `version` differs from the agent's. */
export const desiredState = z.object({
  version: z.number().int().min(0),
  apps: z.array(desiredApp).max(1000),
});
export type DesiredState = z.infer<typeof desiredState>;

export const appEventKinds = ["exited", "restarted", "recreated", "unhealthy", "stopped", "removed", "start_failed"] as const;

/** One thing the agent's reconcile loop saw or did, with its reason; numbered per agent so a resend is a no-op. */
export const appEvent = z.object({
  seq: z.number().int().min(1),
  at: z.string().max(40),
  app: z.string().max(128),
  kind: z.string().max(32),
  reason: z.string().max(2000),
  container: z.string().max(128).optional(),
  exitCode: z.number().int().optional(),
});
export type AppEvent = z.infer<typeof appEvent>;

/** What the agent knows of one app's containers beyond `docker ps`: restarts it made, last exit, backoff. */
export const appStatus = z.object({
  app: z.string().max(128),
  restarts: z.number().int().min(0).default(0),
  lastExitCode: z.number().int().nullable().default(null),
  lastReason: z.string().max(2000).nullable().default(null),
  /** when the last exit, restart or health change happened */
  since: z.string().max(40).nullable().default(null),
  /** set while a restart waits out its backoff */
  nextRestartAt: z.string().max(40).nullable().default(null),
  healthy: z.number().int().min(0).default(0),
  running: z.number().int().min(0).default(0),
});
export type AppStatus = z.infer<typeof appStatus>;

export const reportStatusRequest = z
  .object({
    leaseId: z.string().min(1).max(64),
    // a final status cannot be guessed: an unknown one stays a 400
    status: z.enum(["running", "succeeded", "failed", "cancelled"]),
    result: boundedObject.optional(),
    error: z.string().max(16_384).optional(),
    /** how many log lines the agent produced for the job in all */
    logLines: z.number().int().min(0).optional(),
  })
  .strip();
export type ReportStatusRequest = z.infer<typeof reportStatusRequest>;

/** A final status report inside a heartbeat: the status route's body, for one job, final statuses only. */
export const finishedReport = reportStatusRequest
  .extend({ jobId: z.string().min(1).max(64), status: z.enum(["succeeded", "failed", "cancelled"]) })
  .strip();
export type FinishedReport = z.infer<typeof finishedReport>;

/**
 * What became of a heartbeat's `finished`: accepted (the job's status now), or refused with the
 * error the status route would have answered (`httpStatus` 4xx, e.g. 409 stale_lease or job_finished).
 */
export const finishedAnswer = z.object({
  jobId: z.string(),
  accepted: z.boolean(),
  status: jobStatus.optional(),
  error: z.object({ httpStatus: z.number().int(), code: z.string(), message: z.string() }).optional(),
});
export type FinishedAnswer = z.infer<typeof finishedAnswer>;


export const heartbeatRequest = z
  .object({
    // an unknown state from a newer agent reads as busy: it is handed no job, which is safe
    status: tolerantEnum(["idle", "busy", "draining"] as const, "busy").default("idle"),
    heldJobIds: z.array(z.string().max(64)).max(16).default([]),
    containers: z.array(managedContainer).max(1000).default([]),
    /** the host proxy's routes (agents with a proxy) */
    routes: z.array(routeInfo).max(1000).optional(),
    protocolVersion: z.number().int().min(1).optional(),
    /** the version of the desired state the agent holds (0: none); the answer carries `desired` only when it differs */
    desiredVersion: z.number().int().min(0).optional(),
    /** reconcile actions not yet acknowledged, oldest first */
    appEvents: z.array(appEvent).max(500).optional(),
    appStatus: z.array(appStatus).max(1000).optional(),
    /**
     * the host's named volumes with their sizes (`hostVolume`; absent: unchanged). Entries are
     * read one by one when listed, so one a newer agent shapes differently never costs a heartbeat.
     */
    volumes: z.array(boundedObject).max(1000).optional(),
    /**
     * The final status of a job this agent holds (`heldJobIds` and `status` still describe the
     * agent before it): the same report as `POST /v1/jobs/{id}/status`, fenced by the same lease,
     * so one request per job finishes it and asks for the next. Only to a controller that named
     * `FEATURES.finishedInHeartbeat`; the answer's `finished` says what became of it (an older
     * controller ignores the field and answers none: the agent then reports on the status route).
     */
    finished: finishedReport.optional(),
  })
  .strip();
export type HeartbeatRequest = z.infer<typeof heartbeatRequest>;

export const heartbeatQuery = z.object({ wait: queryNumber(z.coerce.number().min(0).max(30).default(0)) });

/** A job as handed to the agent that claimed it: the spec with credentials, and the lease. */
export const claimedJob = z.object({
  id: z.string(),
  kind: jobKind,
  app: z.string(),
  leaseId: z.string(),
  spec: agentJobSpec,
  timeoutSeconds: z.number().int(),
  attempt: z.number().int(),
  logOffset: z.number().int(),
}).meta({ id: "ClaimedJob" });
export type ClaimedJob = z.infer<typeof claimedJob>;

/** A newer agent for this host: download `path` with the agent token, check `sha256`, switch between jobs. */
export const agentUpdateOffer = z.object({
  version: z.string().regex(/^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$/),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  path: z.string().startsWith("/v1/"),
});
export type AgentUpdateOffer = z.infer<typeof agentUpdateOffer>;

export const heartbeatResponse = z.object({
  acknowledged: z.literal(true),
  job: claimedJob.nullable(),
  cancelJobIds: z.array(z.string()),
  heartbeatIntervalSeconds: z.number(),
  protocolVersion: z.number().int().optional(),
  /** absent or null: no update for this agent now (older controllers never send it) */
  update: agentUpdateOffer.nullable().optional(),
  /** present only when the agent's `desiredVersion` is not the controller's */
  desired: desiredState.optional(),
  /** the highest `appEvents` seq stored; the agent drops those up to it */
  appEventsAcked: z.number().int().optional(),
  /** what the controller can do beyond protocol v1 (`FEATURES`); absent from older controllers */
  features: features.optional(),
  /** the answer to the request's `finished`, present exactly when the controller read it */
  finished: finishedAnswer.optional(),
});
export type HeartbeatResponse = z.infer<typeof heartbeatResponse>;

export const logStream = z.enum(["stdout", "stderr", "system"]);
export const logEntry = z
  .object({
    ts: z.string().max(40),
    stream: tolerantEnum(["stdout", "stderr", "system"] as const, "stdout").default("stdout"),
    line: z.string().max(65_536),
  })
  .strip()
  .meta({ id: "LogEntry" });
export type LogEntry = z.infer<typeof logEntry>;

export const appendLogsRequest = z
  .object({
    leaseId: z.string().min(1).max(64),
    offset: z.number().int().min(0),
    entries: z.array(logEntry).max(5000),
  })
  .strip();
export type AppendLogsRequest = z.infer<typeof appendLogsRequest>;

export const appendLogsResponse = z.object({
  offset: z.number().int(),
  truncated: z.boolean(),
  cancelRequested: z.boolean(),
});


export const jobLogsQuery = z.object({
  after: queryNumber(z.coerce.number().int().min(-1).default(-1)),
  limit: queryNumber(z.coerce.number().int().min(1).max(10_000).default(1000)),
});

export const storedLogEntry = z.object({
  seq: z.number().int(),
  ts: z.string(),
  stream: z.string(),
  line: z.string(),
}).meta({ id: "StoredLogEntry" });
/** `GET /v1/logs/stream`: one job (`job`), or every job of an app on a host (`host` + `app`). */
export const logStreamQuery = z
  .object({
    job: z.string().min(1).max(64).optional().describe("follow one job's log"),
    host: name.optional().describe("with app: follow every job of the app on this host"),
    app: name.optional(),
    after: z.string().max(2048).optional().describe("resume after this event id (the Last-Event-ID header wins)"),
  })
  .refine((q) => (q.job ? !q.host && !q.app : Boolean(q.host && q.app)), "give either 'job', or both 'host' and 'app'");

/** Data of the stream's events: `log` (a line; `jobId` on host+app streams), `end` / `job` (a job's log is complete). */
export const logStreamLine = storedLogEntry.extend({ jobId: z.string().optional() });
export const logStreamEnd = z.object({ jobId: z.string(), status: z.string() });

export const jobLogsResponse = z.object({
  jobId: z.string(),
  entries: z.array(storedLogEntry),
  next: z.number().int(),
  truncated: z.boolean(),
  finished: z.boolean(),
});

// ---------------------------------------------------------------------------------------------
// API tokens
// ---------------------------------------------------------------------------------------------

/** `metrics` reads GET /metrics and nothing else (a token for Prometheus) */
export const tokenScope = z.enum(["admin", "deploy", "read", "metrics"]);
export type TokenScope = z.infer<typeof tokenScope>;
export const createTokenRequest = z
  .object({
    name: z.string().min(1).max(100),
    scope: tokenScope,
    /** limit the token to these apps (deploy and read scopes) */
    apps: z.array(name).min(1).max(100).optional(),
  })
  .strict();
export const apiToken = z.object({
  id: z.string(),
  name: z.string(),
  scope: tokenScope,
  apps: z.array(z.string()).nullable(),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
}).meta({ id: "ApiToken" });

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

export const errorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
}).meta({ id: "Error" });
export type ErrorBody = z.infer<typeof errorBody>;

/** `GET /v1/tokens/self`: the token making the request, so a client can show only what it may do. */
export const tokenSelf = z.object({
  id: z.string(),
  scope: tokenScope,
  /** the apps the token is limited to; null: every app */
  apps: z.array(z.string()).nullable(),
});
export type TokenSelf = z.infer<typeof tokenSelf>;
