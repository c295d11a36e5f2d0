import type { ManagedContainer } from "@deploybot/protocol";
import { sql } from "drizzle-orm";
import { blob, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/** Milliseconds since the epoch; every timestamp in the database is one of these. */
const ms = (column: string) => integer(column, { mode: "number" });
const createdAt = () => ms("created_at").notNull();
const json = <T>(column: string) => text(column, { mode: "json" }).$type<T>();

export const agents = sqliteTable("agents", {
  id: text("id").primaryKey(),
  hostname: text("hostname").notNull().unique(),
  labels: json<string[]>("labels").notNull().default(sql`'[]'`),
  version: text("version").notNull(),
  capabilities: json<Record<string, unknown>>("capabilities").notNull().default(sql`'{}'`),
  /** what the agent last said it was doing: idle | busy | draining */
  state: text("state").notNull().default("idle"),
  /** as last reported by the agent's heartbeat */
  containers: json<ManagedContainer[]>("containers").notNull().default(sql`'[]'`),
  /** the host proxy's routes as the agent last reported them (app, domains, upstreams and their health) */
  routes: json<unknown[]>("routes").notNull().default(sql`'[]'`),
  /** bumped on every registration and revocation; a JWT carrying an older one is refused */
  tokenVersion: integer("token_version").notNull().default(1),
  revoked: integer("revoked", { mode: "boolean" }).notNull().default(false),
  lastHeartbeatAt: ms("last_heartbeat_at"),
  /** what the last host.online / host.offline event said; moved only by those transitions */
  online: integer("online", { mode: "boolean" }).notNull().default(false),
  registeredAt: createdAt(),
  /** what the agent's reconcile loop reports per app: restarts, last exit, backoff, healthy count */
  appStatus: json<unknown[]>("app_status").notNull().default(sql`'[]'`),
  /** container output lines received from the agent (its offset), stored or dropped */
  appLogOffset: integer("app_log_offset").notNull().default(0),
  /** the host's named volumes with their sizes as the agent last measured them (agents that report them) */
  volumes: json<unknown[]>("volumes").notNull().default(sql`'[]'`),
});

/**
 * The agent update rollout's slots (DEPLOYBOT_AGENT_UPDATE_CONCURRENCY): one row per agent told to
 * update that has not come back on that version yet. In the database, so every controller counts
 * the same slots; the slot number is the key, so two controllers taking the last free slot at
 * once end with one taker (the other's insert conflicts and it tries the next number).
 */
export const agentUpdateSlots = sqliteTable("agent_update_slots", {
  slot: integer("slot").primaryKey(),
  agentId: text("agent_id").notNull().unique(),
  version: text("version").notNull(),
  offeredAt: ms("offered_at").notNull(),
});

export const jobs = sqliteTable(
  "jobs",
  {
    /** time-ordered (ULID), so ordering by id is ordering by creation */
    id: text("id").primaryKey(),
    deploymentId: text("deployment_id"),
    kind: text("kind").notNull(),
    app: text("app").notNull(),
    targetHost: text("target_host"),
    /** sorted and de-duplicated, so the JSON text is a key for one label set */
    targetLabels: json<string[]>("target_labels"),
    spec: json<Record<string, unknown>>("spec").notNull(),
    status: text("status").notNull().default("pending"),
    agentId: text("agent_id").references(() => agents.id),
    leaseId: text("lease_id"),
    leaseExpiresAt: ms("lease_expires_at"),
    attempts: integer("attempts").notNull().default(0),
    maxAttempts: integer("max_attempts").notNull(),
    cancelRequested: integer("cancel_requested", { mode: "boolean" }).notNull().default(false),
    /** repo|ref|target for the seeds' short form: one active job per triple */
    dedupeKey: text("dedupe_key"),
    result: json<Record<string, unknown>>("result"),
    error: text("error"),
    timeoutSeconds: integer("timeout_seconds").notNull(),
    queueDeadline: ms("queue_deadline").notNull(),
    /** lines the agent has sent (its offset), stored or dropped past the cap */
    logOffset: integer("log_offset").notNull().default(0),
    logBytes: integer("log_bytes").notNull().default(0),
    logTruncated: integer("log_truncated", { mode: "boolean" }).notNull().default(false),
    /** how many lines the agent says the job produced, from its final report: the log is complete at this offset */
    expectedLogLines: integer("expected_log_lines"),
    createdAt: createdAt(),
    assignedAt: ms("assigned_at"),
    startedAt: ms("started_at"),
    finishedAt: ms("finished_at"),
  },
  (t) => [
    // Claims probe pending jobs by host and by exact label set, oldest first. Partial indexes:
    // only the rows a query looks for live in them, so they stay small, and a transition writes
    // an index page only when the row enters or leaves it. Every page a transition writes is
    // written again by its commit: dropping NULL targets, non-held rows and NULL dedupe keys from
    // these indexes took a claim+finish cycle from 9 pages to 6 (see bench/jobs.bench.ts).
    // Queries spell the statuses as literals, or SQLite cannot use a partial index.
    // queue_deadline trails the claim indexes so the reaper's queue-timeout look reads them alone
    // (jobState.ts, queue deadlines): a claim removes the entry either way.
    index("jobs_claim_host_idx").on(t.targetHost, t.id, t.queueDeadline).where(sql`status = 'pending' AND target_host IS NOT NULL`),
    index("jobs_claim_labels_idx").on(t.targetLabels, t.id, t.queueDeadline).where(sql`status = 'pending' AND target_labels IS NOT NULL`),
    // A pending job without a target no claim can take: only its queue deadline ends it. No job
    // is queued that way (jobs.ts sets one target), so this index stays empty and costs nothing.
    index("jobs_untargeted_pending_idx").on(t.queueDeadline).where(sql`status = 'pending' AND target_host IS NULL AND target_labels IS NULL`),
    index("jobs_held_idx").on(t.agentId).where(sql`status IN ('assigned', 'running')`),
    index("jobs_app_idx").on(t.app, t.id),
    index("jobs_active_dedupe_idx").on(t.dedupeKey).where(sql`dedupe_key IS NOT NULL AND status IN ('pending', 'assigned', 'running')`),
  ],
);

export const jobLogs = sqliteTable(
  "job_logs",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    seq: integer("seq").notNull(),
    ts: text("ts").notNull(),
    stream: text("stream").notNull(),
    line: text("line").notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.seq] })],
);

