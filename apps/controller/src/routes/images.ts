import { createImageRequest, listImagesQuery } from "@deploybot/protocol";
import { Hono } from "hono";
import { type AppEnv, requireScope } from "../middleware/auth";
import { idempotency } from "../middleware/idempotency";
import { validate } from "../middleware/validate";
import type { Services } from "../services";

/** The images catalog: build an app at a tag without deploying it, list, inspect, forget. */
export function imageRoutes(s: Services) {
  const read = requireScope(s.apiTokens, "read");
  const deploy = requireScope(s.apiTokens, "deploy");
  return new Hono<AppEnv>()
    .post("/", deploy, idempotency(s.idempotencyKeys), validate("json", createImageRequest), async (c) => {
      const answer = await s.images.create(c.req.valid("json"));
      return c.json(answer, answer.created ? 201 : 200);
    })
    .get("/", read, validate("query", listImagesQuery), (c) => c.json({ images: s.images.list(c.req.valid("query")) }))
    .get("/:imageId", read, (c) => c.json({ image: s.images.get(c.req.param("imageId")) }))
    .delete("/:imageId", deploy, (c) => c.json({ image: s.images.remove(c.req.param("imageId")) }));
}
