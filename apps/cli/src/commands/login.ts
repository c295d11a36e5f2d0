import { agent } from "@deploybot/protocol";
import { z } from "zod";
import { ApiClient, usageError } from "../client";
import { type Command, requiredOption } from "../command";
import { saveStoredConfig } from "../config";

export const login: Command = {
  name: "login",
  summary: "Check a controller URL and API token, then remember them for later commands.",
  usage: "--url URL --token TOKEN",
  options: {
    url: { type: "string", value: "URL", description: "the controller, e.g. https://deploy.example.com" },
    token: { type: "string", value: "TOKEN", description: "an API token (deploybot tokens create, or DEPLOYBOT_ADMIN_TOKEN)" },
  },
  notes: [
    "The token is checked with GET /v1/hosts (any scope passes) and stored in",
    "$XDG_CONFIG_HOME/deploybot/config.json (default ~/.config/deploybot/config.json, mode 0600).",
    "DEPLOYBOT_URL and DEPLOYBOT_TOKEN, when set, win over the stored login.",
  ],
  examples: ["deploybot login --url http://127.0.0.1:8080 --token \"$DEPLOYBOT_ADMIN_TOKEN\""],
  async run(ctx, values) {
    const url = requiredOption(this, values, "url");
    const token = requiredOption(this, values, "token");
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw usageError(`--url '${url}' is not a URL (try http://HOST:8080)`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw usageError(`--url must be http:// or https://, got '${url}'`);
    const normalized = url.replace(/\/+$/, "");

    const answer = await new ApiClient(normalized, token, ctx.signal).get("/v1/hosts", z.object({ hosts: z.array(agent) }));
    const file = saveStoredConfig(ctx.env, { url: normalized, token });
    if (ctx.out.json) {
      // login has no API answer of its own: this says what was stored, never the token.
      ctx.out.printJson({ url: normalized, configFile: file, hosts: answer.data.hosts.length });
      return 0;
    }
    ctx.out.line(`${ctx.out.paint.green("logged in")} to ${normalized} (${answer.data.hosts.length} host(s) registered)`);
    ctx.out.line(ctx.out.paint.dim(`saved to ${file}`));
    if (ctx.env.DEPLOYBOT_URL || ctx.env.DEPLOYBOT_TOKEN) ctx.out.note("note: DEPLOYBOT_URL / DEPLOYBOT_TOKEN are set and still win over the saved login");
    return 0;
  },
};
