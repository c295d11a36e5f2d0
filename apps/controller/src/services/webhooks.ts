import type { Deployment, WebhookReply } from "@deploybot/protocol";
import { and, desc, eq } from "drizzle-orm";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "pino";
import { z } from "zod";
import { webhookDeliveries, webhookPushes } from "../db/schema";
import { ApiError } from "../lib/errors";
import { hasNul } from "../lib/nul";
import type { CreateDeploymentInput } from "./deployments";
import { type Deps, iso } from "./deps";
import { CommitStatusReporter } from "./commitStatuses";
import { GitHubClient } from "./github";
import { SignedBodyReader } from "./signedBody";

export type { WebhookOutcome } from "@deploybot/protocol";
import type { WebhookOutcome } from "@deploybot/protocol";

export interface Delivery {
  deliveryId: string;
  event: string;
  repo: string | null;
  ref: string | null;
  sha: string | null;
  outcome: WebhookOutcome;
  reason: string;
  deploymentId: string | null;
  receivedAt: string;
}

export interface IncomingWebhook {
  event: string | undefined;
  deliveryId: string | undefined;
  signature: string | undefined;
  contentType: string | undefined;
  /** the raw body as it arrives; nothing reads it as text before its signature holds */
  body: ReadableStream<Uint8Array> | string | null;
}

interface VerifiedBody {
  contentType: string | undefined;
  body: string;
}

export interface WebhookAnswer {
  status: ContentfulStatusCode;
  body: WebhookReply;
}

/** The part of a push payload we act on; GitHub sends far more, which passes through unread. */
const pushPayload = z.object({
  ref: z.string(),
  after: z.string(),
  deleted: z.boolean().optional(),
  repository: z.object({ full_name: z.string() }),
  head_commit: z.object({ id: z.string(), message: z.string() }).nullish(),
});

const ZERO_SHA = /^0{40}$/;
const SKIP_MARKERS = ["[skip deploy]", "[skip ci]", "[ci skip]"];
const MAX_DELIVERY_ID = 128;

interface Creator {
  create(input: CreateDeploymentInput): Promise<Deployment>;
}

type Decision = Omit<Delivery, "deliveryId" | "event" | "receivedAt"> & { status: ContentfulStatusCode };

/** GitHub caps a webhook payload at 25 MB. */
export const WEBHOOK_BODY_LIMIT = 25 * 1024 * 1024;
/** A push payload is a few KB; a larger unverified body waits for its signature in a temp file. */
const WEBHOOK_MEMORY_BYTES = 1024 * 1024;

/**
 * GitHub push webhooks: signature first (nothing unsigned is stored), then one decision per
 * delivery id, recorded, so a redelivery repeats the first answer instead of deploying twice.
 */
export class WebhookService {
  private readonly logger: Logger;
  readonly bodies: SignedBodyReader;

  constructor(
    private readonly deps: Deps,
    private readonly deployments: Creator,
  ) {
    this.logger = deps.logger.child({ component: "webhooks" });
    this.bodies = new SignedBodyReader({ maxBytes: WEBHOOK_BODY_LIMIT, maxInFlight: deps.config.webhookMaxInFlight, memoryBytes: WEBHOOK_MEMORY_BYTES });
  }

  async receive(hook: IncomingWebhook): Promise<WebhookAnswer> {
    const secret = this.deps.config.webhookSecret;
    if (!secret) throw new ApiError(503, "webhooks_disabled", "DEPLOYBOT_WEBHOOK_SECRET is not set on the controller");
    let body: string;
    try {
      body = (await this.bodies.read(hook.body, secret, hook.signature)).toString("utf8");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.logger.warn({ deliveryId: hook.deliveryId?.slice(0, MAX_DELIVERY_ID), hasSignature: !!hook.signature }, "webhook signature refused");
      }
      throw err;
    }
    const deliveryId = hook.deliveryId?.trim();
    const event = hook.event?.trim();
    if (!deliveryId || deliveryId.length > MAX_DELIVERY_ID || !event) {
      throw new ApiError(400, "invalid_delivery", "X-GitHub-Delivery and X-GitHub-Event headers are required");
    }

