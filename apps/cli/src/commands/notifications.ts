import { type NotificationDelivery, notificationDeliveryAnswer, notificationDeliveryPage, notificationDeliveryStatuses, notificationEvents } from "@deploybot/protocol";
import { usageError } from "../client";
import { type Command, type Context, intOption, seg, stringOption } from "../command";
import { age } from "../output";

function paintStatus(ctx: Context, status: NotificationDelivery["status"]): string {
  const { paint } = ctx.out;
  if (status === "delivered") return paint.green(status);
  if (status === "failed" || status === "refused") return paint.red(status);
  if (status === "pending") return paint.yellow(status);
  return status;
}

function oneOf<T extends string>(values: readonly T[], name: string, v: string | undefined): T | undefined {
  if (v === undefined) return undefined;
  if (!(values as readonly string[]).includes(v)) throw usageError(`--${name} must be one of ${values.join(", ")}, got '${v}'`);
  return v as T;
}

export const notifications: Command = {
  name: "notifications",
  summary: "Notification deliveries to the targets in apps.yaml, newest first: status, attempts, last error; one delivery's attempts.",
  usage: "[DELIVERY] [--target NAME] [--status STATUS] [--event EVENT] [--limit N]",
  positionals: { names: ["DELIVERY"], required: 0 },
  options: {
    target: { type: "string", value: "NAME", description: "only this target's deliveries" },
    status: { type: "string", value: "STATUS", description: `only deliveries in this status (${notificationDeliveryStatuses.join(", ")})` },
    event: { type: "string", value: "EVENT", description: `only this event (${notificationEvents.join(", ")})` },
    limit: { type: "string", value: "N", description: "at most this many (default 20, at most 500)" },
  },
  notes: [
    "pending: waiting for its next attempt (retried with backoff for notifications.retry_for_seconds); failed: given up, no attempt succeeded within retry_for_seconds; refused: the target's address is loopback, link-local or private and the target has no allow_private; dropped: its target was removed from apps.yaml.",
  ],
  examples: [
    "deploybot notifications",
    "deploybot notifications --status failed --target ops",
    "deploybot notifications ntf_01JD4Z3K8Q0000000000000000",
  ],
  async run(ctx, values, [id]) {
    if (id) return showDelivery(ctx, id);
    const q = new URLSearchParams({ limit: String(intOption(values, "limit", 1, 500) ?? 20) });
    const target = stringOption(values, "target");
    const status = oneOf(notificationDeliveryStatuses, "status", stringOption(values, "status"));
    const event = oneOf(notificationEvents, "event", stringOption(values, "event"));
    if (target) q.set("target", target);
    if (status) q.set("status", status);
    if (event) q.set("event", event);
    const answer = await ctx.client().get(`/v1/notifications/deliveries?${q}`, notificationDeliveryPage);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    if (answer.data.deliveries.length === 0) {
      ctx.out.note("no notification deliveries (targets are set under notifications: in apps.yaml)");
      return 0;
    }
    ctx.out.table(
      ["DELIVERY", "TARGET", "EVENT", "STATUS", "ATTEMPTS", "WHEN", "SUMMARY"],
      answer.data.deliveries.map((d) => [d.id, d.target, d.event, paintStatus(ctx, d.status), String(d.attempts), age(d.createdAt), d.summary]),
    );
    for (const d of answer.data.deliveries.filter((x) => x.status !== "delivered" && x.lastError).slice(0, 5)) {
      ctx.out.note(`${d.id}: ${d.lastError}${d.nextAttemptAt ? ` (next attempt ${d.nextAttemptAt})` : ""}`);
    }
    return 0;
  },
};

async function showDelivery(ctx: Context, id: string): Promise<number> {
  const answer = await ctx.client().get(`/v1/notifications/deliveries/${seg(id)}`, notificationDeliveryAnswer);
  if (ctx.out.json) {
    ctx.out.printJson(answer.raw);
    return 0;
  }
  const d = answer.data.delivery;
  ctx.out.fields([
    ["delivery", d.id],
    ["target", `${d.target} (${d.type})`],
    ["event", d.event],
    ["summary", d.summary],
    ["status", paintStatus(ctx, d.status)],
    ["created", d.createdAt],
    ...(d.deliveredAt ? ([["delivered", d.deliveredAt]] as [string, string][]) : []),
    ...(d.nextAttemptAt ? ([["next attempt", d.nextAttemptAt]] as [string, string][]) : []),
    // why it ended without being delivered: a dropped one has no attempt to show it
    ...(d.status !== "delivered" && d.status !== "pending" && d.lastError
      ? ([["why", d.status === "failed" ? `given up: no attempt succeeded within notifications.retry_for_seconds (last: ${d.lastError})` : d.lastError]] as [string, string][])
      : []),
  ]);
  if (d.history.length === 0) return 0;
  ctx.out.line();
  ctx.out.table(
    ["ATTEMPT", "AT", "OUTCOME", "HTTP", "TOOK", "ERROR"],
    d.history.map((a) => [String(a.attempt), a.at, a.outcome, a.statusCode === null ? "-" : String(a.statusCode), `${a.durationMs}ms`, a.error ?? "-"]),
  );
  return 0;
}
