import { execFile } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

/**
 * scripts/install-agent.sh against scratch roots (--root: no user, no systemctl), and
 * `systemd-analyze verify` on both units. Every command runs through execFile with an argument
 * vector; nothing here builds a shell string.
 *
 * Most runs set DEPLOYBOT_INSTALL_SKIP_DEPS=1 (file layout, env file, idempotence, validation);
 * one test runs the real `pnpm install --frozen-lockfile` into the scratch root (a couple of
 * seconds with the workspace's pnpm store warm) and starts the installed agent far enough to
 * prove every import resolves.
 */

const repo = resolve(import.meta.dirname, "../..");
const script = join(repo, "scripts/install-agent.sh");
const agentUnit = join(repo, "scripts/systemd/deploybot-agent.service");
const controllerUnit = join(repo, "scripts/systemd/deploybot-controller.service");
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

const skipDeps = { DEPLOYBOT_INSTALL_SKIP_DEPS: "1" };
const installArgs = (root: string) => [
  script,
  "--root",
  root,
  "--url",
  "http://127.0.0.1:8080",
  "--join-token",
  "T",
  "--labels",
  "a,b",
  "--no-start",
];

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
    const install = await run("bash", installArgs(root), skipDeps);
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
      "ExecStart=/opt/deploybot-agent/bin/node --import tsx /opt/deploybot-agent/apps/agent/src/main.ts",
    ]) {
      expect(agent.split("\n"), line).toContain(line);
    }
    // V8's JIT needs W+X pages; the unit must not forbid them.
    expect(agent).not.toMatch(/^MemoryDenyWriteExecute=yes/m);

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

