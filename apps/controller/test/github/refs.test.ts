import { appRefs } from "@deploybot/protocol";
import { describe, expect, test } from "vitest";
import { ADMIN, makeHarness } from "../fixture";
import { REPO, SHA, seen } from "./handlers";
import { useFakeGitHub } from "./server";

useFakeGitHub();

const TOKEN = "ghp_refstoken0123456789abcdefghijklmnopqr";
const appsYaml = `
apps:
  - name: web
    repo: ${REPO}
    url: https://github.com/${REPO}.git
    hosts: [web-1]
    image: 127.0.0.1:5000/web
`;

describe("an app on GitHub, with a token", () => {
  test("GET /v1/apps/{name}/refs lists tags and branches through GitHub's API, with commit date, author and message", async () => {
    const h = await makeHarness({ githubToken: TOKEN }, appsYaml);
    const res = await h.call("GET", "/v1/apps/web/refs", { token: ADMIN });
    expect(res.status).toBe(200);
    const body = appRefs.parse(await res.json());
    expect(body.refs.filter((r) => r.type === "tag").map((r) => r.name)).toEqual(["v1.1.0", "v1.0.0"]);
    expect(body.refs.find((r) => r.name === "v1.1.0")).toEqual({
      name: "v1.1.0",
      type: "tag",
      sha: SHA.v110,
      commit: { date: "2026-11-01T09:00:00Z", author: "hubot", message: "Add the health endpoint\n\nand a test" },
    });
    expect(body.refs.find((r) => r.name === "main")).toMatchObject({ type: "branch", sha: SHA.main });
    expect(seen.every((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);
    expect(h.logLines.join("\n")).not.toContain(TOKEN);
  });

  test("POST /v1/images resolves an annotated tag to its commit through the API", async () => {
    const h = await makeHarness({ githubToken: TOKEN }, appsYaml);
    const res = await h.call("POST", "/v1/images", { token: ADMIN, body: { app: "web", tag: "v1.1.0" } });
    expect(res.status).toBe(201);
    expect((await res.json()).image).toMatchObject({ tag: "v1.1.0", sha: SHA.v110 });
    const missing = await h.call("POST", "/v1/images", { token: ADMIN, body: { app: "web", tag: "v7.0.0" } });
    expect(missing.status).toBe(422);
  });
});
