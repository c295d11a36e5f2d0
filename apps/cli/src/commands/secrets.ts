import { envName } from "@deploybot/protocol";
import { z } from "zod";
import { usageError } from "../client";
import { type Command, type Context, seg } from "../command";
import { age } from "../output";

const secretInfo = z.object({ key: z.string(), updatedAt: z.string() });

function checkKey(key: string) {
  if (!envName.safeParse(key).success) throw usageError(`'${key}' is not a valid environment variable name (letters, digits and _, not starting with a digit)`);
}

/** The whole of stdin, less one trailing newline (what `echo` or a heredoc adds). */
async function readStdin(ctx: Context): Promise<string> {
  if (process.stdin.isTTY) ctx.out.note("reading the value from stdin (it is not shown); end with Ctrl-D");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
}

export const secretsSet: Command = {
  name: "secrets set",
  summary: "Set an app secret (encrypted at rest; given to the app's containers as an env var; admin).",
  usage: "APP KEY [VALUE]",
  positionals: { names: ["APP", "KEY", "VALUE"], required: 2 },
  notes: [
    "Without VALUE the value is read from stdin, so it stays out of shell history and `ps`.",
    "One trailing newline is dropped. The value is never printed; deploy again to roll it out.",
  ],
  examples: ["deploybot secrets set api DATABASE_URL < db-url.txt", "printf %s \"$DATABASE_URL\" | deploybot secrets set api DATABASE_URL --json"],
  async run(ctx, _values, [app, key, given]) {
    checkKey(key!);
    const value = given ?? (await readStdin(ctx));
    if (value.length === 0) throw usageError("the value is empty (give VALUE, or pipe it on stdin)");
    const answer = await ctx.client().request("PUT", `/v1/apps/${seg(app!)}/secrets/${seg(key!)}`, z.object({ secret: secretInfo }), { value });
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    ctx.out.line(`secret ${answer.data.secret.key} of ${app} set`);
    ctx.out.note(`running containers keep the old value until the next deploy (deploybot deploy ${app})`);
    return 0;
  },
};

export const secretsList: Command = {
  name: "secrets list",
  summary: "List an app's secret names and when each was set; never the values (admin).",
  usage: "APP",
  positionals: { names: ["APP"], required: 1 },
  examples: ["deploybot secrets list api", "deploybot secrets list api --json | jq -r '.secrets[].key'"],
  async run(ctx, _values, [app]) {
    const answer = await ctx.client().get(`/v1/apps/${seg(app!)}/secrets`, z.object({ secrets: z.array(secretInfo) }));
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    if (answer.data.secrets.length === 0) {
      ctx.out.note(`app ${app} has no secrets set (deploybot secrets set ${app} KEY)`);
      return 0;
    }
    ctx.out.table(
      ["KEY", "UPDATED"],
      answer.data.secrets.map((s) => [s.key, `${s.updatedAt} (${age(s.updatedAt)})`]),
    );
    return 0;
  },
};

export const secretsRemove: Command = {
  name: "secrets rm",
  summary: "Delete an app secret (admin).",
  usage: "APP KEY",
  positionals: { names: ["APP", "KEY"], required: 2 },
  examples: ["deploybot secrets rm api DATABASE_URL"],
  async run(ctx, _values, [app, key]) {
    checkKey(key!);
    await ctx.client().delete(`/v1/apps/${seg(app!)}/secrets/${seg(key!)}`, z.null());
    if (ctx.out.json) {
      // the API answers 204 with no body; scripts still get one document
      ctx.out.printJson({ removed: { app, key } });
      return 0;
    }
    ctx.out.line(`secret ${key} of ${app} removed`);
    return 0;
  },
};
