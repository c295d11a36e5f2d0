import { execFile } from "node:child_process";
import http from "node:http";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, it } from "vitest";

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "../..");

/** The local FROM-scratch busybox image scripts/test-services.sh builds (no Docker Hub here). */
export const BASE_IMAGE = "deploybot-test/busybox:latest";

/** Values from the environment, else from the file scripts/test-services.sh writes. */
function testServicesEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    for (const line of readFileSync(path.join(repoRoot, ".state/test-services.env"), "utf8").split("\n")) {
      const eq = line.indexOf("=");
      if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1).trim();
    }
  } catch {
    // no file: rely on the environment alone
  }
  return { ...out, ...Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined)) };
}

const env = testServicesEnv();
export const testRegistry = {
  host: env.DEPLOYBOT_TEST_REGISTRY ?? "127.0.0.1:5000",
  username: env.DEPLOYBOT_TEST_REGISTRY_USERNAME ?? "deploybot",
  password: env.DEPLOYBOT_TEST_REGISTRY_PASSWORD ?? "deploybot-test-pw",
};

/** A controller's settings for pushing to and pulling from the test registry. */
export const testRegistryEnv = {
  DEPLOYBOT_REGISTRY_URL: testRegistry.host,
  DEPLOYBOT_REGISTRY_USERNAME: testRegistry.username,
  DEPLOYBOT_REGISTRY_PASSWORD: testRegistry.password,
};

/** Pebble, the ACME test server scripts/test-services.d/proxy.sh starts (null when it did not). */
export const testAcme = env.DEPLOYBOT_TEST_ACME_DIRECTORY
  ? { directory: env.DEPLOYBOT_TEST_ACME_DIRECTORY, tlsCaFile: env.DEPLOYBOT_TEST_ACME_TLS_CA ?? "", rootsUrl: env.DEPLOYBOT_TEST_ACME_ROOTS ?? "" }
  : null;

/**
 * A raw Engine API call. The root test/ tree has no dependencies of its own (dockerode belongs
 * to apps/agent), so the helpers speak HTTP over the socket; tests bring their own client.
 */
export function engineRequest(method: string, apiPath: string): Promise<{ status: number; body: string }> {
  const host = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
  const target = host.startsWith("unix://") ? { socketPath: host.slice("unix://".length) } : { host: new URL(host.replace(/^tcp:/, "http:")).hostname, port: Number(new URL(host.replace(/^tcp:/, "http:")).port) };
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, method, path: apiPath, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("timeout", () => req.destroy(new Error("engine did not answer")));
    req.on("error", reject);
    req.end();
  });
}

export async function dockerAvailable(): Promise<boolean> {
  return engineRequest("GET", "/_ping").then((r) => r.status === 200, () => false);
}

interface ContainerSummary {
  Id: string;
  Names: string[];
  State: string;
  Status: string;
  Labels: Record<string, string>;
  Ports: { PrivatePort: number; PublicPort?: number; IP?: string; Type: string }[];
}

/** Containers (all states) carrying every one of `labels` ("key=value"). */
export async function containersWithLabels(labels: string[]): Promise<ContainerSummary[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: labels }));
  const res = await engineRequest("GET", `/containers/json?all=1&filters=${filters}`);
  return JSON.parse(res.body) as ContainerSummary[];
}

async function missingServices(): Promise<string[]> {
  const missing: string[] = [];
  if (!(await dockerAvailable())) missing.push("Docker engine (DOCKER_HOST or /var/run/docker.sock)");
  else if ((await engineRequest("GET", `/images/${BASE_IMAGE}/json`)).status !== 200) missing.push(`base image ${BASE_IMAGE}`);
  const registry = await registryFetch("/v2/").then((r) => r.status === 200, () => false);
  if (!registry) missing.push(`registry with auth at ${testRegistry.host}`);
  return missing;
}

const missing = await missingServices();

/**
 * `describe` for suites that need the real engine and registry. With everything up it is plain
 * `describe`. In CI (CI=true) a missing service FAILS the suite: a green run that tested nothing
 * is worse than a red one. Locally it skips, loudly.
 */
export function describeDocker(name: string, body: () => void): void {
  if (missing.length === 0) {
    describe(name, body);
    return;
  }
  const message = `missing test services: ${missing.join(", ")}. Run: sudo bash scripts/test-services.sh`;
  if (process.env.CI === "true") {
    describe(name, () => {
      it("has the docker test services", () => {
        throw new Error(message);
      });
    });
    return;
  }
  console.warn(`\n!!! SKIPPING "${name}": ${message}\n`);
  describe.skip(name, body);
}