    // The database decides who handles a delivery id: the first insert of its row wins, in
    // this process or any other; a concurrent or later copy answers as a duplicate.
    if (!(await this.claim(deliveryId, event))) return this.duplicate(deliveryId, await this.find(deliveryId));
    return this.decideAndRecord(deliveryId, event, { contentType: hook.contentType, body });
  }

  /** Takes the delivery id with a placeholder row (`processing`); false when someone has it already. */
  private async claim(deliveryId: string, event: string): Promise<boolean> {
    const row = { deliveryId, event: event.slice(0, 64), outcome: "processing", reason: "being decided", receivedAt: this.deps.clock() };
    const taken = await this.deps.db.insert(webhookDeliveries).values(row).onConflictDoNothing().returning({ id: webhookDeliveries.deliveryId });
    return taken.length === 1;
  }

  async list(limit: number): Promise<Delivery[]> {
    return (await this.deps.db
      .select()
      .from(webhookDeliveries)
      // same-millisecond deliveries by id (rowid, their arrival order, exists on SQLite only)
      .orderBy(desc(webhookDeliveries.receivedAt), desc(webhookDeliveries.deliveryId))
      .limit(limit))
      .map(toWire);
  }

  private async find(deliveryId: string): Promise<Delivery | undefined> {
    const row = (await this.deps.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.deliveryId, deliveryId)))[0];
    return row ? toWire(row) : undefined;
  }

  private duplicate(deliveryId: string, first: Delivery | undefined): WebhookAnswer {
    this.logger.info({ deliveryId }, "webhook redelivery ignored");
    return { status: 200, body: { duplicate: true, ...(first ?? { deliveryId }) } };
  }

  private async decideAndRecord(deliveryId: string, event: string, hook: VerifiedBody): Promise<WebhookAnswer> {
    let decision: Decision;
    let delivery: Delivery;
    try {
      decision = await this.decide(deliveryId, event, hook);
      delivery = await this.record(deliveryId, event, decision);
    } catch (err) {
      // A refused deployment (4xx: no hosts, unknown app) is final and recorded, so a redelivery
      // is a no-op. A failure on our side is not recorded: GitHub's redelivery then tries again.
      if (err instanceof ApiError && err.status < 500) {
        const reason = `${err.code}: ${err.message}`;
        await this.record(deliveryId, event, { repo: null, ref: null, sha: null, outcome: "rejected", reason, deploymentId: null, status: err.status });
      } else {
        await this.deps.db.delete(webhookDeliveries).where(eq(webhookDeliveries.deliveryId, deliveryId));
      }
      throw err;
    }
    if (decision.outcome === "rejected") throw new ApiError(decision.status, "invalid_payload", decision.reason);
    return { status: decision.status, body: { ...delivery } };
  }

  private async decide(deliveryId: string, event: string, hook: VerifiedBody): Promise<Decision> {
    const none = { repo: null, ref: null, sha: null, deploymentId: null };
    if (event === "ping") return { ...none, outcome: "pong", reason: "pong", status: 200 };
    if (event !== "push") return { ...none, outcome: "ignored", reason: `event '${event.slice(0, 64)}' is not handled`, status: 202 };

    const parsed = pushPayload.safeParse(parseBody(hook));
    if (!parsed.success) return { ...none, outcome: "rejected", reason: "the push payload is not valid JSON in GitHub's format", status: 400 };
    const push = parsed.data;
    // what is stored of the push: PostgreSQL text cannot hold U+0000 (no ref or repository name does)
    if (hasNul([push.ref, push.after, push.repository.full_name])) return { ...none, outcome: "rejected", reason: "the push's ref, sha or repository holds a NUL character", status: 400 };
    const seen = { repo: push.repository.full_name, ref: push.ref, sha: push.after, deploymentId: null };
    const ignore = (reason: string): Decision => ({ ...seen, outcome: "ignored", reason, status: 200 });

    const apps = this.deps.apps().byRepo(push.repository.full_name);
    if (apps.length === 0) return ignore(`no app in apps.yaml has repo '${push.repository.full_name}'`);
    if (!push.ref.startsWith("refs/heads/")) return ignore(push.ref.startsWith("refs/tags/") ? "tag pushes are not deployed" : `'${push.ref}' is not a branch`);
    const branch = push.ref.slice("refs/heads/".length);
    if (push.deleted || ZERO_SHA.test(push.after)) return ignore(`branch '${branch}' was deleted`);
    // A monorepo fans out: every app of the repository whose branch was pushed deploys.
    const skipped: string[] = [];
    const wanted = apps.filter((app) => {
      if (branch !== app.branch) skipped.push(`branch '${branch}' is not '${app.branch}', the branch app '${app.name}' deploys`);
      else if (!app.deploy_on_push) skipped.push(`app '${app.name}' has deploy_on_push: false`);
      else return true;
      return false;
    });
    if (wanted.length === 0) return ignore(skipped.join("; "));
    const message = push.head_commit?.message.toLowerCase() ?? "";
    const marker = SKIP_MARKERS.find((m) => message.includes(m));
    if (marker) return ignore(`the head commit asks to skip: ${marker}`);
    if (!/^[0-9a-f]{40}$/.test(push.after)) return { ...seen, outcome: "rejected", reason: "'after' is not a commit sha", status: 400 };

    const deployed: { app: string; id: string }[] = [];
    const refused: string[] = [];
    const duplicates: { app: string; deliveryId: string; deploymentId: string | null }[] = [];
    let firstRefusal: ApiError | undefined;
    for (const app of wanted) {
      // One deploy per (app, branch, commit): the same signed body replayed under a new delivery
      // id is recorded as a duplicate, decided by the database's primary key, not a lookup.
      const key = and(eq(webhookPushes.app, app.name), eq(webhookPushes.branch, branch), eq(webhookPushes.sha, push.after));
      const taken = await this.deps.db
        .insert(webhookPushes)
        .values({ app: app.name, branch, sha: push.after, deliveryId, receivedAt: this.deps.clock() })
        .onConflictDoNothing()
        .returning({ sha: webhookPushes.sha });
      if (taken.length === 0) {
        const first = (await this.deps.db.select().from(webhookPushes).where(key))[0];
        duplicates.push({ app: app.name, deliveryId: first?.deliveryId ?? "?", deploymentId: first?.deploymentId ?? null });
        continue;
      }
      try {
        const deployment = await this.deployments.create({ app: app.name, sha: push.after, ref: branch, trigger: "webhook", triggeredBy: deliveryId });
        await this.deps.db.update(webhookPushes).set({ deploymentId: deployment.id }).where(key);
        deployed.push({ app: app.name, id: deployment.id });
      } catch (err) {
        // not deployed: the push may be tried again (a redelivery after the cause is fixed)
        await this.deps.db.delete(webhookPushes).where(key);
        // one app of a monorepo without hosts must not keep the others from deploying
        if (!(err instanceof ApiError && err.status < 500 && wanted.length > 1)) throw err;
        firstRefusal ??= err;
        refused.push(`app '${app.name}' refused: ${err.code}: ${err.message}`);
      }
    }
    const dupNotes = duplicates.map((d) => `commit ${push.after.slice(0, 12)} of ${branch} was already handled for app '${d.app}' (delivery ${d.deliveryId})`);
    if (deployed.length === 0 && duplicates.length > 0) {
      return { ...seen, outcome: "duplicate", reason: [...dupNotes, ...refused, ...skipped].join("; "), deploymentId: duplicates[0]!.deploymentId, status: 200 };
    }
    if (deployed.length === 0 && firstRefusal) throw firstRefusal;
    const what = deployed.map((d) => (deployed.length > 1 ? `app '${d.app}' (${d.id})` : `app '${d.app}'`)).join(", ");
    const reason = [`deploying ${push.after.slice(0, 12)} of ${branch} to ${what}`, ...dupNotes, ...refused, ...skipped].join("; ");
    return { ...seen, outcome: "deployed", reason, deploymentId: deployed[0]!.id, status: 202 };
  }

  private async record(deliveryId: string, event: string, d: Decision): Promise<Delivery> {
    const row = {
      deliveryId,
      event: event.slice(0, 64),
      repo: d.repo,
      ref: d.ref,
      sha: d.sha,
      outcome: d.outcome,
      reason: d.reason,
      deploymentId: d.deploymentId,
      receivedAt: this.deps.clock(),
    };
    // the placeholder taken by `claim` becomes the decision
    await this.deps.db
      .insert(webhookDeliveries)
      .values(row)
      .onConflictDoUpdate({ target: webhookDeliveries.deliveryId, set: { ...row, deliveryId: undefined, receivedAt: undefined } });
    this.logger.info({ deliveryId, event: row.event, repo: d.repo, outcome: d.outcome, reason: d.reason, deploymentId: d.deploymentId }, "webhook delivery");
    return toWire(row);
  }
}

