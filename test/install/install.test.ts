import { type ChildProcess, execFile, spawn } from "node:child_process";
import { appendFileSync, cpSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN, JOIN, startTestController } from "../../apps/controller/test/server";
import { buildAgentDist } from "../../scripts/build-agent.mjs";
import { uniqueName } from "../support/docker";

/**
 * scripts/install-agent.sh against scratch roots (--root: no user, no systemctl), installing
 * from a running controller's agent distribution only (no checkout on the host), and
 * `systemd-analyze verify` on both units. Every command runs through execFile with an argument
 * vector; nothing here builds a shell string.
 */

const repo = resolve(import.meta.dirname, "../..");
const script = join(repo, "scripts/install-agent.sh");
const agentUnit = join(repo, "scripts/systemd/deploybot-agent.service");
const controllerUnit = join(repo, "scripts/systemd/deploybot-controller.service");
const proxyUnit = join(repo, "scripts/systemd/deploybot-proxy.service");
const proxyPathUnit = join(repo, "scripts/systemd/deploybot-proxy.path");
const systemdAnalyze = "/usr/bin/systemd-analyze";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Run> {
  return new Promise((done) => {
    execFile(
      file,
      args,
      // A clean environment: no DEPLOYBOT_* leaking in from the developer's shell.
      { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        done({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

const scratchDirs: string[] = [];
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), "deploybot-install-"));
  scratchDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

// One controller serving a distribution built once for this file (DEPLOYBOT_AGENT_DIST).
let ctl: Awaited<ReturnType<typeof startTestController>>;
let dist: string;
let version: string;
beforeAll(async () => {
  dist = scratch();
  version = (await buildAgentDist({ outDir: dist })).version;
  ctl = await startTestController(undefined, { DEPLOYBOT_AGENT_DIST: dist });
}, 60_000);
afterAll(async () => {
  await ctl?.stop();
});

const noEnv = {};
const installArgs = (root: string) => [script, "--root", root, "--url", ctl.url, "--join-token", JOIN, "--labels", "a,b", "--no-start"];

/** Every file and link under dir (node_modules left out) with its mode and content/target. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      const rel = relative(dir, p);
      if (entry.name === "node_modules") continue;
      const st = lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (entry.isDirectory()) {
        out[`${rel}/`] = mode;
        walk(p);
      } else if (entry.isSymbolicLink()) {
        out[rel] = `link -> ${readlinkSync(p)}`;
      } else {
        out[rel] = `${mode} ${st.mtimeMs} ${readFileSync(p, "utf8")}`;
      }
    }
  };
  walk(dir);
  return out;
}

const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

describe("systemd units", () => {
  /**
   * `systemd-analyze verify` checks that ExecStart's binary exists and is executable, so each
   * unit is verified as a copy whose /opt/... paths point into a scratch root that holds the
   * same layout the installer (or the README's controller steps) creates: bin/node -> node.
   * Warnings (unknown keys, bad values) go to stderr with exit code 0, so stderr must be empty.
   */
  async function verifyInRoot(unitPath: string, optDir: string, root: string): Promise<Run> {
    const text = readFileSync(unitPath, "utf8").replaceAll(optDir, join(root, optDir));
    const copy = join(root, unitPath.split("/").pop()!);
    writeFileSync(copy, text);
    return run(systemdAnalyze, ["verify", copy], { SYSTEMD_LOG_COLOR: "0" });
  }

  it.skipIf(!existsSync(systemdAnalyze))("deploybot-agent.service verifies against the layout install-agent.sh writes", async () => {
    const root = scratch();
    const install = await run("bash", installArgs(root), noEnv);
    expect(install.code, install.stderr).toBe(0);
    const res = await verifyInRoot(agentUnit, "/opt/deploybot-agent", root);
    expect(res.stderr + res.stdout).toBe("");
    expect(res.code).toBe(0);
  });

  it.skipIf(!existsSync(systemdAnalyze))("deploybot-controller.service verifies against its documented layout", async () => {
    const root = scratch();
    const bin = join(root, "opt/deploybot-controller/bin");
    await run("mkdir", ["-p", bin]);
    await run("ln", ["-s", process.execPath, join(bin, "node")]);
    const res = await verifyInRoot(controllerUnit, "/opt/deploybot-controller", root);
    expect(res.stderr + res.stdout).toBe("");
    expect(res.code).toBe(0);
  });

  it.skipIf(!existsSync(systemdAnalyze) || !existsSync("/usr/sbin/haproxy"))("deploybot-proxy.service and .path verify as installed", async () => {
    const root = scratch();
    const install = await run("bash", installArgs(root), noEnv);
    expect(install.code, install.stderr).toBe(0);
    const units = ["deploybot-proxy.service", "deploybot-proxy.path"].map((u) => join(root, "etc/systemd/system", u));
    const res = await run(systemdAnalyze, ["verify", ...units], { SYSTEMD_LOG_COLOR: "0" });
    expect(res.stderr + res.stdout).toBe("");
    expect(res.code).toBe(0);
  });

  it.skipIf(!existsSync(systemdAnalyze))("the verification is not vacuous: a missing ExecStart binary fails it", async () => {
    const root = scratch();
    const res = await verifyInRoot(agentUnit, "/opt/deploybot-agent", root);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/not executable|No such file/);
  });

  it("the units carry the restart, drain and hardening settings", () => {
    const agent = readFileSync(agentUnit, "utf8");
    for (const line of [
      "Restart=always",
      "KillSignal=SIGTERM",
      "KillMode=mixed",
      "TimeoutStopSec=660",
      "EnvironmentFile=/etc/deploybot/agent.env",
      "StateDirectory=deploybot-agent",
      "User=deploybot",
      "SupplementaryGroups=docker",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ReadWritePaths=/var/lib/deploybot-agent",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "ExecStart=/opt/deploybot-agent/bin/node /var/lib/deploybot-agent/current/deploybot-agent.mjs",
    ]) {
      expect(agent.split("\n"), line).toContain(line);
    }
    // V8's JIT needs W+X pages; the unit must not forbid them.
    expect(agent).not.toMatch(/^MemoryDenyWriteExecute=yes/m);

    // The proxy: its own cgroup (an agent restart leaves it running), back after a crash, and
    // started by the .path unit (also at boot) only once the agent has written a config.
    const proxy = readFileSync(proxyUnit, "utf8").split("\n");
    for (const line of [
      "Restart=always",
      "User=deploybot",
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      "ConditionPathExists=/var/lib/deploybot-agent/proxy/haproxy.cfg",
      "ReadWritePaths=/var/lib/deploybot-agent/proxy",
      "WantedBy=multi-user.target",
    ]) {
      expect(proxy, line).toContain(line);
    }
    const path = readFileSync(proxyPathUnit, "utf8").split("\n");
    for (const line of ["PathExists=/var/lib/deploybot-agent/proxy/haproxy.cfg", "Unit=deploybot-proxy.service", "WantedBy=multi-user.target"]) {
      expect(path, line).toContain(line);
    }

    const controller = readFileSync(controllerUnit, "utf8");
    for (const line of [
      "Restart=always",
      "EnvironmentFile=/etc/deploybot/controller.env",
      "StateDirectory=deploybot",
      "Environment=DEPLOYBOT_DB=/var/lib/deploybot/deploybot.db",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ReadWritePaths=/var/lib/deploybot",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "ExecStart=/opt/deploybot-controller/bin/node --import tsx /opt/deploybot-controller/apps/controller/src/main.ts",
    ]) {
      expect(controller.split("\n"), line).toContain(line);
    }
  });
});

describe("install-agent.sh into a scratch root, from a running controller", () => {
  it("fetches the bundled agent and its unit from the controller, checks their sha256, and only prints the user/systemctl steps", async () => {
    const root = scratch();
    const res = await run("bash", installArgs(root), noEnv);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain(`fetched agent ${version} from ${ctl.url} (checksums match)`);

    const env = join(root, "etc/deploybot/agent.env");
    expect(mode(env)).toBe("600");
    const vars = readFileSync(env, "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#"));
    expect(vars).toEqual([`DEPLOYBOT_URL=${ctl.url}`, `DEPLOYBOT_JOIN_TOKEN=${JOIN}`, "DEPLOYBOT_LABELS=a,b", "DEPLOYBOT_PROXY=external"]);

    const unit = join(root, "etc/systemd/system/deploybot-agent.service");
    expect(mode(unit)).toBe("644");
    expect(readFileSync(unit, "utf8")).toBe(readFileSync(agentUnit, "utf8"));
    // the host proxy's units, as the repository has them (through the controller, checksummed)
    for (const [name, source] of [
      ["deploybot-proxy.service", proxyUnit],
      ["deploybot-proxy.path", proxyPathUnit],
    ] as const) {
      const installed = join(root, "etc/systemd/system", name);
      expect(mode(installed)).toBe("644");
      expect(readFileSync(installed, "utf8")).toBe(readFileSync(source, "utf8"));
    }

    // the agent: one file under the state dir, started through the `current` link
    const state = join(root, "var/lib/deploybot-agent");
    expect(mode(state)).toBe("750");
    expect(readlinkSync(join(state, "current"))).toBe(`releases/${version}`);
    expect(readFileSync(join(state, "current/deploybot-agent.mjs"))).toEqual(readFileSync(join(dist, "deploybot-agent.mjs")));
    expect(readdirSync(join(state, "releases", version)).sort()).toEqual(["deploybot-agent.mjs", "manifest.json"]);
    // nothing of the repository: no sources, no node_modules
    expect(readdirSync(join(root, "opt/deploybot-agent"))).toEqual(["bin"]);
    expect(statSync(join(root, "opt/deploybot-agent/bin/node")).isFile()).toBe(true);

    // Not installing into /: nothing touches the real system, the steps are printed instead.
    expect(res.stdout).toMatch(/would run: useradd --system .*--groups docker .*deploybot/);
    expect(res.stdout).toMatch(/would run: systemctl daemon-reload/);
    expect(res.stdout).toMatch(/would run: systemctl enable deploybot-agent\.service/);
    expect(res.stdout).toMatch(/would run: systemctl enable deploybot-proxy\.path/);
    expect(res.stdout.indexOf("enable deploybot-proxy.path")).toBeLessThan(res.stdout.indexOf("enable deploybot-agent.service"));
    expect(res.stdout).not.toMatch(/--now/);
    expect(`${res.stdout}${res.stderr}`).not.toContain(JOIN);
  });

  it("is idempotent: a second run with the same flags changes nothing", async () => {
    const root = scratch();
    const first = await run("bash", installArgs(root), noEnv);
    expect(first.code, first.stderr).toBe(0);
    const before = snapshot(root);
    const second = await run("bash", installArgs(root), noEnv);
    expect(second.code, second.stderr).toBe(0);
    expect(snapshot(root)).toEqual(before); // same files, modes, contents and mtimes
    expect(second.stdout).toContain("unchanged");
  });

  it("keeps the URL, the token and lines it does not manage when re-run with fewer flags; new flags replace values", async () => {
    const root = scratch();
    // the token can come from the environment instead of argv (kept out of `ps`)
    const first = await run("bash", [script, "--root", root, "--url", ctl.url, "--labels", "a,b", "--no-start"], { DEPLOYBOT_JOIN_TOKEN: JOIN });
    expect(first.code, first.stderr).toBe(0);
    const env = join(root, "etc/deploybot/agent.env");
    writeFileSync(env, `${readFileSync(env, "utf8")}DEPLOYBOT_REGISTRY_URL=registry.example.com\n`);

    const relabel = await run("bash", [script, "--root", root, "--labels", "builder,region=eu", "--hostname", "web-1", "--no-start"], noEnv);
    expect(relabel.code, relabel.stderr).toBe(0);
    const vars = readFileSync(env, "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#"));
    expect(vars).toEqual([
      `DEPLOYBOT_URL=${ctl.url}`,
      `DEPLOYBOT_JOIN_TOKEN=${JOIN}`,
      "DEPLOYBOT_LABELS=builder,region=eu",
      "DEPLOYBOT_PROXY=external",
      "DEPLOYBOT_REGISTRY_URL=registry.example.com",
      "DEPLOYBOT_HOSTNAME=web-1",
    ]);
    expect(mode(env)).toBe("600");
  });

  it("refuses a wrong join token and a download whose sha256 differs from the manifest, installing nothing", async () => {
    const wrong = scratch();
    const denied = await run("bash", [script, "--root", wrong, "--url", ctl.url, "--join-token", "not-the-token", "--no-start"], noEnv);
    expect(denied.code, denied.stdout + denied.stderr).not.toBe(0);
    expect(denied.stderr).toMatch(/could not fetch manifest\.json from .*join token/);
    expect(existsSync(join(wrong, "var/lib/deploybot-agent/current"))).toBe(false);

    const tampered = scratch();
    cpSync(dist, tampered, { recursive: true });
    appendFileSync(join(tampered, "deploybot-agent.mjs"), "\n// injected\n");
    const evil = await startTestController(undefined, { DEPLOYBOT_AGENT_DIST: tampered });
    try {
      const root = scratch();
      const res = await run("bash", [script, "--root", root, "--url", evil.url, "--join-token", JOIN, "--no-start"], noEnv);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toMatch(/deploybot-agent\.mjs from .* has sha256 \w+, the manifest says \w+: refusing it/);
      expect(existsSync(join(root, "var/lib/deploybot-agent/releases"))).toBe(false);
      expect(existsSync(join(root, "etc/systemd/system/deploybot-agent.service"))).toBe(false);
    } finally {
      await evil.stop();
    }
  });

  it("--uninstall removes the unit, /opt/deploybot-agent and the env file but keeps the state; --purge removes it", async () => {
    const root = scratch();
    expect((await run("bash", installArgs(root), noEnv)).code).toBe(0);
    writeFileSync(join(root, "var/lib/deploybot-agent/identity.json"), "{}\n");

    const un = await run("bash", [script, "--root", root, "--uninstall"]);
    expect(un.code, un.stderr).toBe(0);
    expect(un.stdout).toMatch(/would run: systemctl disable --now deploybot-agent\.service/);
    expect(un.stdout).toMatch(/would run: systemctl disable --now deploybot-proxy\.path deploybot-proxy\.service/);
    expect(readdirSync(join(root, "etc/systemd/system"))).toEqual([]);
    expect(existsSync(join(root, "opt/deploybot-agent"))).toBe(false);
    expect(existsSync(join(root, "etc/deploybot/agent.env"))).toBe(false);
    expect(existsSync(join(root, "etc/deploybot"))).toBe(false); // empty, so removed
    expect(existsSync(join(root, "var/lib/deploybot-agent/identity.json"))).toBe(true);

    const purge = await run("bash", [script, "--root", root, "--uninstall", "--purge"]);
    expect(purge.code, purge.stderr).toBe(0);
    expect(existsSync(join(root, "var/lib/deploybot-agent"))).toBe(false);
    expect(purge.stdout).toMatch(/would run: userdel deploybot/);
  });

  it("--no-proxy installs no proxy units and writes DEPLOYBOT_PROXY=off; switching an installed host removes them; re-runs keep the choice", async () => {
    const root = scratch();
    const units = () => readdirSync(join(root, "etc/systemd/system")).sort();
    const proxyValue = () => readFileSync(join(root, "etc/deploybot/agent.env"), "utf8").match(/^DEPLOYBOT_PROXY=(.*)$/m)?.[1];
    expect((await run("bash", installArgs(root), noEnv)).code).toBe(0);
    expect(units()).toEqual(["deploybot-agent.service", "deploybot-proxy.path", "deploybot-proxy.service"]);

    const off = await run("bash", [script, "--root", root, "--no-proxy", "--no-start"], noEnv);
    expect(off.code, off.stderr).toBe(0);
    expect(off.stdout).toMatch(/would run: systemctl disable --now deploybot-proxy\.path deploybot-proxy\.service/);
    expect(off.stdout).not.toMatch(/enable deploybot-proxy/);
    expect(units()).toEqual(["deploybot-agent.service"]);
    expect(proxyValue()).toBe("off");

    const again = await run("bash", [script, "--root", root, "--no-start"], noEnv);
    expect(again.code, again.stderr).toBe(0);
    expect(units()).toEqual(["deploybot-agent.service"]);
    expect(proxyValue()).toBe("off");
    expect(again.stdout).toContain("unchanged");

    const fresh = scratch();
    const none = await run("bash", [script, "--root", fresh, "--url", ctl.url, "--join-token", JOIN, "--no-proxy", "--no-start"], noEnv);
    expect(none.code, none.stderr).toBe(0);
    expect(readdirSync(join(fresh, "etc/systemd/system"))).toEqual(["deploybot-agent.service"]);
    expect(readFileSync(join(fresh, "etc/deploybot/agent.env"), "utf8")).toContain("DEPLOYBOT_PROXY=off\n");
  });

  it("takes several controller URLs: the agent gets the list, the files come from the first controller that answers", async () => {
    const root = scratch();
    // a port nothing listens on: taken from the OS and closed again
    const closed = await new Promise<string>((done) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => done(`http://127.0.0.1:${port}`));
      });
    });
    const urls = `${closed},${ctl.url}/`;
    const res = await run("bash", [script, "--root", root, "--url", urls, "--join-token", JOIN, "--no-start"], noEnv);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain(`could not fetch manifest.json from ${closed}; trying the next controller`);
    expect(res.stdout).toContain(`fetched agent ${version} from ${ctl.url} (checksums match)`);
    expect(readFileSync(join(root, "etc/deploybot/agent.env"), "utf8")).toContain(`DEPLOYBOT_URL=${urls}\n`);
  });

  describe("bad input exits non-zero with a clear message and writes nothing", () => {
    const cases: { name: string; args: string[]; message: RegExp }[] = [
      { name: "an empty item in a URL list", args: ["--url", "http://a:8080,,http://b:8080", "--join-token", "T"], message: /without empty items/ },
      { name: "a bad URL in a list", args: ["--url", "http://a:8080,http://x$(id)", "--join-token", "T"], message: /--url must be an http/ },
      { name: "a URL that is not one", args: ["--url", "not-a-url", "--join-token", "T"], message: /--url must be an http/ },
      { name: "a URL with a shell payload", args: ["--url", "http://x$(touch /tmp/pwned)", "--join-token", "T"], message: /--url must be/ },
      { name: "a URL with credentials", args: ["--url", "http://user:pw@example.com", "--join-token", "T"], message: /--url must be/ },
      { name: "labels with a space", args: ["--url", "http://127.0.0.1:8080", "--join-token", "T", "--labels", "a, b"], message: /label ' b' is invalid/ },
      { name: "labels with shell metacharacters", args: ["--url", "http://127.0.0.1:8080", "--join-token", "T", "--labels", "a;rm -rf /"], message: /label 'a;rm -rf \/' is invalid/ },
      { name: "labels with a newline", args: ["--url", "http://127.0.0.1:8080", "--join-token", "T", "--labels", "a\nDEPLOYBOT_URL=http://evil"], message: /is invalid/ },
      { name: "an empty label", args: ["--url", "http://127.0.0.1:8080", "--join-token", "T", "--labels", "a,,b"], message: /without empty items/ },
      { name: "a token with a quote", args: ["--url", "http://127.0.0.1:8080", "--join-token", "T'x"], message: /--join-token must be/ },
      { name: "a bad hostname", args: ["--url", "http://127.0.0.1:8080", "--join-token", "T", "--hostname", "-web"], message: /--hostname must be/ },
      { name: "no URL on a first install", args: ["--join-token", "T"], message: /--url is required/ },
      { name: "no token on a first install", args: ["--url", "http://127.0.0.1:8080"], message: /--join-token .* is required/ },
      { name: "an unknown flag", args: ["--url", "http://127.0.0.1:8080", "--join-token", "T", "--bogus"], message: /unknown argument '--bogus'/ },
      { name: "--purge without --uninstall", args: ["--purge"], message: /--purge only goes with --uninstall/ },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const root = scratch();
        const res = await run("bash", [script, "--root", root, ...c.args, "--no-start"], noEnv);
        expect(res.code).not.toBe(0);
        expect(res.stderr).toMatch(/^install-agent: error: /);
        expect(res.stderr).toMatch(c.message);
        expect(readdirSync(root)).toEqual([]);
      });
    }
    it("a relative --root", async () => {
      const res = await run("bash", [script, "--root", "relative/dir", "--url", "http://127.0.0.1:8080", "--join-token", "T"], noEnv);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toMatch(/--root must be an absolute path/);
    });
  });

  it("accepts the documented URL shapes (a trailing slash, a host name)", async () => {
    const port = new URL(ctl.url).port;
    for (const url of [`${ctl.url}/`, `http://localhost:${port}`]) {
      const root = scratch();
      const res = await run("bash", [script, "--root", root, "--url", url, "--join-token", JOIN, "--labels", "builder,region=eu,zone:a/b", "--no-start"], noEnv);
      expect(res.code, `${url}: ${res.stderr}`).toBe(0);
      expect(readFileSync(join(root, "etc/deploybot/agent.env"), "utf8")).toContain(`DEPLOYBOT_URL=${url}\n`);
    }
  });

  it("the installed agent runs from the unit's command line and registers with the controller", async () => {
    const root = scratch();
    const res = await run("bash", installArgs(root), noEnv);
    expect(res.code, res.stderr).toBe(0);
    const hostname = uniqueName("installed");
    const settings = Object.fromEntries(
      readFileSync(join(root, "etc/deploybot/agent.env"), "utf8")
        .split("\n")
        .filter((l) => l.includes("=") && !l.startsWith("#"))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    const state = join(root, "var/lib/deploybot-agent");
    // ExecStart with the scratch root in front of its paths, the unit's environment and the env file
    const child: ChildProcess = spawn(join(root, "opt/deploybot-agent/bin/node"), [join(state, "current/deploybot-agent.mjs")], {
      cwd: state,
      env: { PATH: "/usr/bin:/bin", HOME: state, NODE_ENV: "production", ...settings, DEPLOYBOT_STATE_DIR: state, DEPLOYBOT_HOSTNAME: hostname, ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}) },
      stdio: "ignore",
    });
    try {
      let host: { hostname: string; version: string; labels: string[] } | undefined;
      for (let i = 0; i < 300 && !host; i++) {
        await new Promise((r) => setTimeout(r, 100));
        host = (await ctl.call("GET", "/v1/hosts", ADMIN)).body.hosts.find((h: { hostname: string }) => h.hostname === hostname);
      }
      expect(host).toMatchObject({ hostname, version, labels: ["a", "b"] });
    } finally {
      child.kill("SIGTERM");
    }
  });
});