/** GET against the test registry's HTTP API with its credentials. */
export function registryFetch(apiPath: string, init: RequestInit = {}): Promise<Response> {
  const auth = Buffer.from(`${testRegistry.username}:${testRegistry.password}`).toString("base64");
  return fetch(`http://${testRegistry.host}${apiPath}`, {
    ...init,
    headers: { authorization: `Basic ${auth}`, ...(init.headers as Record<string, string> | undefined) },
    signal: AbortSignal.timeout(5000),
  });
}

/** The manifest digest the registry holds for repo:tag, or null. */
export async function registryDigest(repo: string, tag: string): Promise<string | null> {
  const res = await registryFetch(`/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    headers: { accept: "application/vnd.docker.distribution.manifest.v2+json" },
  });
  return res.status === 200 ? res.headers.get("docker-content-digest") : null;
}

/** A free TCP port on 127.0.0.1 (bound then released; good enough for serial e2e tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

export const uniqueName = (prefix: string): string => `${prefix}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** GET http://127.0.0.1:<port><path>; status and body, or null when nothing answers. */
export async function httpGet(port: number, urlPath = "/", timeoutMs = 3000): Promise<{ status: number; body: string } | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await res.text() };
  } catch {
    return null;
  }
}

/** Removes every container carrying `deploybot.app=<app>` (test cleanup). */
export async function removeAppContainers(app: string): Promise<void> {
  const containers = await containersWithLabels([`deploybot.app=${app}`]);
  await Promise.all(containers.map((c) => engineRequest("DELETE", `/containers/${c.Id}?force=1&v=1`).catch(() => undefined)));
}

// ---------------------------------------------------------------------------------------------
// Test app and a GitHub stand-in
// ---------------------------------------------------------------------------------------------

/**
 * A tiny busybox-httpd app: `/health` answers 200 and `/` shows `version`. `healthy: false`
 * leaves out /health (404) so a deploy fails its check; `slowBuild` adds a `RUN sleep 60` (with
 * `salt` as a shell comment, so a test finds its own build container among other tests').
 * The image is the brief's `busybox httpd -f -p 80 -h /www`, started through sh (see CMD).
 */
export function testAppFiles(version: string, options: { healthy?: boolean; slowBuild?: boolean; salt?: string } = {}): Record<string, string> {
  const files: Record<string, string> = {
    Dockerfile: [
      `FROM ${BASE_IMAGE}`,
      // A layer that never changes between versions: a redeploy must take it from the cache.
      // `salt` (e.g. the app name) makes the first build of a test genuinely cold.
      `RUN mkdir -p /www/static && echo static-${options.salt ?? "shared"} > /www/static/asset.txt`,
      ...(options.slowBuild ? [`RUN sleep 60${options.salt ? ` # ${options.salt}` : ""}`] : []),
      "COPY www/ /www/",
      // sh stays PID 1 and exits on SIGTERM: httpd as PID 1 would ignore it, and every
      // `docker stop` would wait out its full grace period before SIGKILL.
      `CMD ["sh", "-c", "echo starting version $(cat /www/index.html); trap 'exit 0' TERM; busybox httpd -f -v -p 80 -h /www & wait"]`,
      "",
    ].join("\n"),
    "www/index.html": `${version}\n`,
  };
  if (options.healthy !== false) files["www/health"] = "ok\n";
  return files;
}

export interface TestGitRepo {
  /** path of the bare repo: what a job's `source.url` points at */
  url: string;
  /** writes `files` (replacing the previous tree), commits, pushes to `branch`; returns the sha */
  commit(files: Record<string, string>, message: string, branch?: string): Promise<string>;
  tag(name: string): Promise<void>;
  cleanup(): Promise<void>;
}

const git = (args: string[], cwd: string) =>
  run("git", ["-c", "user.name=deploybot-test", "-c", "user.email=test@deploybot.invalid", "-c", "init.defaultBranch=main", ...args], { cwd });

export async function makeGitRepo(): Promise<TestGitRepo> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "deploybot-git-"));
  const bare = path.join(dir, "origin.git");
  const work = path.join(dir, "work");
  await git(["init", "-q", "--bare", bare], dir);
  await git(["init", "-q", work], dir);
  await git(["remote", "add", "origin", bare], work);
  return {
    url: bare,
    async commit(files, message, branch = "main") {
      await git(["checkout", "-q", "-B", branch], work);
      await git(["rm", "-rq", "--ignore-unmatch", "--", "."], work);
      for (const [rel, content] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(work, rel)), { recursive: true });
        await writeFile(path.join(work, rel), content);
      }
      await git(["add", "-A", "--", "."], work);
      await git(["commit", "-q", "--allow-empty", "-m", message], work);
      await git(["push", "-q", "--force", "origin", `HEAD:refs/heads/${branch}`], work);
      return (await git(["rev-parse", "HEAD"], work)).stdout.trim();
    },
    async tag(name) {
      await git(["tag", "-f", "--", name], work);
      await git(["push", "-q", "--force", "origin", `refs/tags/${name}`], work);
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
