import { createImageRequest, image, imageAnswer, imageList, listImagesQuery } from "@deploybot/protocol";
import { z } from "zod";
import { idempotency } from "../middleware/idempotency";
import { fails, guards, idParam, json, jsonBody, newRouter, route } from "../openapi/route";
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
      route({
        method: "get",
        path: "/",
        guard: read,
        summary: "The images catalog, newest first",
        request: { query: listImagesQuery },
        responses: { 200: json(imageList, "the images"), ...fails({ 400: "invalid query" }) },
      }),
      (c) => c.json({ images: s.images.list(c.req.valid("query")) }, 200),
    )
    .openapi(
      route({
        method: "get",
        path: "/{imageId}",
        guard: read,
        summary: "One image: status, digest, sha, times, error and its build job (whose log is the build log)",
        request: { params: imageId },
        responses: { 200: json(oneImage, "the image"), ...fails({ 404: "no such image" }) },
      }),
      (c) => c.json({ image: s.images.get(c.req.valid("param").imageId) }, 200),
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
      (c) => c.json({ image: s.images.remove(c.req.valid("param").imageId) }, 200),
    );
}
