import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { registryPrefix } from "@deploybot/protocol";
import { z } from "zod";

const optionalSecret = z
  .string()
  .optional()
  .transform((v) => (v && v.length > 0 ? v : undefined));

/** Every setting the controller reads from the environment. Nothing else reads process.env. */
const envSchema = z.object({
  /** HTTP port. */
  DEPLOYBOT_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** Address to bind; 0.0.0.0 so agents on other hosts can reach it. */
  DEPLOYBOT_HOST: z.string().default("0.0.0.0"),
  /** SQLite file (WAL); ":memory:" for throwaway runs. */
  DEPLOYBOT_DB: z.string().default("./data/deploybot.db"),
  /**
   * postgres://user:password@host:port/db selects PostgreSQL (several controllers on one
   * database) instead of the SQLite file at DEPLOYBOT_DB.
   */
  DEPLOYBOT_DATABASE_URL: optionalSecret.refine((v) => v === undefined || /^postgres(ql)?:\/\/[^\s]+$/.test(v), "must be a postgres:// or postgresql:// URL"),
  /** App definitions. */
  DEPLOYBOT_CONFIG: z.string().default("config/apps.yaml"),
  /** Shared secret agents present at registration. Without it no agent can register. */
  DEPLOYBOT_JOIN_TOKEN: optionalSecret,
  /** Bootstrap API token with the admin scope. */
  DEPLOYBOT_ADMIN_TOKEN: optionalSecret,
  /** GitHub webhook secret (HMAC SHA-256). */
  DEPLOYBOT_WEBHOOK_SECRET: optionalSecret,
  /** Signs agent JWTs and encrypts secrets; generated into the data dir when absent. */
  DEPLOYBOT_SECRET_KEY: optionalSecret,
  /**
   * Default registry for app images (`127.0.0.1:5000`, `https://reg.example.com/team/`), and its
   * credentials (handed only to claiming agents). Normalised here, once: no scheme, no trailing
   * slash, lower case, so every image named after it reads `reg.example.com/team/<app>`.
   */
  DEPLOYBOT_REGISTRY_URL: optionalSecret.transform((v) => (v === undefined ? undefined : registryPrefix(v))).refine(
    (v) => v === undefined || /^[a-z0-9.-]+(:\d+)?(\/[a-z0-9._/-]+)?$/.test(v),
    "must be a registry like 127.0.0.1:5000 or https://reg.example.com/team",
  ),
  DEPLOYBOT_REGISTRY_USERNAME: optionalSecret,
  DEPLOYBOT_REGISTRY_PASSWORD: optionalSecret,
  /** How often agents heartbeat; leases last three intervals. */
  DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: z.coerce.number().min(0.2).max(300).default(10),
  /** Default job execution timeout. */
  DEPLOYBOT_JOB_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(86_400).default(1800),
  /** A pending job nobody claims within this time ends timed_out. */
  DEPLOYBOT_QUEUE_TIMEOUT_SECONDS: z.coerce.number().int().min(1).default(86_400),
  /** Per-job log cap in bytes; past it one truncation marker is stored and lines are dropped. */
  DEPLOYBOT_LOG_MAX_BYTES: z.coerce.number().int().min(1024).default(10 * 1024 * 1024),
  /** How many times an assigned job whose lease expired is handed out again. */
  DEPLOYBOT_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(10).default(3),
  /** GitHub API token: tag listing, tag resolution and commit statuses (optional). */
  DEPLOYBOT_GITHUB_TOKEN: optionalSecret,
  /** GitHub API base URL (GitHub Enterprise: https://HOST/api/v3). */
  DEPLOYBOT_GITHUB_API_URL: z.string().url().default("https://api.github.com"),
  /** Public URL of this controller, for links in GitHub commit statuses. */
  DEPLOYBOT_PUBLIC_URL: z.string().url().optional(),
  /** Body limit of POST /v1/builds, which carries whole file trees. */
  DEPLOYBOT_BUILD_BODY_LIMIT: z.coerce.number().int().min(1024).default(50 * 1024 * 1024),
  /** Images of an app a host keeps (older ones are pruned, never a rollback target). */
  DEPLOYBOT_KEEP_IMAGES: z.coerce.number().int().min(1).max(100).default(5),
  /** The built web dashboard served at `/` (`pnpm --filter @deploybot/dashboard build` writes it). */
  DEPLOYBOT_DASHBOARD_DIR: z.string().default(fileURLToPath(new URL("../../dashboard/dist", import.meta.url))),
  /** How long `GET /v1/events` can resume: applied outbox rows older than this are pruned. */
  DEPLOYBOT_EVENTS_RETENTION_HOURS: z.coerce.number().min(0.01).max(24 * 365).default(168),
  /** Tests only: record changes but apply none of their consequences (to test a crash in between). */
  DEPLOYBOT_TEST_PAUSE_CONSEQUENCES: z
    .enum(["0", "1", "true", "false", ""])
    .default("")
    .transform((v) => v === "1" || v === "true"),
  /**
   * SQLite: agents' claims, starts and finishes asked for in one turn of the event loop share one
   * COMMIT (services/groupCommit.ts). `0` commits each on its own (the bench compares both).
   */
  DEPLOYBOT_GROUP_COMMIT: z
    .enum(["0", "1", "true", "false", ""])
    .default("")
    .transform((v) => v !== "0" && v !== "false"),
  /** ACME directory agents order certificates from for apps with `tls: auto` (default Let's Encrypt). */
  DEPLOYBOT_ACME_CA: z.string().url().default("https://acme-v02.api.letsencrypt.org/directory"),
  /** ACME account contact (expiry notices); optional. */
  DEPLOYBOT_ACME_EMAIL: z.string().email().optional(),
  /**
   * The agent distribution served at /v1/agents/dist/* (manifest.json, the bundled agent, its
   * unit and installer; `node scripts/build-agent.mjs --out DIR` writes one). Unset: the
   * checkout's own, rebuilt on demand when a source is newer.
   */
  DEPLOYBOT_AGENT_DIST: z.string().optional(),
  /** Agents updating themselves at once (an older agent is told between jobs); 0 turns updates off. */
  DEPLOYBOT_AGENT_UPDATE_CONCURRENCY: z.coerce.number().int().min(0).max(1000).default(1),
  /** Lines of containers' own output kept per app and host (the oldest go first); 10,000 lines of ~100 bytes is ~1 MB. */
  DEPLOYBOT_APP_LOG_LINES: z.coerce.number().int().min(100).max(10_000_000).default(10_000),
  /** Addresses (comma-separated IPs) that may read GET /metrics without a token; empty: a token with the metrics scope (or higher) is needed. */
  DEPLOYBOT_METRICS_ALLOW: z
    .string()
    .default("")
    .transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(z.union([z.ipv4(), z.ipv6()]))),
  /** Directory for periodic database backups (a consistent, checked copy every interval); unset: no periodic backups. */
  DEPLOYBOT_BACKUP_DIR: z.string().optional().transform((v) => (v && v.length > 0 ? v : undefined)),
  /** Time between periodic backups: seconds, or a number with s, m, h or d (`30m`, `6h`, `1d`). */
  DEPLOYBOT_BACKUP_INTERVAL: z
    .string()
    .default("6h")
    .transform((v, ctx) => {
      const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(v.trim());
      const ms = m ? Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? "s") as "s"] : Number.NaN;
      if (!(ms >= 1000)) ctx.addIssue({ code: "custom", message: "must be a duration of at least 1s, like 900, 30m, 6h or 1d" });
      return ms;
    }),
  /** How many periodic backups DEPLOYBOT_BACKUP_DIR keeps; older ones are removed after each new one. */
  DEPLOYBOT_BACKUP_KEEP: z.coerce.number().int().min(1).max(10_000).default(8),
  /**
   * GitHub webhook bodies read at once before their signature is known; more are answered 503
   * before their body is read. Each holds at most 1 MB in memory (the rest waits in a temp file).
   */
  DEPLOYBOT_WEBHOOK_MAX_IN_FLIGHT: z.coerce.number().int().min(1).max(1000).default(8),
  /** pino level. */
  DEPLOYBOT_LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export interface Config {
  port: number;
  host: string;
  dbPath: string;
  /** PostgreSQL instead of dbPath when set (DEPLOYBOT_DATABASE_URL) */
  databaseUrl: string | undefined;
  configPath: string;
  joinToken: string | undefined;
  adminToken: string | undefined;
  webhookSecret: string | undefined;
  secretKey: string | undefined;
  /** `url` is normalised (see DEPLOYBOT_REGISTRY_URL): images are `${url}/<app>` */
  registry: { url: string; username: string; password: string } | undefined;
  heartbeatIntervalSeconds: number;
  jobTimeoutSeconds: number;
  queueTimeoutSeconds: number;
  logMaxBytes: number;
  maxAttempts: number;
  logLevel: string;
  githubToken: string | undefined;
  githubApiUrl: string;
  publicUrl: string | undefined;
  buildBodyLimit: number;
  keepImages: number;
  dashboardDir: string;
  eventsRetentionMs: number;
  pauseConsequences: boolean;
  /** SQLite: agents' transitions of one turn share a COMMIT */
  groupCommit: boolean;
  /** handed to agents with every routed deploy of a `tls: auto` app */
  acme: { directory: string; email?: string };
  /** undefined: the checkout's distribution, built on demand */
  agentDist: string | undefined;
  agentUpdateConcurrency: number;
  appLogLines: number;
  metricsAllow: string[];
  webhookMaxInFlight: number;
  /** periodic backups; undefined without DEPLOYBOT_BACKUP_DIR */
  backups: { dir: string; intervalMs: number; keep: number } | undefined;
}

