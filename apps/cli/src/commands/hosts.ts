import { agent } from "@deploybot/protocol";
import { z } from "zod";
import type { Command } from "../command";
import { age } from "../output";

export const hostList = z.object({ hosts: z.array(agent) });

export const hosts: Command = {
  name: "hosts",
  summary: "List the registered agents: online or offline, state, current job, labels.",
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
    return 0;
  },
};