/** GitHub sends JSON, or `payload=<json>` when the hook is set to the form content type. */
function parseBody(hook: VerifiedBody): unknown {
  try {
    if (hook.contentType?.startsWith("application/x-www-form-urlencoded")) {
      const payload = new URLSearchParams(hook.body).get("payload");
      return payload === null ? undefined : JSON.parse(payload);
    }
    return JSON.parse(hook.body);
  } catch {
    return undefined;
  }
}

function toWire(row: typeof webhookDeliveries.$inferSelect): Delivery {
  return { ...row, outcome: row.outcome as WebhookOutcome, receivedAt: iso(row.receivedAt)! };
}

/**
 * Everything GitHub-facing, wired to the deployments: tags and refs are resolved through the
 * client, push webhooks create deployments; commit statuses are a consequence (services/index.ts).
 */
export function connectGitHub(
  deps: Deps,
  deployments: Creator & { get(id: string): Promise<Deployment>; setRefResolver(r: (repo: string, ref: string) => Promise<string>): void },
) {
  const github = new GitHubClient(deps);
  deployments.setRefResolver((repo, ref) => github.resolveRef(repo, ref));
  const commitStatuses = new CommitStatusReporter(deps, github, (id) => deployments.get(id));
  return { github, commitStatuses, webhooks: new WebhookService(deps, deployments) };
}