/** Every setting the controller reads (scripts/dev.sh keeps them from the agent beside it). */
export const controllerSettingNames: readonly string[] = Object.keys(envSchema.shape);

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid controller configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  // `pnpm controller` runs inside apps/controller; relative paths mean the caller's directory.
  const base = env.INIT_CWD ?? process.cwd();
  const fromCaller = (p: string) => (p === ":memory:" || isAbsolute(p) ? p : resolve(base, p));
  return {
    port: e.DEPLOYBOT_PORT,
    host: e.DEPLOYBOT_HOST,
    dbPath: fromCaller(e.DEPLOYBOT_DB),
    databaseUrl: e.DEPLOYBOT_DATABASE_URL,
    configPath: fromCaller(e.DEPLOYBOT_CONFIG),
    joinToken: e.DEPLOYBOT_JOIN_TOKEN,
    adminToken: e.DEPLOYBOT_ADMIN_TOKEN,
    webhookSecret: e.DEPLOYBOT_WEBHOOK_SECRET,
    secretKey: e.DEPLOYBOT_SECRET_KEY,
    registry: e.DEPLOYBOT_REGISTRY_URL
      ? {
          url: e.DEPLOYBOT_REGISTRY_URL,
          username: e.DEPLOYBOT_REGISTRY_USERNAME ?? "",
          password: e.DEPLOYBOT_REGISTRY_PASSWORD ?? "",
        }
      : undefined,
    heartbeatIntervalSeconds: e.DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS,
    jobTimeoutSeconds: e.DEPLOYBOT_JOB_TIMEOUT_SECONDS,
    queueTimeoutSeconds: e.DEPLOYBOT_QUEUE_TIMEOUT_SECONDS,
    logMaxBytes: e.DEPLOYBOT_LOG_MAX_BYTES,
    maxAttempts: e.DEPLOYBOT_MAX_ATTEMPTS,
    logLevel: e.DEPLOYBOT_LOG_LEVEL,
    githubToken: e.DEPLOYBOT_GITHUB_TOKEN,
    githubApiUrl: e.DEPLOYBOT_GITHUB_API_URL.replace(/\/$/, ""),
    publicUrl: e.DEPLOYBOT_PUBLIC_URL?.replace(/\/$/, ""),
    buildBodyLimit: e.DEPLOYBOT_BUILD_BODY_LIMIT,
    keepImages: e.DEPLOYBOT_KEEP_IMAGES,
    dashboardDir: fromCaller(e.DEPLOYBOT_DASHBOARD_DIR),
    eventsRetentionMs: e.DEPLOYBOT_EVENTS_RETENTION_HOURS * 3600 * 1000,
    pauseConsequences: e.DEPLOYBOT_TEST_PAUSE_CONSEQUENCES,
    groupCommit: e.DEPLOYBOT_GROUP_COMMIT,
    acme: { directory: e.DEPLOYBOT_ACME_CA, ...(e.DEPLOYBOT_ACME_EMAIL ? { email: e.DEPLOYBOT_ACME_EMAIL } : {}) },
    agentDist: e.DEPLOYBOT_AGENT_DIST ? fromCaller(e.DEPLOYBOT_AGENT_DIST) : undefined,
    agentUpdateConcurrency: e.DEPLOYBOT_AGENT_UPDATE_CONCURRENCY,
    appLogLines: e.DEPLOYBOT_APP_LOG_LINES,
    metricsAllow: e.DEPLOYBOT_METRICS_ALLOW,
    webhookMaxInFlight: e.DEPLOYBOT_WEBHOOK_MAX_IN_FLIGHT,
    backups: e.DEPLOYBOT_BACKUP_DIR
      ? { dir: fromCaller(e.DEPLOYBOT_BACKUP_DIR), intervalMs: e.DEPLOYBOT_BACKUP_INTERVAL, keep: e.DEPLOYBOT_BACKUP_KEEP }
      : undefined,
  };
}

/** Test and bench defaults: in-memory, fixed secrets, fast heartbeats. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({
      DEPLOYBOT_DB: ":memory:",
      DEPLOYBOT_JOIN_TOKEN: "join-secret",
      DEPLOYBOT_ADMIN_TOKEN: "admin-secret",
      DEPLOYBOT_SECRET_KEY: "test-secret-key-with-enough-entropy-000000",
    }),
    ...overrides,
  };
}