export const apiTokens = sqliteTable("api_tokens", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  scope: text("scope").notNull(),
  /** sha256 of the token; the token itself is shown once and never stored */
  hash: text("hash").notNull().unique(),
  /** the apps this token may act on and read; null: every app */
  apps: json<string[]>("apps"),
  createdAt: createdAt(),
  lastUsedAt: ms("last_used_at"),
  revokedAt: ms("revoked_at"),
});

/**
 * Join tokens an admin creates: for one host name (which may then replace that host's identity)
 * or any new one, single-use or until they expire. The shared DEPLOYBOT_JOIN_TOKEN stays valid
 * for new host names only.
 */
export const joinTokens = sqliteTable("join_tokens", {
  id: text("id").primaryKey(),
  /** sha256 of the token */
  hash: text("hash").notNull().unique(),
  /** the one host name it registers; null: any host name not registered yet */
  hostname: text("hostname"),
  singleUse: integer("single_use", { mode: "boolean" }).notNull().default(true),
  createdBy: text("created_by"),
  createdAt: createdAt(),
  expiresAt: ms("expires_at").notNull(),
  usedAt: ms("used_at"),
  usedBy: text("used_by"),
  revokedAt: ms("revoked_at"),
});

export const idempotencyKeys = sqliteTable(
  "idempotency_keys",
  {
    key: text("key").notNull(),
    principal: text("principal").notNull(),
    route: text("route").notNull(),
    requestHash: text("request_hash").notNull(),
    status: integer("status").notNull(),
    body: text("body").notNull(),
    createdAt: createdAt(),
    /**
     * While a request that took its key before its handler runs (status 0, no body), it renews
     * this every few seconds; a key not renewed for IN_FLIGHT_LEASE_MS belongs to a process that
     * died, and a retry takes it over (services/idempotency.ts). Null in rows from before it.
     */
    aliveAt: ms("alive_at"),
  },
  (t) => [uniqueIndex("idempotency_keys_key_idx").on(t.principal, t.key)],
);

