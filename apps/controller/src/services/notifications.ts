import type { NotificationDelivery, NotificationEvent } from "@deploybot/protocol";
import { Redactor } from "@deploybot/protocol/redact";
import type { Logger } from "pino";
import { and, asc, count, desc, eq, gt, inArray, lt, lte, ne, sql } from "drizzle-orm";
import { reusable } from "../db/reusable";
import { appEvents, notificationAttempts, notificationDeliveries } from "../db/schema";
import { newId } from "../lib/ids";
import { type Deps, iso } from "./deps";
import type { NotificationsConfig, NotificationTarget } from "./notificationConfig";
import { AddressRefused, postJson, signature } from "./notificationHttp";
import type { OutboxEvent } from "./outbox";
import type { IngestRedaction } from "./redaction";

/** The change events notifications are made from (the drainer hands each to `enqueue`). */
export const NOTIFYING_TYPES = ["deployment.changed", "app.reconciled", "host.online", "host.offline", "run.changed", "agent.updated"] as const;

/** An app that exited (or failed to start, or was stopped unhealthy) this often within the window is crash-looping. */
const CRASH_LOOP_EXITS = 3;
const CRASH_LOOP_WINDOW_MS = 10 * 60_000;
/** a crash loop notifies once per app, host and hour however long it goes on */
const CRASH_LOOP_QUIET_MS = 3600_000;

interface Notice {
  event: NotificationEvent;
  /** one delivery per target and key: a repeated change event notifies once */
  dedupKey: string;
  summary: string;
}

type DeliveryRow = {
  id: string;
  target: string;
  type: "webhook" | "slack";
  event: NotificationEvent;
  app: string | null;
  summary: string;
  body: string;
  status: NotificationDelivery["status"];
  attempts: number;
  nextAttemptAt: number | null;
  lastError: string | null;
  createdAt: number;
  deliveredAt: number | null;
};

type AttemptRow = { deliveryId: string; attempt: number; at: number; durationMs: number; statusCode: number | null; outcome: "delivered" | "failed" | "refused"; error: string | null };

/**
 * Notifications to webhook and Slack-compatible targets (apps.yaml `notifications:`). They are
 * outbox consumers like every other consequence: the drainer turns a committed change into one
 * delivery row per interested target, in the transaction that moves its cursor, so a change
 * notifies each target once, also across a crash. Sending happens here, after the commit and
 * never in the path of a deploy: a receiver that is down delays only its own deliveries.
 * Every attempt is recorded. A receiver can still see a delivery twice (the process dies after
 * the receiver answered and before the answer was recorded): the delivery id is the same, so it
 * can drop the repeat.
 */
