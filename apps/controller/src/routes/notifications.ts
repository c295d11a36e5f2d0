import { notificationDeliveriesQuery, notificationDeliveryAnswer, notificationDeliveryPage } from "@deploybot/protocol";
import { ApiError } from "../lib/errors";
import { fails, guards, idParam, json, newRouter, route } from "../openapi/route";
import type { Services } from "../services";

export function notificationRoutes(s: Services) {
  const { read } = guards(s);
  return newRouter()
    .openapi(
      route({
        method: "get",
        path: "/deliveries",
        guard: read,
        summary: "Notification deliveries, newest first, each with every attempt (secrets redacted)",
        description: "A token limited to apps sees only those apps' deliveries.",
        request: { query: notificationDeliveriesQuery },
        responses: { 200: json(notificationDeliveryPage, "the deliveries"), ...fails({ 400: "invalid query" }) },
      }),
      async (c) => c.json({ deliveries: await s.notifications.list({ ...c.req.valid("query"), apps: c.get("user").apps }) }, 200),
    )
    .openapi(
      route({
        method: "get",
        path: "/deliveries/{deliveryId}",
        guard: read,
        summary: "One notification delivery with every attempt",
        request: { params: idParam("deliveryId") },
        responses: { 200: json(notificationDeliveryAnswer, "the delivery"), ...fails({ 404: "no such delivery" }) },
      }),
      async (c) => {
        const { deliveryId } = c.req.valid("param");
        const delivery = await s.notifications.get(deliveryId, c.get("user").apps);
        if (!delivery) throw new ApiError(404, "not_found", `no notification delivery '${deliveryId}'`);
        return c.json({ delivery }, 200);
      },
    );
}
