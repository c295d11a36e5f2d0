import { hostList } from "@deploybot/protocol";
import { guards, json, newRouter, route } from "../openapi/route";
import type { Services } from "../services";

export function hostRoutes(s: Services) {
  const { read } = guards(s);
  return newRouter().openapi(
    route({
      method: "get",
      path: "/",
      guard: read,
      summary: "Agents: online or not, labels, capabilities, containers, current job",
      responses: { 200: json(hostList, "the hosts") },
    }),
    async (c) => c.json({ hosts: await s.agents.list() }, 200),
  );
}
