import { gitHubTags } from "@deploybot/protocol";
import { z } from "zod";
import { fails, guards, json, newRouter, route } from "../openapi/route";
import type { Services } from "../services";
import { REPO_PATTERN } from "../services/github";

const tagsQuery = z.object({ repo: z.string().max(200).regex(REPO_PATTERN, "must be a GitHub full name like owner/name") });

/** Read-only views of GitHub, for picking what to deploy. */
export function githubRoutes(s: Services) {
  const { read } = guards(s);
  return newRouter().openapi(
    route({
      method: "get",
      path: "/tags",
      guard: read,
      summary: "A GitHub repository's tags (?repo=owner/name), newest commit first",
      request: { query: tagsQuery },
      responses: { 200: json(gitHubTags, "the tags"), ...fails({ 400: "invalid repo", 502: "GitHub failed", 503: "GitHub unreachable or rate-limited" }) },
    }),
    async (c) => {
      const { repo } = c.req.valid("query");
      return c.json({ repo, tags: await s.github.listTags(repo) }, 200);
    },
  );
}
