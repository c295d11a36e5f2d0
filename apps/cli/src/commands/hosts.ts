import { agent } from "@deploybot/protocol";
import { z } from "zod";
import type { ApiClient } from "../client";
import type { Command } from "../command";
import { age } from "../output";

export const hostList = z.object({ hosts: z.array(agent) });

/**
 * Why jobs for these hosts would sit pending: no agent of that name has registered (a typo in
 * apps.yaml, an agent not installed yet), or the host is offline. Empty when every host can take
 * them, or when the token may not list hosts.
 */
export async function absentHosts(client: ApiClient, names: readonly string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const listed = await client.get("/v1/hosts", hostList).catch(() => null);
  if (!listed) return [];
  return [...new Set(names)].flatMap((name) => {
    const h = listed.data.hosts.find((x) => x.hostname === name);
    if (!h) return [`no agent called '${name}' has registered: its jobs wait until one does (deploybot hosts; deploybot agents install-command)`];
    if (!h.online) return [`host '${name}' is offline (last heard from ${age(h.lastHeartbeatAt)}): its jobs wait until its agent is back`];
    return [];
  });
}
const reportedContainer = z.object({ id: z.string(), name: z.string().optional(), app: z.string().optional(), release: z.string().optional(), state: z.string().optional(), image: z.string().optional() });

export const hosts: Command = {
  name: "hosts",
  summary: "List the registered agents (online or offline, state, current job, labels) and the containers each runs.",
  usage: "",
  examples: ["deploybot hosts", "deploybot hosts --json | jq -r '.hosts[] | select(.online) | .hostname'"],
  async run(ctx) {
    const answer = await ctx.client().get("/v1/hosts", hostList);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const { paint } = ctx.out;
    if (answer.data.hosts.length === 0) {
      ctx.out.note("no hosts registered yet (start an agent with DEPLOYBOT_URL and DEPLOYBOT_JOIN_TOKEN)");
      return 0;
    }
    ctx.out.table(
      ["HOST", "ONLINE", "STATE", "JOB", "LABELS", "VERSION", "LAST SEEN", "ID"],
      answer.data.hosts.map((h) => [
        h.hostname,
        h.online ? paint.green("online") : paint.red("offline"),
        h.state,
        h.currentJobId ?? "-",
        h.labels.length ? h.labels.join(",") : "-",
        h.version,
        age(h.lastHeartbeatAt),
        h.id,
      ]),
    );
    const containers = answer.data.hosts.flatMap((h) =>
      h.containers.flatMap((c) => {
        const parsed = reportedContainer.safeParse(c);
        return parsed.success ? [[h.hostname, parsed.data.app ?? "-", parsed.data.name ?? parsed.data.id.slice(0, 12), parsed.data.release ?? "-", parsed.data.state ?? "-", parsed.data.image ?? "-"]] : [];
      }),
    );
    ctx.out.line();
    if (containers.length === 0) ctx.out.note("no managed containers on any host");
    else ctx.out.table(["HOST", "APP", "CONTAINER", "RELEASE", "STATE", "IMAGE"], containers);
    return 0;
  },
};