describe("install-agent.sh into a scratch root", () => {
  it("installs the code, the env file (0600) and the unit, and only prints the user/systemctl steps", async () => {
    const root = scratch();
    const res = await run("bash", installArgs(root), skipDeps);
    expect(res.code, res.stderr).toBe(0);

    const env = join(root, "etc/deploybot/agent.env");
    expect(mode(env)).toBe("600");
    const vars = readFileSync(env, "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#"));
    expect(vars).toEqual(["DEPLOYBOT_URL=http://127.0.0.1:8080", "DEPLOYBOT_JOIN_TOKEN=T", "DEPLOYBOT_LABELS=a,b"]);

    const unit = join(root, "etc/systemd/system/deploybot-agent.service");
    expect(mode(unit)).toBe("644");
    expect(readFileSync(unit, "utf8")).toBe(readFileSync(agentUnit, "utf8"));

    const opt = join(root, "opt/deploybot-agent");
    for (const f of [
      "package.json",
      "pnpm-workspace.yaml",
      "pnpm-lock.yaml",
      "tsconfig.base.json",
      "apps/agent/package.json",
      "apps/agent/src/main.ts",
      "packages/protocol/package.json",
      "packages/protocol/src/index.ts",
    ]) {
      expect(readFileSync(join(opt, f), "utf8"), f).toBe(readFileSync(join(repo, f), "utf8"));
    }
    expect(existsSync(join(opt, "apps/agent/test")), "tests are not installed").toBe(false);
    expect(statSync(join(opt, "bin/node")).isFile()).toBe(true);
    expect(mode(join(root, "var/lib/deploybot-agent"))).toBe("750");

    // Not installing into /: nothing touches the real system, the steps are printed instead.
    expect(res.stdout).toMatch(/would run: useradd --system .*--groups docker .*deploybot/);
    expect(res.stdout).toMatch(/would run: systemctl daemon-reload/);
    expect(res.stdout).toMatch(/would run: systemctl enable deploybot-agent\.service/);
    expect(res.stdout).not.toMatch(/--now/);
    expect(`${res.stdout}${res.stderr}`).not.toContain("DEPLOYBOT_JOIN_TOKEN=T");
  });

  it("is idempotent: a second run with the same flags changes nothing", async () => {
    const root = scratch();
    const first = await run("bash", installArgs(root), skipDeps);
    expect(first.code, first.stderr).toBe(0);
    const before = snapshot(root);
    const second = await run("bash", installArgs(root), skipDeps);
    expect(second.code, second.stderr).toBe(0);
    expect(snapshot(root)).toEqual(before); // same files, modes, contents and mtimes
    expect(second.stdout).toContain("unchanged");
  });

  it("keeps the token and lines it does not manage when re-run with fewer flags; new flags replace values", async () => {
    const root = scratch();
    expect((await run("bash", installArgs(root), skipDeps)).code).toBe(0);
    const env = join(root, "etc/deploybot/agent.env");
    writeFileSync(env, `${readFileSync(env, "utf8")}DEPLOYBOT_REGISTRY_URL=registry.example.com\n`);

    const relabel = await run("bash", [script, "--root", root, "--labels", "builder,region=eu", "--hostname", "web-1", "--no-start"], skipDeps);
    expect(relabel.code, relabel.stderr).toBe(0);
    const vars = readFileSync(env, "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#"));
    expect(vars).toEqual([
      "DEPLOYBOT_URL=http://127.0.0.1:8080",
      "DEPLOYBOT_JOIN_TOKEN=T",
      "DEPLOYBOT_LABELS=builder,region=eu",
      "DEPLOYBOT_REGISTRY_URL=registry.example.com",
      "DEPLOYBOT_HOSTNAME=web-1",
    ]);
    expect(mode(env)).toBe("600");

    // The token can come from the environment instead of argv (kept out of `ps`).
    const rotate = await run("bash", [script, "--root", root, "--no-start"], { ...skipDeps, DEPLOYBOT_JOIN_TOKEN: "rotated.Token-2" });
    expect(rotate.code, rotate.stderr).toBe(0);
    expect(readFileSync(env, "utf8")).toContain("DEPLOYBOT_JOIN_TOKEN=rotated.Token-2\n");
    expect(readFileSync(env, "utf8")).not.toContain("DEPLOYBOT_JOIN_TOKEN=T\n");
  });

  it("removes files the source no longer has on re-install", async () => {
    const root = scratch();
    expect((await run("bash", installArgs(root), skipDeps)).code).toBe(0);
    const stale = join(root, "opt/deploybot-agent/apps/agent/src/stale.ts");
    writeFileSync(stale, "export {};\n");
    expect((await run("bash", installArgs(root), skipDeps)).code).toBe(0);
    expect(existsSync(stale)).toBe(false);
  });

  it("--uninstall removes the unit, /opt/deploybot-agent and the env file but keeps the state; --purge removes it", async () => {
    const root = scratch();
    expect((await run("bash", installArgs(root), skipDeps)).code).toBe(0);
    writeFileSync(join(root, "var/lib/deploybot-agent/identity.json"), "{}\n");

    const un = await run("bash", [script, "--root", root, "--uninstall"]);
    expect(un.code, un.stderr).toBe(0);
    expect(un.stdout).toMatch(/would run: systemctl disable --now deploybot-agent\.service/);
    expect(existsSync(join(root, "etc/systemd/system/deploybot-agent.service"))).toBe(false);
    expect(existsSync(join(root, "opt/deploybot-agent"))).toBe(false);
    expect(existsSync(join(root, "etc/deploybot/agent.env"))).toBe(false);
    expect(existsSync(join(root, "etc/deploybot"))).toBe(false); // empty, so removed
    expect(existsSync(join(root, "var/lib/deploybot-agent/identity.json"))).toBe(true);

    const purge = await run("bash", [script, "--root", root, "--uninstall", "--purge"]);
    expect(purge.code, purge.stderr).toBe(0);
    expect(existsSync(join(root, "var/lib/deploybot-agent"))).toBe(false);
    expect(purge.stdout).toMatch(/would run: userdel deploybot/);
  });

  describe("bad input exits non-zero with a clear message and writes nothing", () => {
    const cases: { name: string; args: string[]; message: RegExp }[] = [
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
        const res = await run("bash", [script, "--root", root, ...c.args, "--no-start"], skipDeps);
        expect(res.code).not.toBe(0);
        expect(res.stderr).toMatch(/^install-agent: error: /);
        expect(res.stderr).toMatch(c.message);
        expect(readdirSync(root)).toEqual([]);
      });
    }
    it("a relative --root", async () => {
      const res = await run("bash", [script, "--root", "relative/dir", "--url", "http://127.0.0.1:8080", "--join-token", "T"], skipDeps);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toMatch(/--root must be an absolute path/);
    });
  });

  it("accepts the documented URL and label shapes", async () => {
    for (const url of ["https://deploy.example.com", "http://10.0.0.5:8080/", "https://deploy.example.com:8443/base/path", "http://[::1]:8080"]) {
      const root = scratch();
      const res = await run("bash", [script, "--root", root, "--url", url, "--join-token", "tok_en-1.x", "--labels", "builder,region=eu,zone:a/b", "--no-start"], skipDeps);
      expect(res.code, `${url}: ${res.stderr}`).toBe(0);
      expect(readFileSync(join(root, "etc/deploybot/agent.env"), "utf8")).toContain(`DEPLOYBOT_URL=${url}\n`);
    }
  });

  it("installs the production dependencies with pnpm and the installed agent starts", async () => {
    const root = scratch();
    const res = await run("bash", installArgs(root), {}, 150_000);
    expect(res.code, res.stderr + res.stdout).toBe(0);
    const agentDir = join(root, "opt/deploybot-agent/apps/agent");
    expect(existsSync(join(agentDir, "node_modules/tsx"))).toBe(true);
    expect(existsSync(join(agentDir, "node_modules/dockerode"))).toBe(true);

    // Second run: the lockfile stamp matches, pnpm is not run again.
    const again = await run("bash", installArgs(root), {}, 150_000);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("dependencies are up to date");

    // The unit's command line, run from the unit's WorkingDirectory without configuration:
    // every module resolves (dockerode, pino, the protocol) and the agent stops at its
    // configuration check with exit code 1.
    const node = join(root, "opt/deploybot-agent/bin/node");
    const start = await new Promise<Run>((done) => {
      execFile(
        node,
        ["--import", "tsx", join(agentDir, "src/main.ts")],
        { cwd: agentDir, env: { PATH: "/usr/bin:/bin" }, timeout: 30_000 },
        (err, stdout, stderr) => done({ code: err && typeof err.code === "number" ? err.code : err ? -1 : 0, stdout: String(stdout), stderr: String(stderr) }),
      );
    });
    expect(start.stderr).toContain("deploybot agent: invalid agent configuration");
    expect(start.code).toBe(1);
  }, 320_000);
});
