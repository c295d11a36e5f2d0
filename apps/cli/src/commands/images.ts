import { type Image, imageAnswer, imageList } from "@deploybot/protocol";
import { z } from "zod";
import { usageError } from "../client";
import { type Command, type Context, seg, stringOption } from "../command";
import { age, duration } from "../output";
import { followJob } from "./logs";

const paintImage = (ctx: Context, status: string) => {
  const { paint } = ctx.out;
  return status === "success" ? paint.green(status) : status === "failed" ? paint.red(status) : paint.cyan(status);
};

export const images: Command = {
  name: "images",
  summary: "List the images catalog (built images per app and tag), newest first.",
  usage: "[APP]",
  positionals: { names: ["APP"], required: 0 },
  examples: ["deploybot images web", "deploybot images --json | jq -r '.images[] | select(.status==\"success\") | .id'"],
  async run(ctx, _values, [app]) {
    const answer = await ctx.client().get(`/v1/images${app ? `?app=${seg(app)}` : ""}`, imageList);
    if (ctx.out.json) {
      ctx.out.printJson(answer.raw);
      return 0;
    }
    if (answer.data.images.length === 0) {
      ctx.out.note(`no images${app ? ` of ${app}` : ""} yet (deploybot build APP --tag TAG)`);
      return 0;
    }
    ctx.out.table(
      ["ID", "APP", "TAG", "STATUS", "SHA", "DIGEST", "BUILT"],
      answer.data.images.map((i) => [
        i.id,
        i.app,
        i.tag,
        paintImage(ctx, i.status),
        i.sha?.slice(0, 12) ?? "-",
        i.digest ? i.digest.slice(0, 19) : "-",
        i.finishedAt ? age(i.finishedAt) : "-",
      ]),
    );
    return 0;
  },
};

export const build: Command = {
  name: "build",
  summary: "Build and push an app at a git tag (or --ref) without deploying it; follows the build log.",
  usage: "APP (--tag TAG | --ref REF) [--rebuild] [--detach]",
  positionals: { names: ["APP"], required: 1 },
  options: {
    tag: { type: "string", value: "TAG", description: "a git tag of the app's repository; the image is tagged with it" },
    ref: { type: "string", value: "REF", description: "a branch or commit instead; the image is tagged with its short sha" },
    rebuild: { type: "boolean", description: "build again even when the catalog has this tag built already" },
    detach: { type: "boolean", short: "d", description: "print the image id and return at once" },
  },
  notes: [
    "POST /v1/images: one image per app and tag; asking again answers the existing image (no",
    "build) unless --rebuild, or unless its build failed (then it builds again). The build log",
    "streams to stdout, progress to stderr; the image id",
    "goes to stdout at the end. Exit 0 when the image is built, 1 when the build failed.",
    "Deploy it with: deploybot deploy APP --image-id ID",
  ],
  examples: ["deploybot build web --tag v1.2.3", "id=$(deploybot build web --tag v1.2.3 --detach)", "deploybot build web --ref main --rebuild"],
  async run(ctx, values, [app]) {
    const tag = stringOption(values, "tag");
    const ref = stringOption(values, "ref");
    if ((tag === undefined) === (ref === undefined)) throw usageError("give exactly one of --tag, --ref\nsee 'deploybot build --help'");
    const client = ctx.client();
    const created = await client.post("/v1/images", imageAnswer, { app, tag, ref, rebuild: values.rebuild === true });
    const { image, created: fresh } = created.data;
    if (values.detach || (!fresh && isDone(image))) {
      if (ctx.out.json) ctx.out.printJson(created.raw);
      else {
        ctx.out.note(`${fresh ? "queued" : "already in the catalog:"} ${describe(image)} (${paintImage(ctx, image.status)})`);
        ctx.out.line(image.id);
      }
      return image.status === "failed" && !values.detach ? 1 : 0;
    }
    ctx.out.note(`${fresh ? "building" : "following the build in progress of"} ${describe(image)}`);
    if (image.buildJobId) await followJob(ctx, client, image.buildJobId);
    const end = await client.get(`/v1/images/${seg(image.id)}`, z.object({ image: imageAnswer.shape.image }));
    const done = end.data.image;
    if (ctx.out.json) ctx.out.printJson(end.raw);
    else {
      ctx.out.note(`image ${done.id} ${paintImage(ctx, done.status)} in ${duration(done.startedAt ?? done.createdAt, done.finishedAt)}${done.error ? `: ${done.error}` : ""}`);
      if (done.pullRef) ctx.out.note(`  ${done.pullRef}`);
      ctx.out.line(done.id);
    }
    return done.status === "success" ? 0 : 1;
  },
};

const isDone = (i: Image) => i.status === "success" || i.status === "failed";
const describe = (i: Image) => `${i.app}:${i.tag} (${i.id}${i.sha ? `, ${i.sha.slice(0, 12)}` : ""})`;