export class NotificationService {
  private readonly logger: Logger;
  private readonly recentExits;
  private readonly inFlight = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: Deps,
    private readonly redaction: Pick<IngestRedaction, "forApp">,
  ) {
    this.logger = deps.logger.child({ component: "notifications" });
    const { db } = deps;
    const p = sql.placeholder;
    // a crash-looping check runs for every exit event, in the drainer's transaction
    this.recentExits = reusable(db, () =>
      db
        .select({ n: count() })
        .from(appEvents)
        .where(
          and(
            eq(appEvents.app, p("app")),
            eq(appEvents.host, p("host")),
            inArray(appEvents.kind, ["exited", "start_failed", "unhealthy"]),
            gt(appEvents.at, p("from")),
            lte(appEvents.at, p("to")),
          ),
        )
        .prepare(),
    );
  }

  private get config(): NotificationsConfig {
    return this.deps.apps().notifications;
  }

  /**
   * The drainer's `db` consequence: the deliveries one change event makes. Synchronous, inside
   * the drainer's transaction; idempotent through the dedup key.
   */
  async enqueue(event: OutboxEvent): Promise<void> {
    const { targets } = this.config;
    if (targets.length === 0) return;
    const notice = await this.noticeOf(event);
    if (!notice) return;
    const redactor = event.app ? await this.redaction.forApp(event.app) : null;
    const summary = redactor ? redactor.redact(notice.summary) : notice.summary;
    const data = redactor ? redactor.redactDeep(event.data) : event.data;
    const now = this.deps.clock();
    for (const target of targets) {
      if (!target.events.includes(notice.event)) continue;
      if (event.app && target.apps && !target.apps.includes(event.app)) continue;
      const id = newId("ntf");
      const body =
        target.type === "webhook"
          ? { id, event: notice.event, at: new Date(event.createdAt).toISOString(), app: event.app, summary, data }
          : slackBody(notice.event, summary, event, id);
      await this.deps.db
        .insert(notificationDeliveries)
        .values({ id, target: target.name, type: target.type, event: notice.event, dedupKey: notice.dedupKey, eventId: event.id, app: event.app, summary, body: JSON.stringify(body), status: "pending", attempts: 0, nextAttemptAt: now, createdAt: now })
        .onConflictDoNothing({ target: [notificationDeliveries.target, notificationDeliveries.dedupKey] });
    }
  }

  /** What a change event notifies of, if anything. */
  private async noticeOf(event: OutboxEvent): Promise<Notice | null> {
    const d = event.data as Record<string, unknown>;
    const str = (k: string) => (typeof d[k] === "string" ? (d[k] as string) : null);
    switch (event.type) {
      case "deployment.changed": {
        const id = str("id") ?? event.subject ?? "";
        const hosts = Array.isArray(d.hosts) ? (d.hosts as string[]).join(", ") : "";
        if (d.status === "succeeded") {
          return d.trigger === "rollback"
            ? { event: "deployment.rolled_back", dedupKey: `deployment:${id}:succeeded`, summary: `${event.app}: rolled back to release ${str("releaseId") ?? "?"} on ${hosts} (deployment ${id})` }
            : { event: "deployment.succeeded", dedupKey: `deployment:${id}:succeeded`, summary: `${event.app}: deployed ${describeImage(d)} to ${hosts} (deployment ${id})` };
        }
        if (d.status === "failed") {
          const what = d.trigger === "rollback" ? "rollback" : "deployment";
          return { event: "deployment.failed", dedupKey: `deployment:${id}:failed`, summary: `${event.app}: ${what} ${id} failed${str("error") ? `: ${str("error")}` : ""}` };
        }
        return null;
      }
      case "app.reconciled": {
        const host = str("host");
        if (!event.app || !host || !["exited", "start_failed", "unhealthy"].includes(str("kind") ?? "")) return null;
        const parsed = Date.parse(str("at") ?? "");
        const at = Number.isNaN(parsed) ? event.createdAt : parsed;
        const [{ n: exits } = { n: 0 }] = await this.recentExits().execute({ app: event.app, host, from: at - CRASH_LOOP_WINDOW_MS, to: at });
        if (exits < CRASH_LOOP_EXITS) return null;
        return {
          event: "app.crash_looping",
          dedupKey: `crash:${event.app}@${host}:${Math.floor(at / CRASH_LOOP_QUIET_MS)}`,
          summary: `${event.app} is crash-looping on ${host}: ${exits} exits in ${CRASH_LOOP_WINDOW_MS / 60_000} minutes; last: ${str("reason") ?? "?"}`,
        };
      }
      case "host.offline":
        return { event: "host.offline", dedupKey: `host:${event.id}`, summary: `host ${str("hostname")} is offline (no heartbeat for three intervals)` };
      case "host.online":
        // a host's first registration is not a host coming back
        return d.first === true ? null : { event: "host.online", dedupKey: `host:${event.id}`, summary: `host ${str("hostname")} is back online` };
      case "run.changed": {
        if (d.trigger !== "schedule" || !["failed", "lost", "timed_out"].includes(str("status") ?? "")) return null;
        const why = str("error") ?? str("reason") ?? (typeof d.exitCode === "number" ? `exit code ${d.exitCode}` : null);
        return {
          event: "run.failed",
          dedupKey: `run:${str("id")}`,
          summary: `${event.app}: scheduled run ${str("id")} of '${str("schedule")}' ${str("status")?.replace("_", " ")}${why ? `: ${why}` : ""}`,
        };
      }
      case "agent.updated":
        return { event: "agent.updated", dedupKey: `agent:${event.id}`, summary: `agent on ${str("hostname")} updated from ${str("from")} to ${str("to")}` };
      default:
        return null;
    }
  }

  /** After the drainer made deliveries: send them now rather than at the next tick (when started). */
  kick(): void {
    if (!this.timer || this.kicked) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      this.tick();
    });
  }

  private kicked = false;

  private tick(): void {
    this.sendDue().catch((err: unknown) => this.logger.error({ err }, "sending notifications failed; trying again"));
  }

  /** Deletes deliveries that ended more than `keepMs` ago, with their attempts. */
  async prune(keepMs: number): Promise<number> {
    const cutoff = this.deps.clock() - keepMs;
    const ended = and(ne(notificationDeliveries.status, "pending"), lt(notificationDeliveries.createdAt, cutoff));
    const { db } = this.deps;
    return db.write(async () => {
      await db.delete(notificationAttempts).where(inArray(notificationAttempts.deliveryId, db.select({ id: notificationDeliveries.id }).from(notificationDeliveries).where(ended)));
      return (await db.delete(notificationDeliveries).where(ended).returning({ id: notificationDeliveries.id })).length;
    });
  }

  /** Sends every delivery that is due; resolves when those attempts are recorded. */
  async sendDue(): Promise<void> {
    const rows = (await this.deps.db
      .select()
      .from(notificationDeliveries)
      .where(lte(notificationDeliveries.nextAttemptAt, this.deps.clock()))
      // ties (one change, several events) by the event's outbox order: SQLite returned them in
      // insertion order by itself, PostgreSQL in any order
      .orderBy(asc(notificationDeliveries.nextAttemptAt), asc(notificationDeliveries.eventId), asc(notificationDeliveries.id))
      .limit(100)) as DeliveryRow[];
    const runs: Promise<void>[] = [];
    for (const row of rows) {
      if (this.inFlight.has(row.id)) continue;
      const run = this.claimed(row)
        .then((mine) => (mine ? this.attempt(row) : undefined))
        .finally(() => this.inFlight.delete(row.id));
      this.inFlight.set(row.id, run);
      runs.push(run);
    }
    await Promise.all(runs);
  }

  /**
   * Takes a due delivery for one attempt: moves its next attempt past the attempt's timeout,
   * unless another pass already did. Two passes of one sender overlap (the timer and the
   * drainer's kick): a pass whose read came before the other's attempt was recorded still saw
   * the delivery due, and sent it a second time. A controller dying mid-attempt leaves it due
   * again once that time is past.
   */
  private async claimed(row: DeliveryRow): Promise<boolean> {
    const until = this.deps.clock() + this.config.timeout_seconds * 1000 + 5_000;
    const taken = await this.deps.db
      .update(notificationDeliveries)
      .set({ nextAttemptAt: until })
      .where(and(eq(notificationDeliveries.id, row.id), eq(notificationDeliveries.status, "pending"), eq(notificationDeliveries.attempts, row.attempts), lte(notificationDeliveries.nextAttemptAt, this.deps.clock())))
      .returning({ id: notificationDeliveries.id });
    return taken.length > 0;
  }

  /** Sends due deliveries every `everyMs` (and right away) until stop(). */
  start(everyMs = 1_000): void {
    this.timer = setInterval(() => this.tick(), everyMs);
    this.timer.unref();
    this.tick();
  }

  /** Stops the timer and waits for the attempts under way (each is bounded by timeout_seconds). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all(this.inFlight.values());
  }

  private async attempt(row: DeliveryRow): Promise<void> {
    const config = this.config;
    const target = config.targets.find((t) => t.name === row.target);
    const startedAt = this.deps.clock();
    if (!target || target.type !== row.type) {
      await this.finish(row, { status: "dropped", error: `target '${row.target}' is no longer configured (as a ${row.type} target)`, startedAt, statusCode: null, outcome: null });
      return;
    }
    // a slack URL's path is its token; a webhook's secret is its key
    const redactor = new Redactor(target.secret, target.url, target.type === "slack" ? new URL(target.url).pathname : undefined);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const headers: Record<string, string> =
      target.type === "webhook"
        ? { "x-deploybot-event": row.event, "x-deploybot-delivery": row.id, "x-deploybot-timestamp": timestamp, "x-deploybot-signature-256": signature(target.secret!, timestamp, row.body) }
        : {};
    const started = performance.now();
    let statusCode: number | null = null;
    let outcome: "delivered" | "failed" | "refused";
    let error: string | null = null;
    try {
      const res = await postJson(target.url, row.body, headers, { allowPrivate: target.allow_private, timeoutMs: config.timeout_seconds * 1000 });
      statusCode = res.statusCode;
      if (res.statusCode >= 200 && res.statusCode < 300) outcome = "delivered";
      else {
        outcome = "failed";
        error = `HTTP ${res.statusCode}${res.body ? `: ${res.body.replace(/\s+/g, " ").slice(0, 300)}` : ""}`;
      }
    } catch (err) {
      outcome = err instanceof AddressRefused ? "refused" : "failed";
      const e = err as NodeJS.ErrnoException;
      error = e.code && !(err instanceof AddressRefused) && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message;
    }
    const durationMs = Math.round(performance.now() - started);
    if (error) error = redactor.redact(error).slice(0, 500);
    const attempts = row.attempts + 1;
    if (outcome === "delivered") {
      await this.finish(row, { status: "delivered", error: null, startedAt, durationMs, statusCode, outcome });
      this.logger.info({ deliveryId: row.id, target: row.target, event: row.event, attempts }, "notification delivered");
      return;
    }
    if (outcome === "refused") {
      // the address will not become allowed by waiting: the target needs allow_private, or another URL
      await this.finish(row, { status: "refused", error, startedAt, durationMs, statusCode, outcome });
      this.logger.warn({ deliveryId: row.id, target: row.target, error }, "notification refused: the target's address is not allowed");
      return;
    }
    const delay = Math.min(config.first_retry_seconds * 1000 * 2 ** (attempts - 1), config.max_backoff_seconds * 1000);
    // jitter: deliveries that failed together (a receiver outage) do not all come back together
    const nextAt = startedAt + Math.round(delay * (0.8 + Math.random() * 0.4));
    const giveUp = nextAt > row.createdAt + config.retry_for_seconds * 1000;
    await this.finish(row, { status: giveUp ? "failed" : "pending", error, startedAt, durationMs, statusCode, outcome, nextAt });
    const log = { deliveryId: row.id, target: row.target, event: row.event, attempts, error };
    if (giveUp) this.logger.error(log, "a notification failed for the last time; giving up");
    else this.logger.warn({ ...log, retryInMs: nextAt - startedAt }, "a notification failed; retrying with backoff");
  }

  /** Records an attempt (when one was made) and the delivery's new state, together. */
  private async finish(
    row: DeliveryRow,
    r: { status: NotificationDelivery["status"]; error: string | null; startedAt: number; statusCode: number | null; outcome: AttemptRow["outcome"] | null; durationMs?: number; nextAt?: number },
  ): Promise<void> {
    await this.deps.db.write(async () => {
      const attempts = r.outcome ? row.attempts + 1 : row.attempts;
      if (r.outcome) {
        await this.deps.db
          .insert(notificationAttempts)
          .values({ deliveryId: row.id, attempt: attempts, at: r.startedAt, durationMs: r.durationMs ?? 0, statusCode: r.statusCode, outcome: r.outcome, error: r.error });
      }
      await this.deps.db
        .update(notificationDeliveries)
        .set({
          status: r.status,
          attempts,
          nextAttemptAt: r.status === "pending" ? (r.nextAt ?? null) : null,
          lastError: r.error,
          deliveredAt: r.status === "delivered" ? this.deps.clock() : null,
        })
        .where(and(eq(notificationDeliveries.id, row.id), eq(notificationDeliveries.status, "pending")));
    });
  }

  /**
   * Deliveries, newest first, each with its attempts. `apps` (a token limited to apps): only
   * deliveries about those apps; host and agent events concern every app and are left out.
   */
  async list(q: { target?: string; status?: string; event?: string; id?: string; limit: number; apps?: readonly string[] | null }): Promise<NotificationDelivery[]> {
    // a token limited to no app sees nothing (as `app IN (NULL)` did)
    if (q.apps && q.apps.length === 0) return [];
    const t = notificationDeliveries;
    const where = [
      q.target !== undefined ? eq(t.target, q.target) : undefined,
      q.status !== undefined ? eq(t.status, q.status) : undefined,
      q.event !== undefined ? eq(t.event, q.event) : undefined,
      q.id !== undefined ? eq(t.id, q.id) : undefined,
      q.apps ? inArray(t.app, [...q.apps]) : undefined,
    ];
    const rows = (await this.deps.db
      .select()
      .from(t)
      .where(and(...where))
      .orderBy(desc(t.createdAt), desc(t.id))
      .limit(q.limit)) as DeliveryRow[];
    if (rows.length === 0) return [];
    const attempts = (await this.deps.db
      .select()
      .from(notificationAttempts)
      .where(inArray(notificationAttempts.deliveryId, rows.map((r) => r.id)))
      .orderBy(asc(notificationAttempts.deliveryId), asc(notificationAttempts.attempt))) as AttemptRow[];
    const byDelivery = new Map<string, AttemptRow[]>();
    for (const a of attempts) byDelivery.set(a.deliveryId, [...(byDelivery.get(a.deliveryId) ?? []), a]);
    return rows.map((r) => ({
      id: r.id,
      target: r.target,
      type: r.type,
      event: r.event,
      app: r.app,
      summary: r.summary,
      status: r.status,
      attempts: r.attempts,
      nextAttemptAt: iso(r.nextAttemptAt),
      lastError: r.lastError,
      createdAt: iso(r.createdAt)!,
      deliveredAt: iso(r.deliveredAt),
      history: (byDelivery.get(r.id) ?? []).map((a) => ({
        attempt: a.attempt,
        at: iso(a.at)!,
        durationMs: a.durationMs,
        statusCode: a.statusCode,
        outcome: a.outcome,
        error: a.error,
      })),
    }));
  }

  /** One delivery with its attempts (seen through `apps` as `list` does). */
  async get(id: string, apps?: readonly string[] | null): Promise<NotificationDelivery | undefined> {
    return (await this.list({ id, limit: 1, apps }))[0];
  }
}

