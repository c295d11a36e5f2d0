import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, requireScope } from "../middleware/auth";
import { validate } from "../middleware/validate";
import type { Services } from "../services";
import { REPO_PATTERN } from "../services/github";

const tagsQuery = z.object({ repo: z.string().max(200).regex(REPO_PATTERN, "must be a GitHub full name like owner/name") });

/** Read-only views of GitHub, for picking what to deploy. */
export function githubRoutes(s: Services) {
  const read = requireScope(s.apiTokens, "read");
  return new Hono<AppEnv>().get("/tags", read, validate("query", tagsQuery), async (c) => {
    const { repo } = c.req.valid("query");
    return c.json({ repo, tags: await s.github.listTags(repo) });
  });
}
