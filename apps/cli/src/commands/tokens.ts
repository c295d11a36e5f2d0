import { apiToken, tokenScope } from "@deploybot/protocol";
import { z } from "zod";
import { usageError } from "../client";
import { type Command, requiredOption, seg, stringOption } from "../command";
import { age } from "../output";

const createdToken = apiToken.extend({ token: z.string() });

export const tokensCreate: Command = {
  name: "tokens create",
  summary: "Create an API token (admin scope needed). The secret is shown once.",
  usage: "--name N --scope admin|deploy|read|metrics [--apps A,B]",
  options: {
    name: { type: "string", value: "N", description: "what the token is for, e.g. ci-web" },
    scope: { type: "string", value: "S", description: "admin (everything), deploy (submit and cancel jobs), read, or metrics (GET /metrics only, for Prometheus)" },
    apps: { type: "string", value: "A,B", description: "limit the token to these apps (deploy and read scopes): it acts on and sees nothing else" },
  },
  notes: ["A deploy token for an app can run that app's code with that app's secrets; an --apps limit keeps it to that app."],
  examples: ["deploybot tokens create --name ci-web --scope deploy --apps web", "deploybot tokens create --name grafana --scope read --json | jq -r .token"],
  async run(ctx, values) {
    const name = requiredOption(this, values, "name");
    const scope = requiredOption(this, values, "scope");
    if (!tokenScope.safeParse(scope).success) throw usageError(`--scope must be one of ${tokenScope.options.join(", ")}; got '${scope}'`);
    const appsOption = stringOption(values, "apps");
    const apps = appsOption?.split(",").map((a) => a.trim()).filter(Boolean);
    const answer = await ctx.client().post("/v1/tokens", createdToken, { name, scope, ...(apps ? { apps } : {}) });
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const t = answer.data;
    ctx.out.fields([
      ["id", t.id],
      ["name", t.name],
      ["scope", t.scope],
      ["apps", t.apps ? t.apps.join(", ") : "all"],
      ["token", ctx.out.paint.bold(t.token)],
    ]);
    ctx.out.note("store the token now: the controller keeps only its hash and cannot show it again");
    return 0;
  },
};

export const tokensList: Command = {
  name: "tokens list",
  summary: "List API tokens (never their secrets; admin scope needed).",
  usage: "",
  examples: ["deploybot tokens list", "deploybot tokens list --json | jq -r '.tokens[] | select(.revokedAt == null) | .id'"],
  async run(ctx) {
    const answer = await ctx.client().get("/v1/tokens", z.object({ tokens: z.array(apiToken) }));
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    if (answer.data.tokens.length === 0) {
      ctx.out.note("no API tokens yet (the bootstrap DEPLOYBOT_ADMIN_TOKEN is not listed)");
      return 0;
    }
    const { paint } = ctx.out;
    ctx.out.table(
      ["ID", "NAME", "SCOPE", "APPS", "CREATED", "LAST USED", "STATE"],
      answer.data.tokens.map((t) => [
        t.id,
        t.name,
        t.scope,
        t.apps ? t.apps.join(",") : "all",
        age(t.createdAt),
        age(t.lastUsedAt),
        t.revokedAt ? paint.red(`revoked ${age(t.revokedAt)}`) : paint.green("active"),
      ]),
    );
    return 0;
  },
};

export const tokensRevoke: Command = {
  name: "tokens revoke",
  summary: "Revoke an API token at once (admin scope needed).",
  usage: "ID",
  positionals: { names: ["ID"], required: 1 },
  examples: ["deploybot tokens revoke tok_01J9Z8"],
  async run(ctx, _values, [id]) {
    const answer = await ctx.client().delete(`/v1/tokens/${seg(id!)}`, apiToken);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    ctx.out.line(`token ${answer.data.id} (${answer.data.name}) ${ctx.out.paint.red("revoked")}`);
    return 0;
  },
};