function describeImage(d: Record<string, unknown>): string {
  if (typeof d.sha === "string") return d.sha.slice(0, 12);
  if (typeof d.image === "string") return d.image;
  return "a new release";
}

const ICONS: Record<NotificationEvent, string> = {
  "deployment.succeeded": ":white_check_mark:",
  "deployment.failed": ":x:",
  "deployment.rolled_back": ":leftwards_arrow_with_hook:",
  "app.crash_looping": ":rotating_light:",
  "host.offline": ":red_circle:",
  "host.online": ":large_green_circle:",
  "run.failed": ":warning:",
  "agent.updated": ":arrows_counterclockwise:",
};

/**
 * The Slack incoming-webhook body: `text` carries the whole message (Mattermost and Discord's
 * /slack endpoint show it; Slack uses it for notifications), `blocks` lay it out in Slack.
 */
export function slackBody(event: NotificationEvent, summary: string, change: Pick<OutboxEvent, "createdAt">, deliveryId: string) {
  const text = escapeMrkdwn(`${ICONS[event]} deploybot: ${summary}`);
  return {
    text,
    blocks: [
      { type: "section", text: { type: "mrkdwn", text } },
      { type: "context", elements: [{ type: "mrkdwn", text: `${event} · ${new Date(change.createdAt).toISOString()} · ${deliveryId}` }] },
    ],
  };
}

/** Slack's mrkdwn treats &, < and > as markup: a summary with an error message must not link or mention anyone. */
function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export type { NotificationTarget };
