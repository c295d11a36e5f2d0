import { z } from "zod";
import { name, queryNumber } from "./schemas";

/**
 * What a notification target can subscribe to (`events:` of a target in apps.yaml). Each is
 * derived from the controller's change events (events.ts) by the controller.
 */
export const notificationEvents = [
  "deployment.succeeded",
  "deployment.failed",
  "deployment.rolled_back",
  "app.crash_looping",
  "host.offline",
  "host.online",
  "run.failed",
  "agent.updated",
] as const;
export const notificationEvent = z.enum(notificationEvents);
export type NotificationEvent = z.infer<typeof notificationEvent>;

/** `pending` waits for its next attempt; `refused` was never sent (the address is not allowed); `dropped`: its target was removed. */
export const notificationDeliveryStatuses = ["pending", "delivered", "failed", "refused", "dropped"] as const;

export const notificationAttempt = z.object({
  attempt: z.number().int(),
  at: z.string(),
  durationMs: z.number().int(),
  /** the receiver's HTTP status; null when no answer came (refused, timeout, connection error) */
  statusCode: z.number().int().nullable(),
  outcome: z.enum(["delivered", "failed", "refused"]),
  /** why it failed, or the start of the receiver's answer (secrets redacted) */
  error: z.string().nullable(),
});

export const notificationDelivery = z.object({
  /** sent as X-Deploybot-Delivery and the body's `id`: the same on every attempt, so a receiver can drop repeats */
  id: z.string(),
  target: z.string(),
  type: z.enum(["webhook", "slack"]),
  event: notificationEvent,
  app: z.string().nullable(),
  summary: z.string(),
  status: z.enum(notificationDeliveryStatuses),
  attempts: z.number().int(),
  nextAttemptAt: z.string().nullable(),
  lastError: z.string().nullable(),
  createdAt: z.string(),
  deliveredAt: z.string().nullable(),
  /** every attempt, oldest first */
  history: z.array(notificationAttempt),
});
export type NotificationDelivery = z.infer<typeof notificationDelivery>;

export const notificationDeliveryPage = z.object({ deliveries: z.array(notificationDelivery) });

export const notificationDeliveriesQuery = z.object({
  target: name.optional().describe("only this target's deliveries"),
  status: z.enum(notificationDeliveryStatuses).optional(),
  event: notificationEvent.optional(),
  limit: queryNumber(z.coerce.number().int().min(1).max(500).default(50).describe("newest first")),
});

/** The body a `webhook` target receives (signed: see README, "Notifications"). */
export const notificationWebhookBody = z.object({
  id: z.string(),
  event: notificationEvent,
  /** ISO time of the change */
  at: z.string(),
  app: z.string().nullable(),
  summary: z.string(),
  /** the change event's data (GET /v1/events), secrets redacted */
  data: z.record(z.string(), z.unknown()),
});
export type NotificationWebhookBody = z.infer<typeof notificationWebhookBody>;

export const notificationDeliveryAnswer = z.object({ delivery: notificationDelivery });
