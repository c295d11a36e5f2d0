import { hostname } from "node:os";
import { parseControllerUrls, protectedPathProblem } from "@deploybot/protocol";
import { z } from "zod";
import { RUNS_FROM_BUNDLE } from "./version";

const nonEmpty = z
  .string()
  .optional()
  .transform((v) => (v && v.length > 0 ? v : undefined));

/** Every setting the agent reads from the environment. Nothing else reads process.env. */
const envSchema = z.object({
  /**
   * Controller base URL, e.g. http://controller:8080; or several, comma-separated (controllers
   * sharing one PostgreSQL database): the agent sticks to the one that answers and moves to the
   * next on a connection error, a timeout or a 502/503/504.
   */
  DEPLOYBOT_URL: z
    .string()
    .transform(parseControllerUrls)
    .pipe(z.array(z.string().url({ message: "each comma-separated controller URL must be a URL" })).min(1, { message: "no controller URL" })),
  /** Join token the controller accepts at registration. */
  DEPLOYBOT_JOIN_TOKEN: z.string().min(1),
  /** Name of this host as jobs target it; defaults to the OS hostname. */
  DEPLOYBOT_HOSTNAME: nonEmpty,
  /** Comma-separated labels, e.g. builder,region=eu */
  DEPLOYBOT_LABELS: z.string().default(""),
  /** Identity, held job, log spool and git caches live here. */
  DEPLOYBOT_STATE_DIR: z.string().default("/var/lib/deploybot-agent"),
  /** The agent's own registry credentials (used when a job carries none for that registry). */
  DEPLOYBOT_REGISTRY_URL: nonEmpty,
  DEPLOYBOT_REGISTRY_USERNAME: nonEmpty,
  DEPLOYBOT_REGISTRY_PASSWORD: nonEmpty,
  /** On SIGTERM, how long a running job may go on before it is cancelled. */
  DEPLOYBOT_DRAIN_TIMEOUT_SECONDS: z.coerce.number().min(0).default(600),
  /** Longest long-poll the agent asks for while idle. */
  DEPLOYBOT_POLL_WAIT_SECONDS: z.coerce.number().min(0).max(30).default(25),
  /**
   * Who runs the host proxy (HAProxy) for apps with domains: `agent` starts it itself when it is
   * not running (it outlives the agent); `external` means a service manager runs it (the
   * deploybot-proxy systemd unit install-agent.sh writes, which may bind 80/443); `off`: no proxy,
   * routed deploys fail.
   */
  DEPLOYBOT_PROXY: z.enum(["agent", "external", "off"]).default("agent"),
  /** the proxy's http and https ports (high ports for tests and laptops) */
  DEPLOYBOT_PROXY_HTTP_PORT: z.coerce.number().int().min(1).max(65535).default(80),
  DEPLOYBOT_PROXY_HTTPS_PORT: z.coerce.number().int().min(1).max(65535).default(443),
  /** the address the proxy listens on */
  DEPLOYBOT_PROXY_ADDRESS: z.union([z.ipv4(), z.literal("::")]).default("0.0.0.0"),
  /** the Docker network routed app containers join; the proxy reaches them on it */
  DEPLOYBOT_NETWORK: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/)
    .default("deploybot"),
  DEPLOYBOT_HAPROXY_BIN: z.string().default("haproxy"),
  /** a PEM file to trust for a private ACME server's own https (Pebble, step-ca); public CAs need none */
  DEPLOYBOT_ACME_CA_CERT: nonEmpty,
  /** take the controller's offer of a newer agent between jobs ("false": this host opts out) */
  DEPLOYBOT_AUTO_UPDATE: z.enum(["true", "false", "1", "0"]).default("true"),
  /** how long a downloaded agent has to register in a trial run before it is refused */
  DEPLOYBOT_UPDATE_TRIAL_SECONDS: z.coerce.number().min(1).max(600).default(60),
  /** set by the agent itself on the trial run of a downloaded update: register, then exit 0 */
  DEPLOYBOT_UPDATE_TRIAL: z.enum(["1"]).optional(),
  /** How often reconcile compares the engine with the desired state (it also runs after every job). */
  DEPLOYBOT_RECONCILE_INTERVAL_SECONDS: z.coerce.number().min(0.5).max(300).default(5),
  /** Ship the app containers' own output to the controller (`deploybot logs APP`). */
  DEPLOYBOT_SHIP_APP_LOGS: z.enum(["true", "false", "1", "0"]).default("true"),
  /**
   * Comma-separated host directories apps may bind-mount from (`run.volumes: [/srv/app/x:/x]`).
   * Empty (the default): no bind mount at all, named volumes only. A bind must resolve (symlinks
   * followed) below one of them; system paths and the Docker socket are refused whatever this says.
   */
  DEPLOYBOT_AGENT_BIND_ROOTS: z
    .string()
    .default("")
    .transform((v) => v.split(",").map((r) => r.trim().replace(/(.)\/+$/, "$1")).filter(Boolean))
    .superRefine((roots, ctx) => {
      for (const root of roots) {
        const problem = !root.startsWith("/") || root.split("/").includes("..") ? "must be an absolute path without '..'" : protectedPathProblem(root);
        if (problem) ctx.addIssue({ code: "custom", message: `'${root}' cannot be a bind root: ${problem}` });
      }
    }),
  /** Serve Prometheus metrics on 127.0.0.1 at this port (unset: none). */
  DEPLOYBOT_AGENT_METRICS_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  DEPLOYBOT_LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export interface AgentConfig {
  /** the controllers, in the order they are tried (DEPLOYBOT_URL) */
  urls: string[];
  joinToken: string;
  hostname: string;
  labels: string[];
  stateDir: string;
  registries: { url: string; username: string; password: string }[];
  drainTimeoutSeconds: number;
  pollWaitSeconds: number;
  reconcileIntervalSeconds: number;
  shipAppLogs: boolean;
  metricsPort: number | undefined;
  /** DEPLOYBOT_AGENT_BIND_ROOTS: where bind mounts may come from (empty: nowhere) */
  bindRoots: string[];
  logLevel: string;
  autoUpdate: boolean;
  updateTrialSeconds: number;
  updateTrial: boolean;
  /** DEPLOYBOT_* variables set but not known here: warned about at start (a misspelt setting) */
  unknownSettings: string[];
  proxy: {
    supervision: "agent" | "external" | "off";
    httpPort: number;
    httpsPort: number;
    bindAddress: string;
    network: string;
    haproxyBin: string;
    acmeCaCertFile?: string;
  };
}

/** Every setting the agent reads; any other DEPLOYBOT_* one is warned about at start. */
export const agentSettingNames: readonly string[] = Object.keys(envSchema.shape);

/**
 * `bundled`: whether this runs the installed bundle (the default asks the build, version.ts);
 * from a checkout's sources self-update is off whatever DEPLOYBOT_AUTO_UPDATE says.
 */
export function loadAgentConfig(env: Record<string, string | undefined> = process.env, opts: { bundled?: boolean } = {}): AgentConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid agent configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  return {
    urls: e.DEPLOYBOT_URL,
    joinToken: e.DEPLOYBOT_JOIN_TOKEN,
    hostname: e.DEPLOYBOT_HOSTNAME ?? hostname(),
    labels: e.DEPLOYBOT_LABELS.split(",").map((l) => l.trim()).filter(Boolean),
    stateDir: e.DEPLOYBOT_STATE_DIR,
    registries: e.DEPLOYBOT_REGISTRY_URL
      ? [{ url: e.DEPLOYBOT_REGISTRY_URL, username: e.DEPLOYBOT_REGISTRY_USERNAME ?? "", password: e.DEPLOYBOT_REGISTRY_PASSWORD ?? "" }]
      : [],
    drainTimeoutSeconds: e.DEPLOYBOT_DRAIN_TIMEOUT_SECONDS,
    pollWaitSeconds: e.DEPLOYBOT_POLL_WAIT_SECONDS,
    reconcileIntervalSeconds: e.DEPLOYBOT_RECONCILE_INTERVAL_SECONDS,
    shipAppLogs: e.DEPLOYBOT_SHIP_APP_LOGS === "true" || e.DEPLOYBOT_SHIP_APP_LOGS === "1",
    logLevel: e.DEPLOYBOT_LOG_LEVEL,
    metricsPort: e.DEPLOYBOT_AGENT_METRICS_PORT,
    bindRoots: e.DEPLOYBOT_AGENT_BIND_ROOTS,
    autoUpdate: (e.DEPLOYBOT_AUTO_UPDATE === "true" || e.DEPLOYBOT_AUTO_UPDATE === "1") && (opts.bundled ?? RUNS_FROM_BUNDLE),
    updateTrialSeconds: e.DEPLOYBOT_UPDATE_TRIAL_SECONDS,
    updateTrial: e.DEPLOYBOT_UPDATE_TRIAL === "1",
    unknownSettings: Object.keys(env).filter((k) => k.startsWith("DEPLOYBOT_") && !(k in envSchema.shape)).sort(),
    proxy: {
      supervision: e.DEPLOYBOT_PROXY,
      httpPort: e.DEPLOYBOT_PROXY_HTTP_PORT,
      httpsPort: e.DEPLOYBOT_PROXY_HTTPS_PORT,
      bindAddress: e.DEPLOYBOT_PROXY_ADDRESS,
      network: e.DEPLOYBOT_NETWORK,
      haproxyBin: e.DEPLOYBOT_HAPROXY_BIN,
      ...(e.DEPLOYBOT_ACME_CA_CERT ? { acmeCaCertFile: e.DEPLOYBOT_ACME_CA_CERT } : {}),
    },
  };
}
