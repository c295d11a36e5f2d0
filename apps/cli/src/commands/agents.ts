import { agent } from "@deploybot/protocol";
import { z } from "zod";
import { usageError } from "../client";
import { type Command, seg, stringOption } from "../command";

export const agentsRevoke: Command = {
  name: "agents revoke",
  summary: "Revoke a host's agent: its token dies at once and it may not register again (admin).",
  usage: "HOST",
  positionals: { names: ["HOST"], required: 1 },
  notes: ["HOST is the agent's host name (or its id). To let it join again: deploybot agents remove HOST."],
  examples: ["deploybot agents revoke web-1"],
  async run(ctx, _values, [host]) {
    const answer = await ctx.client().post(`/v1/agents/${seg(host!)}/revoke`, z.object({ agent }));
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const a = answer.data.agent;
    ctx.out.line(`host ${a.hostname} (${a.id}) ${ctx.out.paint.red("revoked")}: its token no longer works`);
    if (a.currentJobId) ctx.out.note(`it held job ${a.currentJobId}; that job will end lost unless it is cancelled`);
    return 0;
  },
};

export const agentsRemove: Command = {
  name: "agents remove",
  summary: "Forget a host entirely, so its agent can register afresh (admin).",
  usage: "HOST",
  positionals: { names: ["HOST"], required: 1 },
  notes: ["A host that holds a job answers 409 agent_busy (exit 6): cancel the job first."],
  examples: ["deploybot agents remove web-1"],
  async run(ctx, _values, [host]) {
    await ctx.client().delete(`/v1/agents/${seg(host!)}`, z.null());
    if (ctx.out.json) {
      // the API answers 204 with no body; scripts still get one document
      ctx.out.printJson({ removed: host });
      return 0;
    }
    ctx.out.line(`host ${host} removed`);
    return 0;
  },
};

const installCommandAnswer = z.object({ url: z.string(), command: z.string(), note: z.string() });

export const agentsInstallCommand: Command = {
  name: "agents install-command",
  summary: "Print the command that installs an agent on a new host (it contains the join token; admin).",
  usage: "[--url URL] [--labels L]",
  options: {
    url: { type: "string", value: "URL", description: "the controller URL the agent will use (default: the one the controller sees)" },
    labels: { type: "string", value: "L", description: "comma-separated agent labels, e.g. builder,eu" },
  },
  notes: ["The command goes to stdout alone, so it can be piped; treat it as a secret."],
  examples: ["deploybot agents install-command --url https://deploy.example.com --labels builder", "deploybot agents install-command --json | jq -r .command"],
  async run(ctx, values) {
    const query = new URLSearchParams();
    const url = stringOption(values, "url");
    const labels = stringOption(values, "labels");
    if (url !== undefined) query.set("url", url);
    if (labels !== undefined) query.set("labels", labels);
    const qs = query.toString();
    const answer = await ctx.client().get(`/v1/agents/install-command${qs ? `?${qs}` : ""}`, installCommandAnswer);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    ctx.out.note(`${answer.data.note} (controller: ${answer.data.url})`);
    ctx.out.line(answer.data.command);
    return 0;
  },
};

const joinTokenAnswer = z.object({
  joinToken: z.object({ id: z.string(), token: z.string(), hostname: z.string().nullable(), singleUse: z.boolean(), expiresAt: z.string() }).passthrough(),
});

export const agentsJoinToken: Command = {
  name: "agents join-token",
  summary: "Create a join token for one new host, single-use by default (admin). The token is shown once.",
  usage: "[--host NAME] [--reusable] [--ttl SECONDS]",
  options: {
    host: { type: "string", value: "NAME", description: "the one host name it registers; it may also replace that host's identity (a reinstalled server)" },
    reusable: { type: "boolean", description: "usable until it expires, not once" },
    ttl: { type: "string", value: "SECONDS", description: "lifetime (default 86400, at most 30 days)" },
  },
  notes: [
    "The shared DEPLOYBOT_JOIN_TOKEN registers new host names only; a host that exists re-registers with its own token.",
    "Give the token to the new host as DEPLOYBOT_JOIN_TOKEN.",
  ],
  examples: ["deploybot agents join-token --host web-3", "deploybot agents join-token --host web-1 --json | jq -r .joinToken.token"],
  async run(ctx, values) {
    const host = stringOption(values, "host");
    const ttl = stringOption(values, "ttl");
    const ttlSeconds = ttl === undefined ? undefined : Number(ttl);
    if (ttlSeconds !== undefined && !Number.isInteger(ttlSeconds)) throw usageError(`--ttl must be a whole number of seconds; got '${ttl}'`);
    const body = { ...(host ? { host } : {}), singleUse: values.reusable !== true, ...(ttlSeconds !== undefined ? { ttlSeconds } : {}) };
    const answer = await ctx.client().post("/v1/agents/join-tokens", joinTokenAnswer, body);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const t = answer.data.joinToken;
    ctx.out.note(`join token ${t.id} for ${t.hostname ? `host ${t.hostname}` : "any new host"}, ${t.singleUse ? "single-use" : "reusable"}, expires ${t.expiresAt}`);
    ctx.out.line(t.token);
    return 0;
  },
};
