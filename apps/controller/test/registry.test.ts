import { describe, expect } from "vitest";
import { loadConfig } from "../src/config";
import { parseAppsConfig } from "../src/services/appsConfig";
import { ADMIN, makeHarness, test } from "./fixture";

const registryFrom = (url: string) => loadConfig({ DEPLOYBOT_REGISTRY_URL: url, DEPLOYBOT_REGISTRY_USERNAME: "u", DEPLOYBOT_REGISTRY_PASSWORD: "pw" }).registry;

describe("the registry URL and image names are normalised once, when config is parsed", () => {
  test("scheme, trailing slashes and case are dropped", () => {
    expect(registryFrom("https://reg.example.test/")?.url).toBe("reg.example.test");
    expect(registryFrom("HTTP://Reg.Example.test:5000/Team//")?.url).toBe("reg.example.test:5000/team");
    expect(registryFrom("127.0.0.1:5000")?.url).toBe("127.0.0.1:5000");
    expect(() => registryFrom("https://")).toThrow(/DEPLOYBOT_REGISTRY_URL/);
    expect(() => registryFrom("reg.example.test/a b")).toThrow(/DEPLOYBOT_REGISTRY_URL/);
  });

  test("an app's image in apps.yaml is normalised the same way", () => {
    const apps = parseAppsConfig("apps:\n  - name: api\n    repo: acme/api\n    image: https://Reg.example.test/acme/API/\n", "apps.yaml");
    expect(apps.byName("api")?.image).toBe("reg.example.test/acme/api");
  });

  test("POST /v1/jobs, POST /v1/deployments and POST /v1/builds name the same image", async () => {
    const h = await makeHarness({ registry: registryFrom("https://reg.example.test/") });
    const submitted = await h.submit({ repo: "acme/web", ref: "main", host: "web-1" });
    expect(submitted.status).toBe(201);
    expect((await submitted.json()).job.spec.image).toBe("reg.example.test/web");

    const created = await h.call("POST", "/v1/deployments", { token: ADMIN, body: { app: "web", ref: "main" } });
    expect(created.status).toBe(201);
    const { deployment } = await created.json();
    const build = await (await h.call("GET", `/v1/jobs/${deployment.buildJobId}`, { token: ADMIN })).json();
    expect(build.job.spec.image).toBe("reg.example.test/web");

    const built = await h.call("POST", "/v1/builds", { token: ADMIN, body: { name: "hello", version: "1.0.0", files: { Dockerfile: "FROM scratch" } } });
    expect((await built.json()).imageTag).toBe("reg.example.test/hello:1.0.0");
  });

  test("the claiming agent gets the credentials for an image under the normalised registry", async () => {
    const h = await makeHarness({ registry: registryFrom("https://reg.example.test/") });
    await h.submit({ repo: "acme/web", ref: "main", host: "web-1" });
    const agent = await h.register("web-1");
    const beat = await (await h.heartbeat(agent)).json();
    expect(beat.job.spec).toMatchObject({ image: "reg.example.test/web", registry: { url: "reg.example.test", password: "pw" } });
  });
});

describe("GET /v1/apps says where an app's images go", () => {
  const appsYaml = "apps:\n  - name: web\n    repo: acme/web\n    hosts: [web-1]\n  - name: api\n    repo: acme/api\n    hosts: [web-1]\n    image: reg.other.test/acme/api\n";

  test("the controller's registry for an app with no image of its own; its own image otherwise", async () => {
    const h = await makeHarness({ registry: registryFrom("https://reg.example.test/") }, appsYaml);
    const { apps } = await (await h.call("GET", "/v1/apps", { token: ADMIN })).json();
    expect(apps.map((a: { name: string; image: string | null; imageRepository: string | null }) => [a.name, a.image, a.imageRepository])).toEqual([
      ["web", null, "reg.example.test/web"],
      ["api", "reg.other.test/acme/api", "reg.other.test/acme/api"],
    ]);
  });

  test("none without a registry: each host builds its own image (not 'the controller's registry')", async () => {
    const h = await makeHarness({}, appsYaml);
    const { app } = await (await h.call("GET", "/v1/apps/web", { token: ADMIN })).json();
    expect(app).toMatchObject({ image: null, imageRepository: null });
  });
});
