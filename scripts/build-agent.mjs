#!/usr/bin/env node
// Builds the agent's distribution: what the controller serves at /v1/agents/dist/* and what
// hosts install and update from. One directory:
//   deploybot-agent.mjs       the agent, one bundled ES module (plain Node >= 20.19, no node_modules)
//   deploybot-agent.service   the systemd unit
//   deploybot-proxy.service   the host proxy's unit (HAProxy, written by the agent) and the
//   deploybot-proxy.path      path unit that starts it once the agent wrote its first config
//   install-agent.sh          the installer
//   manifest.json             {version, node, files: {name: {sha256, size}}}
// The agent needs no native module: dockerode speaks HTTP over the Docker socket; its optional
// ssh transport (ssh2, with optional native crypto) is left out, so DOCKER_HOST=ssh:// is not
// supported by the bundle.
//
//   node scripts/build-agent.mjs [--out DIR] [--version V]
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bundle, isStale, repoRoot } from "./bundle.mjs";

export const AGENT_FILES = ["deploybot-agent.mjs", "deploybot-agent.service", "deploybot-proxy.service", "deploybot-proxy.path", "install-agent.sh"];
const UNITS = ["deploybot-agent.service", "deploybot-proxy.service", "deploybot-proxy.path"];
export const defaultAgentDist = join(repoRoot, "apps/agent/dist");
const agentPackage = join(repoRoot, "apps/agent/package.json");
/** What the distribution is built from: a change to any of it is a new agent version (scripts/agent-version.mjs). */
export const sources = [join(repoRoot, "apps/agent/src"), join(repoRoot, "packages/protocol/src"), agentPackage, ...UNITS.map((u) => join(repoRoot, "scripts/systemd", u)), join(repoRoot, "scripts/install-agent.sh"), join(repoRoot, "scripts/build-agent.mjs")];

const sha256 = (file) => createHash("sha256").update(readFileSync(file)).digest("hex");

/** Builds the distribution into `outDir`; `version` stamps another version than package.json's. */
export async function buildAgentDist({ outDir = defaultAgentDist, version } = {}) {
  mkdirSync(outDir, { recursive: true });
  const v = version ?? JSON.parse(readFileSync(agentPackage, "utf8")).version;
  await bundle({
    entry: join(repoRoot, "apps/agent/src/main.ts"),
    outfile: join(outDir, "deploybot-agent.mjs"),
    minify: true,
    external: ["cpu-features", "*.node"],
    stubs: { ssh2: 'module.exports = { Client: class { constructor() { throw new Error("DOCKER_HOST=ssh:// is not supported by the agent bundle"); } } };' },
    // every bundle says it is one (apps/agent/src/version.ts: only a bundle may update itself)
    define: { __DEPLOYBOT_AGENT_BUNDLE__: "true", ...(version ? { __DEPLOYBOT_AGENT_VERSION__: JSON.stringify(version) } : {}) },
  });
  for (const unit of UNITS) copyFileSync(join(repoRoot, "scripts/systemd", unit), join(outDir, unit));
  copyFileSync(join(repoRoot, "scripts/install-agent.sh"), join(outDir, "install-agent.sh"));
  const files = Object.fromEntries(AGENT_FILES.map((name) => [name, { sha256: sha256(join(outDir, name)), size: statSync(join(outDir, name)).size }]));
  const manifest = { version: v, node: ">=20.19", files };
  const tmp = join(outDir, `.manifest.${process.pid}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(tmp, join(outDir, "manifest.json"));
  return manifest;
}

/** The checkout's distribution, rebuilt first when a source is newer than its manifest. */
export async function currentAgentDist(outDir = defaultAgentDist) {
  if (isStale(join(outDir, "manifest.json"), sources)) return buildAgentDist({ outDir });
  return JSON.parse(readFileSync(join(outDir, "manifest.json"), "utf8"));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { out: { type: "string" }, version: { type: "string" } } });
  const manifest = await buildAgentDist({ outDir: values.out ?? defaultAgentDist, version: values.version });
  console.log(JSON.stringify(manifest, null, 2));
}
