import { agent } from "@deploybot/protocol";
import { z } from "zod";
import { type Command, seg } from "../command";

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
