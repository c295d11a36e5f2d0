import { describe, expect, test } from "vitest";
import { AppsConfigError, normaliseRepo, parseAppsConfig } from "../src/services/appsConfig";

const VOLUMES = "apps:\n  - name: web\n    repo: a/b\n    run:\n      volumes:\n        - data:/data\n";
const SCHEDULE = "apps:\n  - name: web\n    repo: a/b\n    schedules:\n      - name: nightly\n        command: [echo, hi]\n";

describe("apps.yaml", () => {
  test("applies defaults and indexes apps by repo in any form", () => {
    const cfg = parseAppsConfig("apps:\n  - name: web\n    repo: Acme/Web\n", "apps.yaml");
    const [web] = cfg.byRepo("https://github.com/acme/web.git");
    expect(web).toMatchObject({ name: "web", branch: "main", deploy_on_push: true, url: "https://github.com/Acme/Web.git" });
    expect(cfg.byRepo("git@github.com:acme/web.git")[0]?.name).toBe("web");
    expect(normaliseRepo("acme/web/")).toBe("acme/web");
  });

  test.each([
    ["apps:\n  - name: web\n    repo: acme/web\n    run:\n      ports: [nope]\n", /apps\.yaml:5: apps\[0\]\.run\.ports\[0\]: must look like HOST:CONTAINER/],
    ["apps:\n  - name: web\n", /apps\.yaml:2: apps\[0\]\.repo: /],
    ["apps:\n  - name: web\n    repo: a/b\n  - name: web\n    repo: c/d\n", /apps\.yaml:4: apps\[1\]\.name: duplicate app name 'web'/],
    ["apps: [\n", /apps\.yaml:\d+: invalid YAML/],
    ["apps:\n  - name: web\n    repo: a/b\n    colour: red\n", /apps\.yaml:4: apps\[0\]\.colour: unknown key 'colour'/],
    [`${SCHEDULE}        cron: "61 * * * *"\n`, /apps\.yaml:7: apps\[0\]\.schedules\[0\]\.cron: invalid cron '61 \* \* \* \*': .*0-59/],
    [`${SCHEDULE}        cron: "* * *"\n`, /apps\.yaml:7: apps\[0\]\.schedules\[0\]\.cron: cron must have 5 fields .* got 3/],
    [`${SCHEDULE}        cron: "0 3 * * *"\n        timezone: Europe/Londn\n`, /apps\.yaml:8: apps\[0\]\.schedules\[0\]\.timezone: unknown IANA time zone 'Europe\/Londn'/],
    [`${SCHEDULE}        cron: "0 3 * * *"\n        concurency: forbid\n`, /apps\.yaml:8: apps\[0\]\.schedules\[0\]\.concurency: unknown key 'concurency'/],
    [`${SCHEDULE}        cron: "0 3 * * *"\n        concurrency: sometimes\n`, /apps\.yaml:8: apps\[0\]\.schedules\[0\]\.concurrency: /],
    // volumes: what can be judged without the host is refused at load
    [`${VOLUMES}        - /var/run/docker.sock:/var/run/docker.sock
`, /apps\.yaml:7: apps\[0\]\.run\.volumes\[1\]: .*docker\.sock may not be mounted: it is a container engine's socket/],
    [`${VOLUMES}        - /:/host
`, /apps\.yaml:7: apps\[0\]\.run\.volumes\[1\]: .*it is the host's root directory/],
    [`${VOLUMES}        - /etc/ssl:/ssl:ro
`, /apps\.yaml:7: apps\[0\]\.run\.volumes\[1\]: .*inside \/etc/],
    [`${VOLUMES}        - /var:/v
`, /apps\.yaml:7: .*it contains \/var\/run/],
    [`${VOLUMES}        - /srv/app/../../etc:/x
`, /apps\.yaml:7: apps\[0\]\.run\.volumes\[1\]: .*may not contain '\.' or '\.\.' segments/],
    [`${VOLUMES}        - srv/app:/x
`, /apps\.yaml:7: .*a volume name must start with a letter or digit/],
    [`${VOLUMES}        - other:/data
`, /apps\.yaml:7: apps\[0\]\.run\.volumes\[1\]: container path \/data is mounted twice/],
    [`${VOLUMES}        - logs:/logs:rx
`, /apps\.yaml:7: .*must be 'ro' or 'rw'/],
    [`${VOLUMES}        - logs:relative
`, /apps\.yaml:7: .*the container path must be an absolute path/],
    [`${VOLUMES}      stop_first: true
    replicas: 2
    domains: [a.example.com]
    proxy: { port: 80 }
`, /apps\.yaml:7: apps\[0\]\.run\.stop_first: stop_first .* use one replica/],
  ])("a bad file names the file, line, path and reason (%#)", (text, message) => {
    expect(() => parseAppsConfig(text, "apps.yaml")).toThrow(AppsConfigError);
    expect(() => parseAppsConfig(text, "apps.yaml")).toThrow(message);
  });

  test("schedules: defaults, 6-field cron with seconds, IANA zones", () => {
    const cfg = parseAppsConfig(`${SCHEDULE}        cron: "*/5 * * * * *"\n      - name: report\n        cron: "30 1 * * *"\n        timezone: America/New_York\n        command: [sh, -c, "exit 0"]\n        concurrency: replace\n        host: web-1\n`, "apps.yaml");
    expect(cfg.byName("web")?.schedules).toMatchObject([
      { name: "nightly", cron: "*/5 * * * * *", timezone: "UTC", concurrency: "forbid", env: {} },
      { name: "report", timezone: "America/New_York", concurrency: "replace", host: "web-1" },
    ]);
  });

  test("volumes: named volumes and binds below a host path, read-only or not", () => {
    const cfg = parseAppsConfig(`${VOLUMES}        - /srv/web/uploads:/uploads:ro
        - cache:/cache:rw
      stop_first: true
`, "apps.yaml");
    expect(cfg.byName("web")?.run).toMatchObject({ volumes: ["data:/data", "/srv/web/uploads:/uploads:ro", "cache:/cache:rw"], stop_first: true });
  });

  test("the shipped example is valid", async () => {
    const { loadAppsConfig } = await import("../src/services/appsConfig");
    expect(loadAppsConfig(new URL("../../../config/apps.yaml", import.meta.url).pathname).apps.length).toBeGreaterThan(0);
  });
});
