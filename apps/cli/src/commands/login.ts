import { agent } from "@deploybot/protocol";
import { z } from "zod";
import { ApiClient, CliError, ExitCode } from "../client";
import { type Command, requiredOption } from "../command";
import { controllerUrls, saveStoredConfig } from "../config";

export const login: Command = {
  name: "login",
  summary: "Check a controller URL and API token, then remember them for later commands.",
  usage: "--url URL[,URL...] --token TOKEN",
  options: {
    url: { type: "string", value: "URL", description: "the controller, e.g. https://deploy.example.com; several controllers comma-separated" },
    token: { type: "string", value: "TOKEN", description: "an API token (deploybot tokens create, or DEPLOYBOT_ADMIN_TOKEN)" },
  },
  notes: [
    "The token is checked with GET /v1/hosts (any scope passes) and stored in",
    "$XDG_CONFIG_HOME/deploybot/config.json (default ~/.config/deploybot/config.json, mode 0600).",
    "DEPLOYBOT_URL and DEPLOYBOT_TOKEN, when set, win over the stored login.",
  ],
  examples: [
    "deploybot login --url http://127.0.0.1:8080 --token \"$DEPLOYBOT_ADMIN_TOKEN\"",
    "deploybot login --url https://deploy-a.example.com,https://deploy-b.example.com --token \"$DEPLOYBOT_TOKEN\"",
  ],
  async run(ctx, values) {
    const given = requiredOption(this, values, "url");
    const token = requiredOption(this, values, "token");
    const urls = controllerUrls(given, "--url");
    const normalized = urls.join(",");

    // Each controller of a list is asked on its own: a refused token anywhere is an error now,
    // not at the first failover; one that is down today is only noted.
    let hosts: number | undefined;
    const down: string[] = [];
    for (const url of urls) {
      try {
        const answer = await new ApiClient(url, token, ctx.signal).get("/v1/hosts", z.object({ hosts: z.array(agent) }));
        hosts ??= answer.data.hosts.length;
      } catch (err) {
        if (!(err instanceof CliError) || err.exitCode !== ExitCode.unreachable || urls.length === 1) throw err;
        down.push(url);
      }
    }
    if (hosts === undefined) throw new CliError(ExitCode.unreachable, `none of the controllers answered (${down.join(", ")})`);
    const file = saveStoredConfig(ctx.env, { url: normalized, token });
    if (ctx.out.json) {
      // login has no API answer of its own: this says what was stored, never the token.
      ctx.out.printJson({ url: normalized, configFile: file, hosts, unreachable: down });
      return 0;
    }
    ctx.out.line(`${ctx.out.paint.green("logged in")} to ${normalized} (${hosts} host(s) registered)`);
    ctx.out.line(ctx.out.paint.dim(`saved to ${file}`));
    for (const url of down) ctx.out.note(`note: ${url} did not answer now; it is kept in the list`);
    if (ctx.env.DEPLOYBOT_URL || ctx.env.DEPLOYBOT_TOKEN) ctx.out.note("note: DEPLOYBOT_URL / DEPLOYBOT_TOKEN are set and still win over the saved login");
    return 0;
  },
};
