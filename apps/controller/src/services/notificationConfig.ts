import { name, notificationEvent } from "@deploybot/protocol";
import { z } from "zod";

/** One place notifications go: a signed JSON webhook, or a Slack-compatible incoming webhook. */
const notificationTarget = z
  .object({
    name,
    type: z.enum(["webhook", "slack"]),
    /** http(s) only; for slack the URL itself is the secret (redacted wherever it could show) */
    url: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//i.test(u), "must be an http:// or https:// URL"),
    /** webhook: the HMAC-SHA256 key of X-Deploybot-Signature-256 (at least 16 characters) */
    secret: z.string().min(16, "must be at least 16 characters").optional(),
    events: z.array(notificationEvent).min(1),
    /** only these apps' events (host and agent events have no app and always pass) */
    apps: z.array(name).optional(),
    /** allow an address in a loopback, link-local or private range (a receiver on this machine or the LAN) */
    allow_private: z.boolean().default(false),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.type === "webhook" && !t.secret) ctx.addIssue({ code: "custom", path: ["secret"], message: "a webhook target needs a secret (its deliveries are signed with it)" });
    if (t.type === "slack" && t.secret) ctx.addIssue({ code: "custom", path: ["secret"], message: "a slack target has no secret: its URL is the secret" });
  });
export type NotificationTarget = z.infer<typeof notificationTarget>;

export const notificationsSection = z
  .object({
    targets: z.array(notificationTarget).default([]),
    /** a delivery that still fails this long after the change is given up (status failed) */
    retry_for_seconds: z.number().int().min(1).max(7 * 86_400).default(86_400),
    /** the first retry waits this long, each next one twice as long, up to max_backoff_seconds (±20% jitter) */
    first_retry_seconds: z.number().min(0.1).max(3600).default(10),
    max_backoff_seconds: z.number().min(0.1).max(86_400).default(600),
    /** one attempt waits this long for the receiver's answer */
    timeout_seconds: z.number().min(0.5).max(120).default(10),
  })
  .strict()
  .superRefine((n, ctx) => {
    const seen = new Set<string>();
    n.targets.forEach((t, i) => {
      if (seen.has(t.name)) ctx.addIssue({ code: "custom", path: ["targets", i, "name"], message: `duplicate target name '${t.name}'` });
      seen.add(t.name);
    });
  });
export type NotificationsConfig = z.infer<typeof notificationsSection>;

export const noNotifications: NotificationsConfig = notificationsSection.parse({});
