import { createImageRequest, image, imageAnswer, imageList, listImagesQuery } from "@deploybot/protocol";
import { z } from "zod";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, idParam, json, jsonBody, listRoute, newRouter, oneRoute, route } from "../openapi/route";
import type { Services } from "../services";

const imageId = idParam("imageId");
const oneImage = z.object({ image });

/** The images catalog: build an app at a tag without deploying it, list, inspect, forget. */
export function imageRoutes(s: Services) {
  const { read, deploy } = guards(s);
  return newRouter()
    .openapi(
      route({
        method: "post",
        path: "/",
        guard: deploy,
        middleware: [idempotency(s.idempotencyKeys)],
        summary: "Build and push an app at a git tag (or branch/commit) without deploying it; one image per app and tag",
        request: { body: jsonBody(createImageRequest) },
        responses: {
          201: json(imageAnswer, "build queued"),
          200: json(imageAnswer, "the existing image of that tag (no rebuild asked, or one is in progress)"),
          ...fails({ 400: "invalid body", 404: "no such app", 422: "unknown ref, no registry or no builder", 502: "the git remote cannot be read" }),
        },
      }),
      async (c) => {
        const answer = await s.images.create(c.req.valid("json"));
        return answer.created ? c.json(answer, 201) : c.json(answer, 200);
      },
    )
    .openapi(
      listRoute({ guard: read, summary: "The images catalog, newest first", query: listImagesQuery, answer: imageList, answered: "the images" }),
      async (c) => c.json({ images: await s.images.list(c.req.valid("query")) }, 200),
    )
    .openapi(
      oneRoute({
        guard: read,
        summary: "One image: status, digest, sha, times, error and its build job (whose log is the build log)",
        key: "imageId",
        answer: oneImage,
        noun: "image",
      }),
      async (c) => c.json({ image: await s.images.get(c.req.valid("param").imageId) }, 200),
    )
    .openapi(
      route({
        method: "delete",
        path: "/{imageId}",
        guard: deploy,
        summary: "Forget an image (a build in progress is cancelled; the registry keeps its blobs)",
        request: { params: imageId },
        responses: { 200: json(oneImage, "removed"), ...fails({ 404: "no such image" }) },
      }),
      async (c) => c.json({ image: await s.images.remove(c.req.valid("param").imageId) }, 200),
    );
}