/** One request to put an app at a version on its hosts; fans out to one job per host. */
export const deployments = sqliteTable(
  "deployments",
  {
    id: text("id").primaryKey(),
    app: text("app").notNull(),
    ref: text("ref"),
    sha: text("sha"),
    image: text("image"),
    hosts: json<string[]>("hosts").notNull(),
    /** api | webhook | rollback */
    trigger: text("trigger").notNull(),
    /** who or what asked: a token id, a webhook delivery id, a release id */
    triggeredBy: text("triggered_by"),
    releaseId: text("release_id"),
    /** the build job when the image is built once and pulled by every host */
    buildJobId: text("build_job_id"),
    /** pending | building | deploying | succeeded | failed | superseded | cancelled */
    status: text("status").notNull(),
    error: text("error"),
    /** the last failure of a consequence of this deployment's changes, while it is retried */
    consequenceError: text("consequence_error"),
    createdAt: createdAt(),
    finishedAt: ms("finished_at"),
  },
  (t) => [index("deployments_app_idx").on(t.app, t.id)],
);

/** An immutable image of an app plus the config it runs with; rollback re-runs one. */
export const releases = sqliteTable(
  "releases",
  {
    id: text("id").primaryKey(),
    app: text("app").notNull(),
    version: text("version").notNull(),
    sha: text("sha"),
    imageTag: text("image_tag"),
    digest: text("digest"),
    /** the run spec it was deployed with; secret values are never here, only their names */
    config: json<Record<string, unknown>>("config").notNull(),
    /** pending | building | success | failed */
    status: text("status").notNull(),
    /** the job whose log is the build log */
    buildJobId: text("build_job_id"),
    trigger: text("trigger").notNull(),
    triggeredBy: text("triggered_by"),
    createdAt: createdAt(),
    builtAt: ms("built_at"),
  },
  (t) => [index("releases_app_idx").on(t.app, t.id)],
);

/** Every GitHub delivery and what was decided; the id makes redeliveries no-ops. */
export const webhookDeliveries = sqliteTable("webhook_deliveries", {
  deliveryId: text("delivery_id").primaryKey(),
  event: text("event").notNull(),
  repo: text("repo"),
  ref: text("ref"),
  sha: text("sha"),
  /** deployed | ignored | pong | rejected */
  outcome: text("outcome").notNull(),
  reason: text("reason").notNull(),
  deploymentId: text("deployment_id"),
  receivedAt: ms("received_at").notNull(),
});

/**
 * One deploy per pushed commit: a push of (app, branch, sha) is deployed once whatever its
 * delivery id, so a signed body replayed under a new X-GitHub-Delivery deploys nothing.
 */
