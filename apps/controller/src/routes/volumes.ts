import { listVolumesQuery, volumesAnswer, volumesOnHosts } from "@deploybot/protocol";
import { fails, guards, json, newRouter, route } from "../openapi/route";
import type { Services } from "../services";

export function volumeRoutes(s: Services) {
  const { read } = guards(s);
  return newRouter().openapi(
    route({
      method: "get",
      path: "/",
      guard: read,
      summary: "The apps' named volumes on every host, with their size as the agent last measured it",
      description:
        "One row per named volume per host, from the agents' heartbeats (sizes measured every 5 minutes and after each job). Agents from before volumes report none. A token limited to apps sees only those apps' volumes.",
      request: { query: listVolumesQuery },
      responses: { 200: json(volumesAnswer, "the volumes"), ...fails({ 400: "invalid query" }) },
    }),
    async (c) => {
      const allowed = c.get("user").apps;
      const volumes = volumesOnHosts(await s.agents.list(), c.req.valid("query")).filter((v) => !allowed || allowed.includes(v.app));
      return c.json({ volumes }, 200);
    },
  );
}
