import { webhookDeliveryList, webhookReply, queryNumber } from "@deploybot/protocol";
import { z } from "zod";
import { fails, guards, json, newRouter, route } from "../openapi/route";
import type { Services } from "../services";

const listDeliveriesQuery = z.object({ limit: queryNumber(z.coerce.number().int().min(1).max(200).default(50)) });

/** GitHub calls in (authenticated by its signature, not a token); users read what was decided. */
export function webhookRoutes(s: Services) {
  const { open, read } = guards(s);
  return newRouter()
    .openapi(
      route({
        method: "post",
        path: "/github",
        guard: open,
        summary: "GitHub push webhook: HMAC SHA-256 signed, deduplicated by X-GitHub-Delivery",
        description: "The body is GitHub's payload as sent (JSON, or form-encoded `payload=`); the signature covers its raw bytes.",
        // described, not validated here: nothing is parsed before the signature over the raw body matches
        parameters: [
          { name: "X-GitHub-Event", in: "header", required: true, schema: { type: "string" }, description: "push or ping; others are ignored" },
          { name: "X-GitHub-Delivery", in: "header", required: true, schema: { type: "string" }, description: "the delivery id, deduplicated" },
          { name: "X-Hub-Signature-256", in: "header", required: true, schema: { type: "string" }, description: "sha256=<hex HMAC of the raw body>" },
        ],
        request: {
          body: {
            required: true,
            content: {
              "application/json": { schema: { type: "object", description: "GitHub's push or ping event payload" } },
              "application/x-www-form-urlencoded": { schema: { type: "object", properties: { payload: { type: "string" } } } },
            },
          },
        },
        responses: {
          200: json(webhookReply, "handled: ignored, pong, or a redelivery (duplicate: true)"),
          202: json(webhookReply, "a deployment was started, or the event is not handled"),
          ...fails({
            400: "missing headers or unreadable payload",
            401: "bad signature",
            413: "body over 25 MB",
            503: "no webhook secret configured, or too many bodies being received (Retry-After)",
          }),
        },
      }),
      async (c) => {
        // the signature covers the exact bytes sent: the body is hashed as it streams, and read as
        // text only once the signature holds
        const answer = await s.webhooks.receive({
          event: c.req.header("x-github-event"),
          deliveryId: c.req.header("x-github-delivery"),
          signature: c.req.header("x-hub-signature-256"),
          contentType: c.req.header("content-type"),
          body: c.req.raw.body,
        });
        return answer.status === 202 ? c.json(answer.body, 202) : c.json(answer.body, 200);
      },
    )
    .openapi(
      route({
        method: "get",
        path: "/deliveries",
        guard: read,
        summary: "Recent webhook deliveries and what was decided",
        request: { query: listDeliveriesQuery },
        responses: { 200: json(webhookDeliveryList, "the deliveries"), ...fails({ 400: "invalid query" }) },
      }),
      async (c) => c.json({ deliveries: await s.webhooks.list(c.req.valid("query").limit) }, 200),
    );
}
