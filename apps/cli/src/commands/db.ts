import { closeSync, createWriteStream, openSync, renameSync, rmSync, statSync } from "node:fs";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CliError, ExitCode } from "../client";
import { type Command, stringOption } from "../command";

const SQLITE_MAGIC = Buffer.from("SQLite format 3\0", "latin1");

export const dbBackup: Command = {
  name: "db backup",
  summary: "Download a consistent, checked backup of the controller's database (admin).",
  usage: "[--out FILE]",
  options: {
    out: { type: "string", value: "FILE", description: "where to write it (default ./deploybot-backup-<UTC time>.db); - writes to stdout" },
  },
  notes: [
    "The controller copies its database while it runs (requests go on), checks the copy with PRAGMA integrity_check, then sends it.",
    "The file is written next to FILE and renamed into place when whole, so FILE is never a partial backup.",
    "App secrets in the backup open only with the controller's secret key (DEPLOYBOT_SECRET_KEY or secret.key in its data dir): keep that key, apart from the backups. Restore: see README, 'Backups and restore'.",
  ],
  examples: ["deploybot db backup", "deploybot db backup --out /backups/deploybot-$(date +%F).db", "deploybot db backup --out - | gzip > deploybot.db.gz"],
  async run(ctx, values) {
    const out = stringOption(values, "out") ?? `deploybot-backup-${new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "")}.db`;
    let bytes = 0;
    let head = Buffer.alloc(0);
    let integrity = "";
    const partial = `${out}.partial`;
    // Before the controller copies its database: a path that cannot be written would otherwise
    // fail only once the whole backup had been taken and sent ("unexpected error: ENOENT").
    if (out !== "-") {
      if (statSync(out, { throwIfNoEntry: false })?.isDirectory()) throw new CliError(ExitCode.usage, `--out ${out} is a directory; give a file name in it`);
      try {
        closeSync(openSync(partial, "w", 0o600));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const why = e.code === "ENOENT" ? "its directory does not exist" : e.code === "EACCES" ? "permission denied" : e.message;
        throw new CliError(ExitCode.usage, `cannot write the backup to ${out}: ${why}`);
      }
    }
    try {
      await ctx.client().download("/v1/db/backup", async (body, headers) => {
        integrity = headers.get("x-deploybot-integrity") ?? "";
        const expected = Number(headers.get("content-length") ?? Number.NaN);
        const count = new Transform({
          transform(chunk: Buffer, _enc, done) {
            if (head.length < SQLITE_MAGIC.length) head = Buffer.concat([head, chunk.subarray(0, SQLITE_MAGIC.length - head.length)]);
            bytes += chunk.length;
            done(null, chunk);
          },
        });
        const source = Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>);
        const check = () => {
          if (!head.equals(SQLITE_MAGIC)) throw new CliError(ExitCode.api, "the controller's answer is not an SQLite database");
          if (Number.isFinite(expected) && bytes !== expected) throw new CliError(ExitCode.api, `the backup was cut short: ${bytes} of ${expected} bytes arrived`);
        };
        if (out === "-") {
          await pipeline(source, count, process.stdout);
          check();
          return;
        }
        await pipeline(source, count, createWriteStream(partial, { mode: 0o600 }));
        check();
        renameSync(partial, out);
      });
    } catch (err) {
      // nothing but a whole backup is left at or beside FILE
      if (out !== "-") rmSync(partial, { force: true });
      throw err;
    }
    if (out === "-") return 0;
    if (ctx.out.json) {
      ctx.out.printJson({ path: out, bytes, integrity });
      return 0;
    }
    ctx.out.fields([
      ["backup", out],
      ["size", `${(bytes / 1024 / 1024).toFixed(1)} MB`],
      ["integrity_check", integrity || "not reported"],
    ]);
    ctx.out.note("the secrets in it open only with the controller's secret key (DEPLOYBOT_SECRET_KEY or secret.key): keep that key too, apart from the backups");
    return 0;
  },
};