export const webhookPushes = sqliteTable(
  "webhook_pushes",
  {
    app: text("app").notNull(),
    branch: text("branch").notNull(),
    sha: text("sha").notNull(),
    deliveryId: text("delivery_id").notNull(),
    deploymentId: text("deployment_id"),
    receivedAt: ms("received_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.app, t.branch, t.sha] })],
);

/** App secrets, AES-256-GCM encrypted; values leave only inside the job that needs them. */
export const secrets = sqliteTable(
  "secrets",
  {
    app: text("app").notNull(),
    key: text("key").notNull(),
    /** base64 of iv (12) | tag (16) | ciphertext */
    value: text("value").notNull(),
    updatedAt: ms("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.app, t.key] })],
);

/** The scheduler's state per schedule of apps.yaml (the definitions stay in the file). */
export const schedules = sqliteTable("schedules", {
  /** app/name */
  key: text("key").primaryKey(),
  app: text("app").notNull(),
  name: text("name").notNull(),
  paused: integer("paused", { mode: "boolean" }).notNull().default(false),
  /** the newest decided tick (run, missed or skipped), or when the schedule was first seen or resumed */
  cursorAt: ms("cursor_at").notNull(),
  updatedAt: ms("updated_at").notNull(),
});

/**
 * One row per run and per decided tick. The unique (app, schedule, tick_at) key is what makes a
 * tick run once across restarts and controllers: it is taken in the transaction that queues the
 * job. One-off and "trigger now" runs have no tick (NULLs never collide).
 */
export const runs = sqliteTable(
  "runs",
  {
    id: text("id").primaryKey(),
    app: text("app").notNull(),
    schedule: text("schedule"),
    tickAt: ms("tick_at"),
    /** schedule | manual | one-off */
    trigger: text("trigger").notNull(),
    /** queued (a job exists; its status is the run's) | missed | skipped | failed (no job could be made) */
    state: text("state").notNull(),
    reason: text("reason"),
    command: json<string[]>("command").notNull(),
    jobId: text("job_id").references(() => jobs.id),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex("runs_tick_idx").on(t.app, t.schedule, t.tickAt),
    index("runs_history_idx").on(t.app, t.schedule, t.id),
    index("runs_job_idx").on(t.jobId),
  ],
);

/** A run's result file, uploaded by the agent under the job's lease (capped at RESULT_FILE_LIMIT). */
export const runResults = sqliteTable("run_results", {
  jobId: text("job_id")
    .primaryKey()
    .references(() => jobs.id, { onDelete: "cascade" }),
  path: text("path").notNull(),
  content: blob("content", { mode: "buffer" }).notNull(),
  /** the file's size in the container; content holds the first bytes of it */
  size: integer("size").notNull(),
  truncated: integer("truncated", { mode: "boolean" }).notNull(),
  storedAt: ms("stored_at").notNull(),
});

/**
 * The images catalog: an app's image built (and pushed) without deploying it. One row per app
 * and tag, enforced by the unique key, so two requests for the same tag meet on one image; a
 * rebuild reuses the row with a new build job.
 */
export const images = sqliteTable(
  "images",
  {
    id: text("id").primaryKey(),
    app: text("app").notNull(),
    tag: text("tag").notNull(),
    /** the git ref that was built: the tag itself, or the branch/sha asked for */
    ref: text("ref").notNull(),
    sha: text("sha"),
    /** repository without a tag, e.g. 127.0.0.1:5000/web */
    repository: text("repository").notNull(),
    digest: text("digest"),
    /** pending | building | success | failed */
    status: text("status").notNull(),
    error: text("error"),
    buildJobId: text("build_job_id"),
    builds: integer("builds").notNull().default(1),
    createdAt: createdAt(),
    startedAt: ms("started_at"),
    finishedAt: ms("finished_at"),
  },
  (t) => [uniqueIndex("images_app_tag_idx").on(t.app, t.tag), index("images_build_job_idx").on(t.buildJobId)],
);

/**
 * Every change, in commit order: appended in the same synchronous transaction as the change
 * itself, applied by the drainer, streamed by `GET /v1/events`. The id is the rowid without
 * AUTOINCREMENT (AUTOINCREMENT's sqlite_sequence write cost 25% of claim+finish cycles, measured);
 * ids stay unique and increasing because pruning always keeps the newest row.
 */
export const outbox = sqliteTable(
  "outbox",
  {
    id: integer("id").primaryKey(),
    type: text("type").notNull(),
    app: text("app"),
    /** the id of the job, deployment or host it is about */
    subject: text("subject"),
    data: text("data").notNull(),
    createdAt: createdAt(),
  },
  // No index besides the id: every reader follows the outbox by id, and each index is one more
  // page written by every transition's commit (an index on (app, id) cost 9% of claim+finish cycles).
);

/** How far each reader of the outbox has applied it (the drainer is `consequences`). */
export const outboxCursors = sqliteTable("outbox_cursors", {
  name: text("name").primaryKey(),
  lastId: integer("last_id").notNull(),
  updatedAt: ms("updated_at").notNull(),
});

/** A consequence of an outbox row still to apply: failed ones wait here with backoff, async ones until sent. */
export const outboxRetries = sqliteTable(
  "outbox_retries",
  {
    eventId: integer("event_id").notNull(),
    consequence: text("consequence").notNull(),
    attempts: integer("attempts").notNull().default(0),
    /** null once it gave up (the failure stays visible here and on the deployment) */
    nextAttemptAt: ms("next_attempt_at"),
    lastError: text("last_error"),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.eventId, t.consequence] }), index("outbox_retries_due_idx").on(t.nextAttemptAt)],
);

/**
 * Desired state of an app on a host: which release, how many containers, running or stopped.
 * Set when a deploy, rollback or app operation succeeds there; agents cache it and reconcile.
 * A removal keeps the row (state `removed`) so the host's version never goes backwards.
 */
export const appStates = sqliteTable(
  "app_states",
  {
    app: text("app").notNull(),
    host: text("host").notNull(),
    releaseId: text("release_id"),
    image: text("image"),
    /** the run spec the release runs with (secret values never, only their names) */
    run: json<Record<string, unknown>>("run"),
    /** apps with domains: domains, proxy, tls (and the ACME account) of the deploy */
    route: json<Record<string, unknown>>("route"),
    replicas: integer("replicas").notNull().default(1),
    /** running | stopped | removed */
    state: text("state").notNull().default("running"),
    /** the job that set it */
    jobId: text("job_id"),
    /** from one counter over all rows: a host's version is the highest of its rows */
    version: integer("version").notNull(),
    updatedAt: ms("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.app, t.host] }), index("app_states_host_version_idx").on(t.host, t.version)],
);

/** What agents' reconcile loops did (restart, recreate, remove ...), with the reason. */
export const appEvents = sqliteTable(
  "app_events",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    agentId: text("agent_id").notNull(),
    /** the agent's own numbering: a resent event is ignored */
    seq: integer("seq").notNull(),
    host: text("host").notNull(),
    app: text("app").notNull(),
    kind: text("kind").notNull(),
    reason: text("reason").notNull(),
    container: text("container"),
    exitCode: integer("exit_code"),
    at: ms("at").notNull(),
  },
  (t) => [uniqueIndex("app_events_agent_seq_idx").on(t.agentId, t.seq), index("app_events_app_idx").on(t.app, t.id)],
);

/** Containers' own output, shipped by agents; trimmed to a configurable number of lines per app and host. */
export const appLogs = sqliteTable(
  "app_logs",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    host: text("host").notNull(),
    app: text("app").notNull(),
    container: text("container").notNull(),
    ts: text("ts").notNull(),
    stream: text("stream").notNull(),
    line: text("line").notNull(),
  },
  (t) => [index("app_logs_app_idx").on(t.app, t.host, t.id)],
);

/**
 * One notification to one target, made by the drainer from an outbox row (in the transaction
 * that moves its cursor) and sent after the commit, retried with backoff until delivered or
 * given up. `dedupKey` makes a change notify a target once, however often its event repeats.
 */
export const notificationDeliveries = sqliteTable(
  "notification_deliveries",
  {
    /** sent as X-Deploybot-Delivery: the same on every attempt */
    id: text("id").primaryKey(),
    target: text("target").notNull(),
    /** webhook | slack, as the target was when the delivery was made */
    type: text("type").notNull(),
    event: text("event").notNull(),
    dedupKey: text("dedup_key").notNull(),
    /** the outbox row it was made from */
    eventId: integer("event_id").notNull(),
    app: text("app"),
    summary: text("summary").notNull(),
    /** the JSON body, exactly as sent (no secret: the signature is made at each attempt) */
    body: text("body").notNull(),
    /** pending | delivered | failed | refused | dropped */
    status: text("status").notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    /** null once it is no longer pending */
    nextAttemptAt: ms("next_attempt_at"),
    lastError: text("last_error"),
    createdAt: createdAt(),
    deliveredAt: ms("delivered_at"),
  },
  (t) => [
    uniqueIndex("notification_deliveries_dedup_idx").on(t.target, t.dedupKey),
    index("notification_deliveries_due_idx").on(t.nextAttemptAt),
    index("notification_deliveries_created_idx").on(t.createdAt),
  ],
);

/** Every attempt of a delivery: when, how long, what the receiver answered or why it failed. */
export const notificationAttempts = sqliteTable(
  "notification_attempts",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    deliveryId: text("delivery_id").notNull(),
    attempt: integer("attempt").notNull(),
    at: ms("at").notNull(),
    durationMs: integer("duration_ms").notNull(),
    statusCode: integer("status_code"),
    /** delivered | failed | refused */
    outcome: text("outcome").notNull(),
    error: text("error"),
  },
  (t) => [index("notification_attempts_delivery_idx").on(t.deliveryId, t.attempt)],
);
