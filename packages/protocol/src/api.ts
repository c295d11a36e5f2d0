import { z } from "zod";
import { appHostStatus, appLogLine } from "./appState";
import { deployment, release } from "./deployments";
import { proxySpec, routeInfo, tlsMode } from "./routing";
import { agent, apiToken, buildSpec, job, runSpec } from "./schemas";

// Answers of the REST API that no agent reads: the controller's routes declare them as their
// response schemas, so /openapi.json and a generated client describe exactly these.

export const healthAnswer = z.object({ ok: z.literal(true) });

export const jobAnswer = z.object({ job });
export const deploymentAnswer = z.object({ deployment });
export const deploymentPage = z.object({ deployments: z.array(deployment), nextCursor: z.string().nullable() });
export const hostList = z.object({ hosts: z.array(agent) });
export const agentAnswer = z.object({ agent });

/** What apps.yaml says of an app, with its current release. Secret values are never part of it. */
export const appView = z.object({
  name: z.string(),
  repo: z.string(),
  url: z.string(),
  branch: z.string(),
  deployOnPush: z.boolean(),
  hosts: z.array(z.string()),
  image: z.string().nullable(),
  /** where its images are pushed and pulled from: `image`, else DEPLOYBOT_REGISTRY_URL/<app>; null: each host builds its own and nothing is pushed */
  imageRepository: z.string().nullable(),
  build: buildSpec,
  run: runSpec,
  /** served by the proxy on every host of the app; empty: a published host port */
  domains: z.array(z.string()),
  tls: tlsMode,
  replicas: z.number().int(),
  proxy: proxySpec.nullable(),
  currentRelease: release.nullable(),
  /** per host: what the controller wants against what the agent reports */
  status: z.array(appHostStatus),
}).meta({ id: "App" });
export type AppView = z.infer<typeof appView>;
export const appList = z.object({ apps: z.array(appView) });
/** A host's proxy route for an app, as its agent last reported it. */
export const hostRoute = routeInfo.extend({
  host: z.string(),
  online: z.boolean(),
  /** how many upstreams the host proxy finds healthy */
  healthy: z.number().int(),
});
/** What an agent's reconcile loop did to an app (restart, recreation, removal), with its reason. */
export const appEventRecord = z
  .object({
    id: z.number().int(),
    host: z.string(),
    app: z.string(),
    kind: z.string(),
    reason: z.string(),
    container: z.string().nullable(),
    exitCode: z.number().int().nullable(),
    at: z.string(),
  })
  .meta({ id: "AppEvent" });
export const appEventList = z.object({ events: z.array(appEventRecord) });
/** One app with its ten newest releases, each host's route and its 20 newest reconcile events. */
export const appDetail = z.object({ app: appView, releases: z.array(release), routes: z.array(hostRoute), events: z.array(appEventRecord) });
/** `GET /v1/apps/{name}/logs` without `follow`: lines oldest first, and the cursor to continue after. */
/**
 * A host of the app whose agent does not ship the containers' output (it predates app-log
 * shipping, or has it turned off): no line of it will come, so "no output yet" would mislead.
 * Also a `notice` event at the start of a `follow=1` stream.
 */
export const appLogSilentHost = z.object({
  host: z.string(),
  agentVersion: z.string(),
  message: z.string().describe("says why and what to do: upgrade the host's agent, or turn shipping on"),
});
export type AppLogSilentHost = z.infer<typeof appLogSilentHost>;
export const appLogPage = z.object({
  lines: z.array(appLogLine),
  next: z.number().int(),
  /** added after the first release: an older controller leaves it out */
  silentHosts: z.array(appLogSilentHost).optional(),
});
/** An app operation: one job per host. */
export const jobList = z.object({ jobs: z.array(job) });
/** `GET /readyz` when ready (a 503 otherwise, in the error envelope). */
export const readyAnswer = z.object({ ok: z.literal(true) });
export const releaseList = z.object({ releases: z.array(release) });

/** A secret's name and when it was set; the value never leaves the controller except to an agent. */
export const secretInfo = z.object({ key: z.string(), updatedAt: z.string() }).meta({ id: "SecretInfo" });
export const secretList = z.object({ secrets: z.array(secretInfo) });
export const secretAnswer = z.object({ secret: secretInfo });

export const createdToken = apiToken.extend({ token: z.string().describe("shown once; only its hash is stored") });
export const tokenList = z.object({ tokens: z.array(apiToken) });

/** `POST /v1/builds`: the queued build job and the tag it will push. */
export const buildAccepted = z.object({ job, imageTag: z.string() });

export const installCommand = z.object({ url: z.string(), command: z.string(), note: z.string() });

/** duplicate: a redelivery, or the same push under a new delivery id; processing: a delivery still being decided */
export const webhookOutcome = z.enum(["deployed", "ignored", "pong", "rejected", "duplicate", "processing"]);
export type WebhookOutcome = z.infer<typeof webhookOutcome>;
export const webhookDelivery = z.object({
  deliveryId: z.string(),
  event: z.string(),
  repo: z.string().nullable(),
  ref: z.string().nullable(),
  sha: z.string().nullable(),
  outcome: webhookOutcome,
  reason: z.string(),
  deploymentId: z.string().nullable(),
  receivedAt: z.string(),
}).meta({ id: "WebhookDelivery" });
export type WebhookDelivery = z.infer<typeof webhookDelivery>;
export const webhookDeliveryList = z.object({ deliveries: z.array(webhookDelivery) });
/** The answer to GitHub: the delivery as decided; a redelivery repeats it with `duplicate: true`. */
export const webhookReply = webhookDelivery.partial().extend({ deliveryId: z.string(), duplicate: z.literal(true).optional() });
export type WebhookReply = z.infer<typeof webhookReply>;

export const gitHubTag = z.object({
  name: z.string(),
  sha: z.string(),
  date: z.string().nullable().describe("commit date (ISO), null when the commit could not be read"),
  author: z.string().nullable(),
  message: z.string().nullable(),
}).meta({ id: "GitHubTag" });
export const gitHubTags = z.object({ repo: z.string(), tags: z.array(gitHubTag) });

/** A join token as listed (never the token itself). */
export const joinTokenInfo = z
  .object({
    id: z.string(),
    /** the one host name it registers; null: any host name not registered yet */
    hostname: z.string().nullable(),
    singleUse: z.boolean(),
    createdAt: z.string(),
    expiresAt: z.string(),
    usedAt: z.string().nullable(),
    usedBy: z.string().nullable(),
    revokedAt: z.string().nullable(),
  })
  .meta({ id: "JoinToken" });
export const createdJoinToken = joinTokenInfo.extend({ token: z.string().describe("shown once; only its hash is stored") });
