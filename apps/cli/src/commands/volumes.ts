import { volumesAnswer } from "@deploybot/protocol";
import type { Command } from "../command";
import { age } from "../output";

/** 1536 -> "1.5 KiB": sizes as du -h would say them. */
export function humanBytes(bytes: number | null): string {
  if (bytes === null) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export const volumes: Command = {
  name: "volumes",
  summary: "List the apps' named volumes on every host, with their size.",
  usage: "[APP]",
  positionals: { names: ["APP"], required: 0 },
  notes: [
    "A named volume (run.volumes: [data:/var/lib/app]) is the Docker volume deploybot.APP.NAME on",
    "each host of the app. It outlives deploys, rollbacks and restarts; only",
    "`deploybot remove APP --purge-volumes` deletes it. Sizes are measured by the agent every few",
    "minutes and after each job (MEASURED says when). Bind mounts are host directories and not listed.",
  ],
  examples: ["deploybot volumes", "deploybot volumes db", "deploybot volumes --json | jq '.volumes[] | select(.sizeBytes > 1e9)'"],
  async run(ctx, _values, [app]) {
    const answer = await ctx.client().get(app ? `/v1/volumes?app=${encodeURIComponent(app)}` : "/v1/volumes", volumesAnswer);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    const rows = answer.data.volumes;
    if (rows.length === 0) {
      ctx.out.note(app ? `no host reports a volume of ${app} (is run.volumes set, and has it been deployed?)` : "no host reports a named volume");
      return 0;
    }
    const { paint } = ctx.out;
    ctx.out.table(
      ["HOST", "APP", "VOLUME", "SIZE", "DOCKER VOLUME", "MEASURED"],
      rows.map((v) => [v.host + (v.online ? "" : paint.red(" (offline)")), v.app, v.volume, humanBytes(v.sizeBytes), v.name, age(v.measuredAt)]),
    );
    return 0;
  },
};
