import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, requireScope } from "../middleware/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";

const listDeliveriesQuery = z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) });

/** GitHub calls in (authenticated by its signature, not a token); users read what was decided. */
export function webhookRoutes(s: Services) {
  const read = requireScope(s.apiTokens, "read");
  return new Hono<AppEnv>()
    .post("/github", async (c) => {
      // the signature covers the exact bytes sent: read the raw text before anything parses it
      const body = await c.req.text();
      const answer = await s.webhooks.receive({
        event: c.req.header("x-github-event"),
        deliveryId: c.req.header("x-github-delivery"),
        signature: c.req.header("x-hub-signature-256"),
        contentType: c.req.header("content-type"),
        body,
      });
      return c.json(answer.body, answer.status);
    })
    .get("/deliveries", read, validate("query", listDeliveriesQuery), (c) =>
      c.json({ deliveries: s.webhooks.list(c.req.valid("query").limit) }),
    );
}
