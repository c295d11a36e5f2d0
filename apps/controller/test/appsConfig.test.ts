import { describe, expect, test } from "vitest";
import { AppsConfigError, normaliseRepo, parseAppsConfig } from "../src/services/appsConfig";

describe("apps.yaml", () => {
  test("applies defaults and indexes apps by repo in any form", () => {
    const cfg = parseAppsConfig("apps:\n  - name: web\n    repo: Acme/Web\n", "apps.yaml");
    const web = cfg.byRepo("https://github.com/acme/web.git");
    expect(web).toMatchObject({ name: "web", branch: "main", deploy_on_push: true, url: "https://github.com/Acme/Web.git" });
    expect(cfg.byRepo("git@github.com:acme/web.git")?.name).toBe("web");
    expect(normaliseRepo("acme/web/")).toBe("acme/web");
  });

  test.each([
    ["apps:\n  - name: web\n    repo: acme/web\n    run:\n      ports: [nope]\n", /apps\.yaml:5: apps\[0\]\.run\.ports\[0\]: must look like HOST:CONTAINER/],
    ["apps:\n  - name: web\n", /apps\.yaml:2: apps\[0\]\.repo: /],
    ["apps:\n  - name: web\n    repo: a/b\n  - name: web\n    repo: c/d\n", /apps\.yaml:4: apps\[1\]\.name: duplicate app name 'web'/],
    ["apps: [\n", /apps\.yaml:\d+: invalid YAML/],
    ["apps:\n  - name: web\n    repo: a/b\n    colour: red\n", /apps\.yaml:2: apps\[0\]: Unrecognized key/],
  ])("a bad file names the file, line, path and reason (%#)", (text, message) => {
    expect(() => parseAppsConfig(text, "apps.yaml")).toThrow(AppsConfigError);
    expect(() => parseAppsConfig(text, "apps.yaml")).toThrow(message);
  });

  test("the shipped example is valid", async () => {
    const { loadAppsConfig } = await import("../src/services/appsConfig");
    expect(loadAppsConfig(new URL("../../../config/apps.yaml", import.meta.url).pathname).apps.length).toBeGreaterThan(0);
  });
});
